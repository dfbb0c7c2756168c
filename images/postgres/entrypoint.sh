#!/bin/sh
# First start: create the cluster, a password-authenticated user and its database (from
# POSTGRES_USER / POSTGRES_PASSWORD / POSTGRES_DB); then run the server in the foreground.
set -eu
bin=/usr/lib/postgresql/bin
: "${POSTGRES_USER:=corral}" "${POSTGRES_PASSWORD:=corral}" "${POSTGRES_DB:=corral}"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  pwfile=$(mktemp)
  printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
  "$bin/initdb" -D "$PGDATA" -U "$POSTGRES_USER" --pwfile="$pwfile" --auth=scram-sha-256 >/dev/null
  rm -f "$pwfile"
  echo "host all all 0.0.0.0/0 scram-sha-256" >>"$PGDATA/pg_hba.conf"
  "$bin/pg_ctl" -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
  PGPASSWORD="$POSTGRES_PASSWORD" "$bin/createdb" -U "$POSTGRES_USER" "$POSTGRES_DB" 2>/dev/null || true
  "$bin/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null
fi
exec "$bin/postgres" -D "$PGDATA" -c listen_addresses='*'

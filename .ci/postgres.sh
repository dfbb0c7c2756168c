#!/usr/bin/env bash
# Start a throwaway PostgreSQL for the store tests and print its URL (nothing when impossible).
# Uses Debian's server binaries; installs them when missing and we are root.
set -u
bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
if [ -z "$bindir" ] || [ ! -x "$bindir/initdb" ]; then
  [ "$(id -u)" = 0 ] || exit 0
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null) >&2 || exit 0
  bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
fi
[ -x "$bindir/initdb" ] || exit 0
dir=$(mktemp -d /tmp/corral-ci-pg.XXXXXX)
run() { if [ "$(id -u)" = 0 ]; then su postgres -s /bin/sh -c "$*"; else sh -c "$*"; fi; }
[ "$(id -u)" = 0 ] && chown postgres "$dir"
run "'$bindir/initdb' -D '$dir/data' -U corral --auth=trust" >/dev/null 2>&1 || exit 0
port=55432
run "'$bindir/pg_ctl' -D '$dir/data' -o \"-p $port -k '$dir' -c listen_addresses=127.0.0.1 -c fsync=off\" -l '$dir/log' -w start" >/dev/null 2>&1 || exit 0
run "'$bindir/createdb' -h 127.0.0.1 -p $port -U corral corral_test" >/dev/null 2>&1 || exit 0
echo "postgresql+asyncpg://corral@127.0.0.1:$port/corral_test"

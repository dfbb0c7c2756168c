"""Alembic migrations of the SQL store, applied by `runtime.store.migrate` at startup."""

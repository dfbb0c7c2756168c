"""A clean PostgreSQL database for a store test (the URL from CORRAL_TEST_POSTGRES_URL)."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine


async def reset_postgres(url: str) -> None:
    """Drop everything in the public schema (tables, types, alembic_version) and recreate it."""
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("DROP SCHEMA public CASCADE"))
            await conn.execute(text("CREATE SCHEMA public"))
    finally:
        await engine.dispose()

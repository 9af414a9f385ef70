"""Every time-partitioned table gets daily partitions ahead and loses the expired
ones in a ladder round. The tables are found in pg_catalog, so a new one
cannot escape either rule."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta

import asyncpg
import pytest

from shared.migrate import drop_database, dsn_for_database, migrate_database
from shared.settings import Settings

# Tables partitioned by range of a timestamptz column: daily partitions named
# <table>_YYYYMMDD, as ensure_ping_partitions() makes them.
TIME_PARTITIONED = """
    SELECT c.relname
    FROM pg_partitioned_table p
    JOIN pg_class c ON c.oid = p.partrelid
    JOIN pg_attribute a ON a.attrelid = p.partrelid AND a.attnum = p.partattrs[0]
    WHERE p.partstrat = 'r' AND a.atttypid = 'timestamptz'::regtype
      AND c.relnamespace = current_schema()::regnamespace
    ORDER BY 1"""
PARTITIONS = """
    SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
    WHERE i.inhparent = $1::regclass"""


def partition_name(table: str, day: date) -> str:
    return f"{table}_{day:%Y%m%d}"


@pytest.fixture
async def conn(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A freshly migrated database of its own: a whole ladder round runs in it."""
    dsn = dsn_for_database(database_url, f"pt_retention_{uuid.uuid4().hex[:8]}")
    await migrate_database(dsn, Settings().migrations_dir)
    connection = await asyncpg.connect(dsn)
    yield connection
    await connection.close()
    await drop_database(dsn)


async def test_a_ladder_round_drops_expired_partitions_of_every_time_partitioned_table(
    conn: asyncpg.Connection,
) -> None:
    tables = [r["relname"] for r in await conn.fetch(TIME_PARTITIONED)]
    assert {"pings", "probe_details"} <= set(tables)
    today = datetime.now(UTC).date()
    for table in tables:  # migrate made today's partition of each, named as retention expects
        names = {r["relname"] for r in await conn.fetch(PARTITIONS, table)}
        assert partition_name(table, today) in names, table

    keep: timedelta = await conn.fetchval("SELECT raw_retention FROM ladder_settings")
    expired = [today - keep - timedelta(days=d) for d in (30, 1)]  # ended keep + 29 d, keep ago
    kept = [today - keep + timedelta(days=1), today]
    for table in tables:
        for day in expired + kept:
            end = day + timedelta(days=1)
            await conn.execute(
                f"CREATE TABLE IF NOT EXISTS {partition_name(table, day)} PARTITION OF {table}"
                f" FOR VALUES FROM ('{day} 00:00:00+00') TO ('{end} 00:00:00+00')"
            )

    await conn.execute("CALL ladder_run()")

    for table in tables:
        names = {r["relname"] for r in await conn.fetch(PARTITIONS, table)}
        assert not {partition_name(table, day) for day in expired} & names, table
        assert {partition_name(table, day) for day in kept} <= names, table

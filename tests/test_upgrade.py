"""An upgrade from any earlier release ends in the schema of a fresh install.

tests/released_migrations/ holds the numbered migrations as they were released,
function bodies and all (none was edited after its release, so a release is
the prefix of them that existed at its commit). A database is built the way
that release's `pingtrack migrate` built it, given targets and pings and a
ladder round of that release, then migrated with today's files; its
`pg_dump --schema-only` must equal a fresh install's, and its data must still
roll up.
"""

from __future__ import annotations

import asyncio
import difflib
import shutil
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from shared.migrate import (
    create_database_if_missing,
    drop_database,
    dsn_for_database,
    load_migrations,
    migrate_database,
)
from shared.settings import Settings

RELEASED = Path(__file__).parent / "released_migrations"
# Each commit that changed migrations/ before function files existed, and the
# last migration it shipped.
RELEASES = {
    "53f8d9c": 2,
    "c7f7e6a": 5,
    "70f5f96": 7,
    "75ee06e": 11,
    "47c7d32": 12,
    "8121e9a": 15,
    "feb5eb9": 30,
    "8967373": 31,
    "814f82f": 32,
}
PG_DUMP = shutil.which("pg_dump")
pytestmark = pytest.mark.skipif(PG_DUMP is None, reason="pg_dump is not on PATH")


async def install_release(dsn: str, last_version: int) -> None:
    """What `pingtrack migrate` of that release did: each file in a transaction of
    its own, recorded in schema_migrations, then the ping partitions ahead."""
    await create_database_if_missing(dsn)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            """CREATE TABLE schema_migrations (
                   version    integer PRIMARY KEY,
                   name       text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        for migration in load_migrations(RELEASED):
            if migration.version > last_version:
                break
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                    migration.version,
                    migration.name,
                )
        await conn.execute("SELECT ensure_ping_partitions(current_date - 1, current_date + 7)")
    finally:
        await conn.close()


async def ping_hour(conn: asyncpg.Connection, target: int, hours_ago: int) -> None:
    """600 pings of one target, every 6 s over an hour that ended `hours_ago` - 1 ago,
    with a loss run and a hop change."""
    await conn.execute(
        """INSERT INTO pings (target_id, ts, rtt_us, ttl, hops)
           SELECT $1, date_trunc('hour', now()) - $2 * interval '1 hour' + g * interval '6 s',
                  CASE WHEN g BETWEEN 100 AND 104 THEN NULL ELSE 900 + g % 40 END,
                  CASE WHEN g < 300 THEN 61 ELSE 60 END, CASE WHEN g < 300 THEN 3 ELSE 4 END
           FROM generate_series(0, 599) g""",
        target,
        hours_ago,
    )


async def has_ladder(conn: asyncpg.Connection) -> bool:
    return bool(await conn.fetchval("SELECT to_regproc('ladder_run') IS NOT NULL"))


async def schema_dump(dsn: str, first_day: str, last_day: str) -> list[str]:
    """pg_dump --schema-only, once both databases have the same daily partitions;
    without the per-run \\restrict key."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"SELECT ensure_ping_partitions('{first_day}', '{last_day}')")
    finally:
        await conn.close()
    assert PG_DUMP is not None
    dump = await asyncio.create_subprocess_exec(
        PG_DUMP,
        "--schema-only",
        f"--dbname={dsn}",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await dump.communicate()
    assert dump.returncode == 0, err.decode()
    return [
        line
        for line in out.decode().splitlines()
        if not line.startswith(("\\restrict ", "\\unrestrict "))
    ]


async def settings_and_records(dsn: str) -> dict[str, list[tuple[object, ...]]]:
    """What migrations put in tables: the ladder's configuration and what ran."""
    queries = {
        "levels": "SELECT * FROM ladder_levels ORDER BY level",
        "settings": "SELECT * FROM ladder_settings",
        "migrations": "SELECT version, name FROM schema_migrations ORDER BY version",
        "functions": "SELECT name, checksum FROM schema_functions ORDER BY name",
    }
    conn = await asyncpg.connect(dsn)
    try:
        return {key: [tuple(r.values()) for r in await conn.fetch(q)] for key, q in queries.items()}
    finally:
        await conn.close()


@pytest.fixture(scope="module")
async def fresh(database_url: str) -> AsyncIterator[str]:
    dsn = dsn_for_database(database_url, f"pt_fresh_{uuid.uuid4().hex[:8]}")
    await migrate_database(dsn, Settings().migrations_dir)
    yield dsn
    await drop_database(dsn)


@pytest.fixture
async def scratch(database_url: str) -> AsyncIterator[str]:
    dsn = dsn_for_database(database_url, f"pt_upgrade_{uuid.uuid4().hex[:8]}")
    yield dsn
    await drop_database(dsn)


@pytest.mark.parametrize(("release", "last_version"), RELEASES.items())
async def test_upgrade_from_a_release_with_data_ends_as_a_fresh_install(
    release: str, last_version: int, fresh: str, scratch: str
) -> None:
    await install_release(scratch, last_version)
    conn = await asyncpg.connect(scratch)
    try:
        target = await conn.fetchval(
            "INSERT INTO targets (address, interval_ms, timeout_ms)"
            " VALUES ('127.0.0.1', 6000, 1000) RETURNING id"
        )
        await ping_hour(conn, target, hours_ago=4)
        if await has_ladder(conn):
            await conn.execute("CALL ladder_run()")  # that release's ladder

        await migrate_database(scratch, Settings().migrations_dir)

        await ping_hour(conn, target, hours_ago=2)  # after the upgrade, through its trigger
        await conn.execute("CALL ladder_run()")
        level_counts = await conn.fetch(
            """SELECT l.level, (SELECT sum(count) FROM segments_of($1, l.level, '-infinity',
                                                                   'infinity')) AS pings
               FROM ladder_levels l ORDER BY l.level""",
            target,
        )
        hourly = await conn.fetchval(
            "SELECT sum(count) FROM hourly_summaries WHERE target_id = $1", target
        )
    finally:
        await conn.close()
    assert [r["pings"] for r in level_counts] == [1200, 1200, 1200]
    assert hourly == 1200

    today = datetime.now(UTC).date()
    days = (str(today - timedelta(days=2)), str(today + timedelta(days=9)))
    upgraded, installed = await schema_dump(scratch, *days), await schema_dump(fresh, *days)
    assert upgraded == installed, "\n".join(
        difflib.unified_diff(installed, upgraded, "fresh", f"upgraded from {release}", lineterm="")
    )
    assert await settings_and_records(scratch) == await settings_and_records(fresh)


@pytest.mark.parametrize(
    ("release", "last_version"), [(r, v) for r, v in RELEASES.items() if v >= 5]
)
async def test_upgrade_keeps_the_settings_an_operator_changed(
    release: str, last_version: int, scratch: str
) -> None:
    await install_release(scratch, last_version)
    conn = await asyncpg.connect(scratch)
    try:
        await conn.execute("UPDATE ladder_settings SET raw_retention = '30 days'")
        await conn.execute("UPDATE ladder_levels SET abs_tolerance_us = 3000 WHERE level = 1")
        packed_column = "SELECT 1 FROM pg_attribute WHERE attrelid = 'ladder_levels'::regclass"
        if await conn.fetchval(f"{packed_column} AND attname = 'packed'"):
            await conn.execute("UPDATE ladder_levels SET packed = false WHERE level = 2")
            level2_packed = False
        else:
            level2_packed = True  # what a fresh install has
        await migrate_database(scratch, Settings().migrations_dir)
        chosen = await conn.fetchrow(
            """SELECT (SELECT raw_retention FROM ladder_settings) AS raw_retention,
                      (SELECT abs_tolerance_us FROM ladder_levels WHERE level = 1) AS abs_us,
                      (SELECT packed FROM ladder_levels WHERE level = 2) AS level2_packed"""
        )
        packed = await conn.fetch("SELECT level, packed FROM ladder_levels ORDER BY level")
    finally:
        await conn.close()
    assert (chosen["raw_retention"], chosen["abs_us"], chosen["level2_packed"]) == (
        timedelta(days=30),
        3000,
        level2_packed,
    )
    assert [(r["level"], r["packed"]) for r in packed] == [(1, True), (2, level2_packed), (3, True)]

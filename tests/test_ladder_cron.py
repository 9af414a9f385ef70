"""`pingtrack migrate` schedules the ladder round with pg_cron, once per database."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from pingtrack.cli import run_migrations
from shared.ladder import (
    ROUND_SQL,
    cron_job_name,
    cron_unavailable_reason,
    enable_cron_hint,
    unschedule_ladder,
)
from shared.migrate import dsn_for_database
from shared.settings import Settings


@pytest.fixture
async def cron_dsn(database_url: str) -> str:
    conn = await asyncpg.connect(database_url)
    try:
        preload = await conn.fetchval("SHOW shared_preload_libraries")
        if "pg_cron" not in preload:
            pytest.skip(f"pg_cron is not loaded (shared_preload_libraries = {preload!r})")
        cron_db: str = await conn.fetchval("SHOW cron.database_name")
    finally:
        await conn.close()
    return dsn_for_database(database_url, cron_db)


@pytest.fixture
async def fresh_database(database_url: str, cron_dsn: str) -> AsyncIterator[str]:
    """A database of its own (migrate creates it); unscheduled and dropped afterwards."""
    name = f"pingtrack_test_cron_{uuid.uuid4().hex[:8]}"
    yield name
    cron_conn = await asyncpg.connect(cron_dsn)
    try:
        await unschedule_ladder(cron_conn, name)
        await cron_conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await cron_conn.close()


async def test_migrate_schedules_one_job_that_runs_the_ladder(
    database_url: str, cron_dsn: str, fresh_database: str
) -> None:
    dsn = dsn_for_database(database_url, fresh_database)
    settings = Settings(database_url=dsn, log_level="WARNING")
    assert "0005_ladder_jobs.sql" in await run_migrations(settings)
    assert await run_migrations(settings) == []  # twice: still one job

    cron_conn = await asyncpg.connect(cron_dsn)
    try:
        jobs = await cron_conn.fetch("SELECT * FROM cron.job WHERE database = $1", fresh_database)
    finally:
        await cron_conn.close()
    assert [(j["jobname"], j["schedule"], j["command"], j["active"]) for j in jobs] == [
        (cron_job_name(fresh_database), "* * * * *", ROUND_SQL, True)
    ]

    conn = await asyncpg.connect(dsn)
    try:
        ts = "date_trunc('hour', now()) - interval '3 hours'"
        await conn.execute(
            "INSERT INTO pings (target_id, ts, rtt_us, ttl, hops)"
            f" SELECT 1, {ts} + g * interval '1 second', 900 + g % 50, 61, 3"
            " FROM generate_series(0, 599) g"
        )
        await conn.execute(jobs[0]["command"])  # exactly what pg_cron runs in that database
        counts = await conn.fetchrow(
            "SELECT (SELECT sum(count) FROM segments_of(1, 1, '-infinity', 'infinity')) AS level1,"
            " (SELECT sum(count) FROM hourly_summaries) AS hourly,"
            " (SELECT count(*) FROM ladder_dirty) AS dirty"
        )
    finally:
        await conn.close()
    assert (counts["level1"], counts["hourly"], counts["dirty"]) == (600, 600, 0)


async def test_a_database_that_is_not_the_cron_database_is_explained(
    database_url: str, cron_dsn: str
) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        reason = await cron_unavailable_reason(conn)
    finally:
        await conn.close()
    cron_db = cron_dsn.rsplit("/", 1)[1]
    assert reason is not None and f"pg_cron lives in database {cron_db!r}" in reason


def test_the_warning_says_how_to_enable_pg_cron() -> None:
    hint = enable_cron_hint("pingtrack")
    assert "NOT scheduled" in hint
    assert "shared_preload_libraries = 'pg_cron'" in hint
    assert "CALL ladder_run()" in hint

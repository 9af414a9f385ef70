import uuid
from pathlib import Path

import asyncpg
import pytest

from shared.errors import ConfigError
from shared.migrate import load_migrations, migrate
from shared.settings import Settings


async def test_migrate_twice_applies_nothing_new(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        assert await migrate(conn, Settings().migrations_dir) == []
        versions = await conn.fetch("SELECT version FROM schema_migrations ORDER BY version")
        assert [r["version"] for r in versions] == [
            m.version for m in load_migrations(Settings().migrations_dir)
        ]
    finally:
        await conn.close()


async def test_partitions_exist_ahead(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        count = await conn.fetchval(
            "SELECT count(*) FROM pg_inherits WHERE inhparent = 'pings'::regclass"
        )
        assert count >= 8  # yesterday, today and at least 7 days ahead
        assert await conn.fetchval("SELECT ensure_ping_partitions(current_date, current_date)") == 0
    finally:
        await conn.close()


def test_badly_named_migration_is_refused(tmp_path: Path) -> None:
    (tmp_path / "1_x.sql").write_text("SELECT 1")
    with pytest.raises(ConfigError, match=r"NNNN_name\.sql"):
        load_migrations(tmp_path)


async def test_failed_migration_leaves_nothing_behind(tmp_path: Path, database_url: str) -> None:
    (tmp_path / "0001_ok.sql").write_text("CREATE TABLE mig_ok (x int)")
    (tmp_path / "0002_bad.sql").write_text("CREATE TABLE mig_half (x int); SELECT nonsense;")
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("CREATE SCHEMA mig_test; SET search_path TO mig_test")
        with pytest.raises(asyncpg.PostgresError):
            await migrate(conn, tmp_path)
        names = {r["name"] for r in await conn.fetch("SELECT name FROM schema_migrations")}
        assert names == {"0001_ok.sql"}
        assert await conn.fetchval("SELECT to_regclass('mig_half')") is None
    finally:
        await conn.execute("DROP SCHEMA mig_test CASCADE")
        await conn.close()


async def test_dropping_a_database_removes_its_pg_cron_jobs(database_url: str) -> None:
    from shared.ladder import schedule_ladder_for
    from shared.migrate import drop_database, dsn_for_database, migrate_database

    scratch = dsn_for_database(database_url, f"pt_drop_{uuid.uuid4().hex[:8]}")
    await migrate_database(scratch, Settings().migrations_dir)
    scheduled = await schedule_ladder_for(scratch)
    if scheduled.warning is not None:
        await drop_database(scratch)
        if "not loaded" in scheduled.warning:
            pytest.skip(f"pg_cron unavailable: {scheduled.warning}")
        pytest.fail(f"pg_cron is loaded but refused the job: {scheduled.warning}")
    assert scheduled.cron_database is not None
    cron = await asyncpg.connect(dsn_for_database(database_url, scheduled.cron_database))
    try:
        jobs = "SELECT count(*) FROM cron.job WHERE database = $1"
        assert await cron.fetchval(jobs, scheduled.database) == 1
        await drop_database(scratch)
        assert await cron.fetchval(jobs, scheduled.database) == 0
    finally:
        await cron.close()

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from shared.errors import ConfigError
from shared.migrate import load_migrations, migrate
from shared.settings import Settings
from tests.conftest import eventually


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


@pytest.fixture
async def own_schema(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection whose migrations land in a schema of its own (public stays
    on the path for the partition functions migrate calls at the end)."""
    schema = f"mig_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(database_url)
    await conn.execute(f"CREATE SCHEMA {schema}; SET search_path TO {schema}, public")
    yield conn
    await conn.execute(f"DROP SCHEMA {schema} CASCADE")
    await conn.close()


def write(path: Path, sql: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(sql)


def counter(sql_value: str) -> str:
    """A function file whose body reads the table of migration 0001."""
    return (
        "CREATE OR REPLACE FUNCTION mig_count() RETURNS bigint LANGUAGE sql AS"
        f" $$ SELECT count(*) + {sql_value} FROM mig_t $$;"
    )


async def test_function_files_run_after_the_numbered_ones_and_again_when_changed(
    tmp_path: Path, own_schema: asyncpg.Connection
) -> None:
    conn = own_schema
    write(tmp_path / "0001_table.sql", "CREATE TABLE mig_t (x int); INSERT INTO mig_t VALUES (1)")
    write(tmp_path / "functions" / "count.sql", counter("0"))
    write(tmp_path / "functions" / "other.sql", "CREATE OR REPLACE VIEW mig_v AS SELECT 1 AS one")
    assert await migrate(conn, tmp_path) == [
        "0001_table.sql",
        "functions/count.sql",
        "functions/other.sql",
    ]
    assert await conn.fetchval("SELECT mig_count()") == 1
    assert await migrate(conn, tmp_path) == []

    write(tmp_path / "functions" / "count.sql", counter("10"))
    assert await migrate(conn, tmp_path) == ["functions/count.sql"]  # only what changed
    assert await conn.fetchval("SELECT mig_count()") == 11

    # A numbered file may touch what the functions stand on: every file again.
    write(tmp_path / "0002_drop.sql", "DROP FUNCTION mig_count()")
    (tmp_path / "functions" / "other.sql").unlink()
    assert await migrate(conn, tmp_path) == ["0002_drop.sql", "functions/count.sql"]
    assert await conn.fetchval("SELECT mig_count()") == 11
    recorded = await conn.fetch("SELECT name, checksum FROM schema_functions")
    assert [r["name"] for r in recorded] == ["functions/count.sql"]
    assert await migrate(conn, tmp_path) == []


async def test_a_failing_function_file_leaves_every_body_as_it_was(
    tmp_path: Path, own_schema: asyncpg.Connection
) -> None:
    conn = own_schema
    write(tmp_path / "0001_table.sql", "CREATE TABLE mig_t (x int)")
    write(tmp_path / "functions" / "a.sql", counter("0"))
    await migrate(conn, tmp_path)
    before = await conn.fetch("SELECT * FROM schema_functions")

    write(tmp_path / "functions" / "a.sql", counter("5"))
    write(tmp_path / "functions" / "b.sql", "CREATE OR REPLACE FUNCTION mig_bad() nonsense")
    with pytest.raises(asyncpg.PostgresSyntaxError):
        await migrate(conn, tmp_path)
    assert await conn.fetchval("SELECT mig_count()") == 0  # a.sql's change rolled back too
    assert await conn.fetch("SELECT * FROM schema_functions") == before


async def test_a_numbered_file_of_comments_only_is_recorded(
    tmp_path: Path, own_schema: asyncpg.Connection
) -> None:
    write(tmp_path / "0001_moved.sql", "-- What was here lives in functions/.\n")
    assert await migrate(own_schema, tmp_path) == ["0001_moved.sql"]
    assert await own_schema.fetchval("SELECT name FROM schema_migrations") == "0001_moved.sql"


async def test_functions_are_replaced_only_between_ladder_steps(
    tmp_path: Path, own_schema: asyncpg.Connection, database_url: str
) -> None:
    write(tmp_path / "0001_table.sql", "CREATE TABLE mig_t (x int)")
    write(tmp_path / "functions" / "count.sql", counter("0"))
    await migrate(own_schema, tmp_path)
    write(tmp_path / "functions" / "count.sql", counter("7"))

    ladder = await asyncpg.connect(database_url)
    step = ladder.transaction()
    await step.start()
    await ladder.execute("SELECT ladder_lock()")  # what every ladder step does first
    migrating = asyncio.create_task(migrate(own_schema, tmp_path))
    try:
        waiting = """SELECT EXISTS (SELECT 1 FROM pg_locks
                     WHERE locktype = 'advisory' AND NOT granted AND pid = $1)"""
        await eventually(lambda: ladder.fetchval(waiting, own_schema.get_server_pid()))
        body = "SELECT prosrc FROM pg_proc WHERE proname = 'mig_count'"
        assert "+ 0 " in await ladder.fetchval(body)  # the old body meanwhile
    finally:
        await step.commit()
        applied = await asyncio.wait_for(migrating, 10)
        await ladder.close()
    assert applied == ["functions/count.sql"]
    assert await own_schema.fetchval("SELECT mig_count()") == 7


def test_numbered_migrations_define_no_function_procedure_or_trigger() -> None:
    """Their bodies live in migrations/functions/, one definition each; a numbered
    migration that needs a helper while it runs makes it in pg_temp."""
    definition = re.compile(
        r"CREATE\s+(OR\s+REPLACE\s+)?(FUNCTION|PROCEDURE|TRIGGER)\s+(?!pg_temp\.)", re.IGNORECASE
    )
    offenders = [
        m.name for m in load_migrations(Settings().migrations_dir) if definition.search(m.sql)
    ]
    assert offenders == []

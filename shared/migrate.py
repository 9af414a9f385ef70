"""Apply numbered SQL files in order, one transaction each, then the function
files whose checksum changed, recording what ran.

Numbered files (`migrations/NNNN_name.sql`) change the schema and run once.
Function files (`migrations/functions/name.sql`) hold the current body of every
function, procedure and trigger; those whose checksum changed (all of them
after a numbered file ran) are re-applied in name order and in one
transaction, so the live bodies are always the files' (like Flyway's
repeatable migrations). The ladder's lock is held meanwhile: a ladder round
never runs against a schema half migrated or functions half replaced.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from shared.errors import ConfigError

log = logging.getLogger(__name__)

_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
_FUNCTION_NAME = re.compile(r"^[a-z0-9_]+\.sql$")
FUNCTIONS_DIR = "functions"
_LOCK_KEY = 0x70696E67  # one migrator at a time, whatever the process
# The lock every ladder step takes for its transaction (ladder_lock() in
# migrations/functions/ladder.sql, which may not exist yet).
_LADDER_LOCK = "hashtext('pingtrack.ladder')"
_COMMENT_LINE = re.compile(r"^\s*--.*$", re.MULTILINE)


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


@dataclass(frozen=True)
class FunctionFile:
    name: str  # "functions/ladder.sql"
    sql: str
    checksum: str  # sha256 of the file, hex


def load_migrations(directory: Path) -> list[Migration]:
    if not directory.is_dir():
        raise ConfigError(f"migrations directory {directory} does not exist")
    found: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _NAME.match(path.name)
        if match is None:
            raise ConfigError(f"migration file {path.name} is not named NNNN_name.sql")
        version = int(match.group(1))
        if version in found:
            raise ConfigError(f"two migrations numbered {version}")
        found[version] = Migration(version, path.name, path.read_text())
    return [found[v] for v in sorted(found)]


def load_function_files(directory: Path) -> list[FunctionFile]:
    """The function files under `directory`/functions, in name order (none: empty)."""
    folder = directory / FUNCTIONS_DIR
    if not folder.is_dir():
        return []
    files = []
    for path in sorted(folder.glob("*.sql")):
        if _FUNCTION_NAME.match(path.name) is None:
            raise ConfigError(f"function file {path.name} is not named name.sql")
        data = path.read_bytes()
        files.append(
            FunctionFile(
                f"{FUNCTIONS_DIR}/{path.name}", data.decode(), hashlib.sha256(data).hexdigest()
            )
        )
    return files


def _has_statements(sql: str) -> bool:
    """False for a file of comments only (a numbered file whose functions moved out)."""
    return bool(_COMMENT_LINE.sub("", sql).strip())


async def ensure_partitions(conn: asyncpg.Connection, days_ahead: int) -> int:
    today = datetime.now(UTC).date()
    created: int = await conn.fetchval(
        "SELECT ensure_ping_partitions($1, $2)",
        today - timedelta(days=1),
        today + timedelta(days=days_ahead),
    )
    return created


async def migrate(conn: asyncpg.Connection, directory: Path, days_ahead: int = 7) -> list[str]:
    """Apply what is missing or changed; return the names applied now (empty when up
    to date): numbered files, then function files (`functions/name.sql`)."""
    migrations = load_migrations(directory)
    function_files = load_function_files(directory)
    await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
    try:
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version    integer PRIMARY KEY,
                   name       text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_functions (
                   name       text PRIMARY KEY,
                   checksum   text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        pending = [m for m in migrations if m.version not in done]
        recorded = {
            r["name"]: r["checksum"] for r in await conn.fetch("SELECT * FROM schema_functions")
        }
        current = {f.name: f.checksum for f in function_files}
        if not pending and recorded == current:
            await ensure_partitions(conn, days_ahead)
            return []
        await conn.execute(f"SELECT pg_advisory_lock({_LADDER_LOCK})")
        try:
            applied = [await _apply(conn, migration) for migration in pending]
            # A numbered file may have replaced or dropped a function: all files again.
            due = [f for f in function_files if pending or recorded.get(f.name) != f.checksum]
            await _apply_functions(conn, due, gone=recorded.keys() - current.keys())
            applied += [f.name for f in due]
        finally:
            await conn.execute(f"SELECT pg_advisory_unlock({_LADDER_LOCK})")
        await ensure_partitions(conn, days_ahead)
        return applied
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)


async def _apply(conn: asyncpg.Connection, migration: Migration) -> str:
    async with conn.transaction():
        if _has_statements(migration.sql):
            await conn.execute(migration.sql)
        await conn.execute(
            "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
            migration.version,
            migration.name,
        )
    log.info("applied migration", extra={"migration": migration.name})
    return migration.name


async def _apply_functions(
    conn: asyncpg.Connection, due: list[FunctionFile], gone: set[str]
) -> None:
    """Apply `due` in one transaction (all or none) and record their checksums; forget
    the records of files that no longer exist (their functions stay until a numbered
    file drops them)."""
    async with conn.transaction():
        for function_file in due:
            await conn.execute(function_file.sql)
            await conn.execute(
                """INSERT INTO schema_functions (name, checksum) VALUES ($1, $2)
                   ON CONFLICT (name) DO UPDATE
                   SET checksum = excluded.checksum, applied_at = now()""",
                function_file.name,
                function_file.checksum,
            )
        await conn.execute("DELETE FROM schema_functions WHERE name = ANY($1::text[])", list(gone))
    for function_file in due:
        log.info("applied function file", extra={"migration": function_file.name})


def dsn_for_database(dsn: str, database: str) -> str:
    """The same DSN (host, user, options) pointing at another database."""
    return _with_database(dsn, database)[0]


def _check_name(name: str) -> None:
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,63}", name):
        raise ConfigError(f"database name {name!r} must be letters, digits, _ or -")


def _with_database(dsn: str, database: str) -> tuple[str, str]:
    """Split a DSN into (same DSN pointing at `database`, its own database name)."""
    parts = urlsplit(dsn)
    name = parts.path.lstrip("/") or "postgres"
    return urlunsplit(parts._replace(path="/" + database)), name


async def create_database_if_missing(dsn: str) -> bool:
    """Create the database the DSN names if it does not exist; True when created."""
    maintenance, name = _with_database(dsn, "postgres")
    _check_name(name)
    conn = await asyncpg.connect(maintenance)
    try:
        if await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            return False
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        except asyncpg.DuplicateDatabaseError:
            return False  # created meanwhile by another migrator
        log.info("created database", extra={"database": name})
        return True
    finally:
        await conn.close()


async def migrate_database(dsn: str, directory: Path, days_ahead: int = 7) -> list[str]:
    """Create the database the DSN names when missing, then migrate it."""
    await create_database_if_missing(dsn)
    conn = await asyncpg.connect(dsn)
    try:
        return await migrate(conn, directory, days_ahead)
    finally:
        await conn.close()


async def drop_database(dsn: str) -> None:
    """Drop the database the DSN names, closing its sessions, with its pg_cron jobs
    (scratch databases of tests and benchmarks)."""
    maintenance, name = _with_database(dsn, "postgres")
    _check_name(name)
    conn = await asyncpg.connect(maintenance)
    try:
        cron_db: str | None = await conn.fetchval(
            "SELECT current_setting('cron.database_name', true)"
        )
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()
    if cron_db and cron_db != name:
        await _unschedule_jobs_of(dsn_for_database(dsn, cron_db), name)


async def _unschedule_jobs_of(cron_dsn: str, database: str) -> None:
    """pg_cron keeps a dropped database's jobs and fails them every minute: remove them."""
    conn = await asyncpg.connect(cron_dsn)
    try:
        if await conn.fetchval("SELECT to_regclass('cron.job')") is not None:
            await conn.execute(
                "SELECT cron.unschedule(jobid) FROM cron.job WHERE database = $1", database
            )
    finally:
        await conn.close()

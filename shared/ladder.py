"""The contraction ladder as configured in the database, and its pg_cron schedule.

The jobs themselves live in SQL (migrations/functions/ladder.sql); this module reads the
configuration for every Python caller (`load_ladder`: the API's history and storage
reads, the seed generator, the tests) and registers the jobs with pg_cron. pg_cron
lives in one database (`cron.database_name`) and runs each job in the database
it names, so one cron database serves any number of pingtrack databases.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from fractions import Fraction

import asyncpg

from shared.migrate import dsn_for_database
from shared.segments import Tolerance

log = logging.getLogger(__name__)

# One round of every job (partitions, rollups, packing, retention).
ROUND_SQL = "CALL ladder_run()"
EVERY_MINUTE = "* * * * *"


@dataclass(frozen=True, slots=True)
class Level:
    """One segment level: its tolerance, the block its segments never cross, its keep."""

    level: int
    max_span: timedelta  # blocks of this length (shared/blocks.py) are never crossed
    retention: timedelta
    abs_tolerance_us: int
    rel_tolerance: Fraction  # exact, as the numeric column holds it
    packed: bool = False  # ended days packed into one row per target (migrations 0030, 0031)

    @property
    def tier(self) -> str:
        """The level's name as a tier of the API, and its table."""
        return f"segments_l{self.level}"

    def tolerance(self) -> Tolerance:
        return Tolerance(
            abs_us=self.abs_tolerance_us,
            rel=self.rel_tolerance,
            span_us=self.max_span // timedelta(microseconds=1),
        )


@dataclass(frozen=True, slots=True)
class Ladder:
    """Tables ladder_levels and ladder_settings: what every tier keeps, and for how long."""

    levels: tuple[Level, ...]  # finest first
    raw_retention: timedelta
    hourly_retention: timedelta
    # A day's raw pings are packed once it ended this long ago.
    pack_after: timedelta = timedelta(days=1)

    def level(self, tier: str) -> Level | None:
        """The level named `tier` (segments_l<n>), None for another tier."""
        return next((lv for lv in self.levels if lv.tier == tier), None)


async def load_ladder(conn: asyncpg.Connection) -> Ladder:
    """The ladder as configured now: every Python reader of it starts here."""
    levels = await conn.fetch(
        "SELECT level, max_span, retention, abs_tolerance_us, rel_tolerance::text AS rel, packed"
        " FROM ladder_levels ORDER BY level"
    )
    settings = await conn.fetchrow(
        "SELECT raw_retention, hourly_retention, pack_after FROM ladder_settings"
    )
    return Ladder(
        levels=tuple(
            Level(
                level=r["level"],
                max_span=r["max_span"],
                retention=r["retention"],
                abs_tolerance_us=r["abs_tolerance_us"],
                rel_tolerance=Fraction(r["rel"]),
                packed=r["packed"],
            )
            for r in levels
        ),
        raw_retention=settings["raw_retention"],
        hourly_retention=settings["hourly_retention"],
        pack_after=settings["pack_after"],
    )


def cron_job_name(database: str) -> str:
    return f"pingtrack-ladder-{database}"


async def cron_unavailable_reason(conn: asyncpg.Connection) -> str | None:
    """Why pg_cron cannot be used through this connection, or None when it can."""
    preload = await conn.fetchval("SHOW shared_preload_libraries")
    if "pg_cron" not in (preload or ""):
        return f"pg_cron is not in shared_preload_libraries ({preload!r})"
    cron_db = await conn.fetchval("SELECT current_setting('cron.database_name', true)")
    here = await conn.fetchval("SELECT current_database()")
    if cron_db != here:
        return f"pg_cron lives in database {cron_db!r}, this connection is to {here!r}"
    return None


def enable_cron_hint(database: str) -> str:
    return (
        "rollups, packing and retention are NOT scheduled. To enable them: install"
        " postgresql-15-cron, set shared_preload_libraries = 'pg_cron' and"
        f" cron.database_name = '{database}' (or any database) in postgresql.conf, restart"
        " PostgreSQL and run `pingtrack migrate` again; meanwhile run `CALL ladder_run()`"
        f" in database {database!r} every minute by other means"
    )


@dataclass(frozen=True)
class CronSchedule:
    """What scheduling found: a job id, or why there is none (`warning`)."""

    database: str
    cron_database: str | None
    job_id: int | None
    warning: str | None


async def schedule_ladder_for(dsn: str) -> CronSchedule:
    """Schedule the ladder round of the database `dsn` names, in pg_cron's database.

    Never raises for a missing or misconfigured pg_cron: the round is then not
    scheduled and `warning` says why and how to enable it.
    """
    conn = await asyncpg.connect(dsn)
    try:
        database: str = await conn.fetchval("SELECT current_database()")
        preload = await conn.fetchval("SHOW shared_preload_libraries")
        cron_db: str | None = await conn.fetchval(
            "SELECT current_setting('cron.database_name', true)"
        )
    finally:
        await conn.close()
    if "pg_cron" not in (preload or "") or not cron_db:
        loaded = f"pg_cron is not loaded (shared_preload_libraries = {preload!r})"
        return _unscheduled(database, cron_db, loaded)
    cron_conn = await asyncpg.connect(dsn_for_database(dsn, cron_db))
    try:
        refused = await cron_unavailable_reason(cron_conn)
        if refused is not None:
            return _unscheduled(database, cron_db, refused)
        job_id = await schedule_ladder(cron_conn, database)
    except asyncpg.PostgresError as exc:
        return _unscheduled(database, cron_db, f"pg_cron refused the job: {exc}")
    finally:
        await cron_conn.close()
    return CronSchedule(database, cron_db, job_id, None)


def _unscheduled(database: str, cron_db: str | None, reason: str) -> CronSchedule:
    warning = f"{reason}; {enable_cron_hint(database)}"
    log.warning("ladder not scheduled", extra={"database": database, "reason": reason})
    return CronSchedule(database, cron_db, None, warning)


async def schedule_ladder(
    cron_conn: asyncpg.Connection, database: str, schedule: str = EVERY_MINUTE
) -> int:
    """Register (or update) the ladder round for `database`; returns the pg_cron job id.

    `cron_conn` is connected to the database named by cron.database_name.
    """
    await cron_conn.execute("CREATE EXTENSION IF NOT EXISTS pg_cron")
    job_id: int = await cron_conn.fetchval(
        "SELECT cron.schedule_in_database($1, $2, $3, $4)",
        cron_job_name(database),
        schedule,
        ROUND_SQL,
        database,
    )
    log.info("scheduled ladder jobs", extra={"database": database, "cron_job": job_id})
    return job_id


async def unschedule_ladder(cron_conn: asyncpg.Connection, database: str) -> bool:
    """Remove the ladder round of `database`; False when none was scheduled."""
    exists = await cron_conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM cron.job WHERE jobname = $1)", cron_job_name(database)
    )
    if not exists:
        return False
    await cron_conn.execute("SELECT cron.unschedule($1::name)", cron_job_name(database))
    return True

"""Is the contraction ladder running: rounds, failures, lag per tier, discarded marks.

The ladder records itself (table `ladder_state`, migrations/functions/ladder_health.sql),
so this works whichever database pg_cron lives in. When pg_cron lives in this
API's own database, its record of the round's last run (`cron.job_run_details`)
adds failures the ladder cannot record itself: a round that never started.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from api_service.times import iso_seconds
from shared.ladder import ROUND_SQL

# A discard makes /health degraded for this long after it happened (then the
# counter and /metrics keep it).
DISCARDS_REPORTED_FOR = timedelta(hours=24)
# Only the latest runs of pg_cron's log are searched (it is never pruned by itself).
CRON_RUNS_SEARCHED = 10_000

_STATE = "SELECT now() AS now, s.* FROM ladder_state s"
_LAG = "SELECT tier, now() - covered_to AS lag FROM ladder_lag()"
_CRON_HERE = """
SELECT current_setting('cron.database_name', true) = current_database()
       AND to_regclass('cron.job_run_details') IS NOT NULL"""
_CRON_LAST_RUN = """
SELECT status, return_message, start_time, end_time FROM cron.job_run_details
WHERE runid > (SELECT max(runid) FROM cron.job_run_details) - $3
  AND database = $1 AND command = $2
ORDER BY runid DESC LIMIT 1"""


@dataclass(frozen=True, slots=True)
class CronRun:
    """pg_cron's record of the latest run of this database's round."""

    status: str  # starting, running, sending, connecting, succeeded, failed
    message: str | None
    started_at: datetime | None
    ended_at: datetime | None


@dataclass(frozen=True, slots=True)
class LadderHealth:
    now: datetime  # the database's clock: every age below is measured on it
    since: datetime  # when the ladder's record began (its migration)
    started_at: datetime | None  # the latest round's start
    finished_at: datetime | None  # the latest completed round's end
    duration: timedelta | None  # and how long it took
    failed_at: datetime | None  # the latest failed round
    error: str | None  # its step and message
    rounds: int  # completed
    failures: int
    discarded_marks: int  # dirty marks dropped unsummarised, raw expired
    discarded_at: datetime | None
    discarded_hour: datetime | None  # the newest hour discarded
    lag: dict[str, timedelta]  # tier -> now - what it has settled
    cron: CronRun | None = None  # None: not recorded in this database, or no run yet

    @property
    def last_failed(self) -> bool:
        """The latest round that ended, failed."""
        return self.failed_at is not None and (
            self.finished_at is None or self.failed_at > self.finished_at
        )

    @property
    def running(self) -> bool:
        """A round started after the latest one ended (or it died without a word)."""
        ended = max((t for t in (self.finished_at, self.failed_at) if t is not None), default=None)
        return self.started_at is not None and (ended is None or self.started_at > ended)


async def cron_last_run(conn: asyncpg.Connection, database: str) -> CronRun | None:
    """The latest run of `database`'s round in pg_cron's log, read through `conn`
    (connected to pg_cron's database); None when there is none."""
    row = await conn.fetchrow(_CRON_LAST_RUN, database, ROUND_SQL, CRON_RUNS_SEARCHED)
    if row is None:
        return None
    return CronRun(row["status"], row["return_message"], row["start_time"], row["end_time"])


async def _cron_here(conn: asyncpg.Connection) -> CronRun | None:
    if not await conn.fetchval(_CRON_HERE):
        return None  # pg_cron lives elsewhere: the ladder's own record must do
    try:
        return await cron_last_run(conn, await conn.fetchval("SELECT current_database()"))
    except asyncpg.InsufficientPrivilegeError:
        return None


async def read_ladder_health(pool: asyncpg.Pool) -> LadderHealth:
    async with pool.acquire() as conn:
        state = await conn.fetchrow(_STATE)
        lag = {row["tier"]: row["lag"] for row in await conn.fetch(_LAG)}
        cron = await _cron_here(conn)
    if state is None:
        raise LookupError("ladder_state has no row")
    return LadderHealth(
        now=state["now"],
        since=state["since"],
        started_at=state["started_at"],
        finished_at=state["finished_at"],
        duration=state["duration"],
        failed_at=state["failed_at"],
        error=state["error"],
        rounds=state["rounds"],
        failures=state["failures"],
        discarded_marks=state["discarded_marks"],
        discarded_at=state["discarded_at"],
        discarded_hour=state["discarded_hour"],
        lag=lag,
        cron=cron,
    )


def ladder_reasons(state: LadderHealth, stale_after: timedelta) -> list[str]:
    """One line per problem of the ladder; none when it runs."""
    reasons = []
    cron = state.cron
    if state.last_failed:
        reasons.append(
            f"ladder: the last round failed at {iso_seconds(state.failed_at)} ({state.error})"
        )
    elif (
        cron is not None
        and cron.status == "failed"
        and cron.started_at is not None
        and cron.started_at > (state.finished_at or state.since)
    ):
        reasons.append(
            f"ladder: pg_cron's last run of the round failed at {iso_seconds(cron.started_at)}"
            f" ({(cron.message or '').strip()})"
        )
    if state.finished_at is None:
        if state.now - state.since > stale_after:
            reasons.append(
                f"ladder: no round has completed since {iso_seconds(state.since)}"
                f" (is pg_cron running `{ROUND_SQL}` in this database?)"
            )
    elif state.now - state.finished_at > stale_after:
        minutes = int((state.now - state.finished_at).total_seconds() // 60)
        last = iso_seconds(state.finished_at)
        reasons.append(f"ladder: no round completed for {minutes} min (last at {last})")
    if state.discarded_at is not None and state.now - state.discarded_at < DISCARDS_REPORTED_FOR:
        reasons.append(
            f"ladder: marks of hours past raw retention discarded unsummarised at"
            f" {iso_seconds(state.discarded_at)} (newest hour {iso_seconds(state.discarded_hour)};"
            f" {state.discarded_marks} in all)"
        )
    return reasons


def ladder_details(state: LadderHealth) -> dict[str, Any]:
    """The `ladder` section of /health."""
    cron = state.cron
    return {
        "last_completed_at": iso_seconds(state.finished_at),
        "last_duration_s": None if state.duration is None else state.duration.total_seconds(),
        "last_started_at": iso_seconds(state.started_at),
        "running": state.running,
        "last_failed_at": iso_seconds(state.failed_at),
        "last_error": state.error,
        "rounds_completed": state.rounds,
        "rounds_failed": state.failures,
        "lag_s": {tier: round(lag.total_seconds(), 3) for tier, lag in state.lag.items()},
        "discarded_marks": state.discarded_marks,
        "discarded_at": iso_seconds(state.discarded_at),
        "discarded_newest_hour": iso_seconds(state.discarded_hour),
        "cron_last_run": None
        if cron is None
        else {
            "status": cron.status,
            "started_at": iso_seconds(cron.started_at),
            "ended_at": iso_seconds(cron.ended_at),
            "message": cron.message,
        },
    }

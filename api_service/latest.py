"""The newest result of every target, and the one definition of a stale target.

Stale: an active target with no stored result for STALE_INTERVALS of its
intervals, counted from its last change (a target just created or resumed
gets that long to produce one). /health, /results/latest and
/targets/{id}/latest all use `stale_condition`, so they always agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from shared.errors import NotFound

STALE_INTERVALS = 3


def stale_condition(t: str = "t", last_ts: str = "last.ts") -> str:
    """SQL: is target row `t`, whose newest result is at `last_ts`, stale."""
    window = f"make_interval(secs => {STALE_INTERVALS} * {t}.interval_ms / 1000.0)"
    return (
        f"({t}.state = 'active' AND {t}.updated_at < now() - {window}"
        f" AND ({last_ts} IS NULL OR {last_ts} < now() - {window}))"
    )


# One backward probe of the (target_id, ts) primary key per target: the
# newest of thousands of targets in one query without scanning their history.
LAST_RESULT = """LEFT JOIN LATERAL (
    SELECT ts, rtt_us FROM pings WHERE target_id = t.id ORDER BY ts DESC LIMIT 1
) last ON true"""

# What is probed, in one column: the IP, the hostname or the URL.
PROBED = "coalesce(host(t.address), t.hostname, t.url)"

_LATEST = f"""
SELECT t.id, t.name, t.kind, {PROBED} AS probed, t.state, t.interval_ms, t.tags,
       last.ts, last.rtt_us,
       extract(epoch FROM clock_timestamp() - last.ts)::float8 AS age_s,
       {stale_condition()} AS stale
FROM targets t {LAST_RESULT}
WHERE {{where}}
ORDER BY t.id"""
_LATEST_MANY = _LATEST.format(where="t.state = ANY($1::text[]) AND t.tags @> $2::text[]")
_LATEST_ONE = _LATEST.format(where="t.id = $1")


def stale_targets_query(limit: int) -> str:
    """Stale targets, the first `limit` of them, each row with the total count."""
    return f"""
SELECT t.id, {PROBED} AS address, t.interval_ms, count(*) OVER () AS total,
       last.ts AS last_ping
FROM targets t {LAST_RESULT}
WHERE t.state = 'active' AND {stale_condition()}
ORDER BY t.id
LIMIT {int(limit)}"""


@dataclass(frozen=True, slots=True)
class Latest:
    id: int
    name: str | None
    kind: str
    probed: str
    state: str
    interval_ms: int
    tags: tuple[str, ...]
    ts: datetime | None
    rtt_us: int | None
    age_s: float | None
    stale: bool

    @property
    def lost(self) -> bool | None:
        return None if self.ts is None else self.rtt_us is None


def _latest(row: asyncpg.Record) -> Latest:
    return Latest(
        id=row["id"],
        name=row["name"],
        kind=row["kind"],
        probed=row["probed"],
        state=row["state"],
        interval_ms=row["interval_ms"],
        tags=tuple(row["tags"]),
        ts=row["ts"],
        rtt_us=row["rtt_us"],
        age_s=row["age_s"],
        stale=row["stale"],
    )


async def latest_results(
    pool: asyncpg.Pool, states: Sequence[str], tags: Sequence[str] = ()
) -> list[Latest]:
    rows = await pool.fetch(_LATEST_MANY, list(states), list(tags))
    return [_latest(row) for row in rows]


async def latest_of(pool: asyncpg.Pool, target_id: int) -> Latest:
    row = await pool.fetchrow(_LATEST_ONE, target_id)
    if row is None:
        raise NotFound(f"target {target_id} does not exist")
    return _latest(row)

"""The newest result of every target, and the one definition of a stale target.

Stale: an active target with no stored result for STALE_INTERVALS of its
intervals, counted from its last change (a target just created or resumed
gets that long to produce one). /health, /results/latest and
/targets/{id}/latest all use `stale_condition`, so they always agree.

For targets probed by name (hostnames, URLs) they also say where the newest
result was sent (the as-of row of target_addresses) and, when the newest
resolution failed, why: a name that does not resolve is not probed, so its
target goes stale, and the reason belongs beside the flag. For tcp and http
targets the newest result's probe details (status, time to first byte,
certificate expiry, error) come along.
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

# The newest resolution of a name: an error there means it does not resolve now.
LAST_RESOLUTION = """LEFT JOIN LATERAL (
    SELECT ts, error FROM target_addresses
    WHERE target_id = t.id AND t.address IS NULL ORDER BY ts DESC LIMIT 1
) res ON true"""

# The address the newest result went to (target_address_at, inlined so the
# planner probes the key instead of calling a function per row; with no
# result yet, the address it would go to now).
SENT_TO = """LEFT JOIN LATERAL (
    SELECT address FROM target_addresses
    WHERE target_id = t.id AND t.address IS NULL AND ts <= coalesce(last.ts, now())
    ORDER BY ts DESC LIMIT 1
) sent ON true"""

# The newest result's details: keyed by the same (target, ts), one partition probed.
LAST_DETAIL = """LEFT JOIN LATERAL (
    SELECT true AS found, status, ttfb_us, cert_expires_at, error FROM probe_details
    WHERE target_id = t.id AND ts = last.ts AND t.kind <> 'icmp'
) detail ON true"""

_LATEST = f"""
SELECT t.id, t.name, t.kind, {PROBED} AS probed, t.state, t.interval_ms, t.tags,
       last.ts, last.rtt_us,
       extract(epoch FROM clock_timestamp() - last.ts)::float8 AS age_s,
       {stale_condition()} AS stale,
       host(coalesce(t.address, sent.address)) AS address,
       res.error AS resolve_error, CASE WHEN res.error IS NOT NULL THEN res.ts END AS resolve_ts,
       detail.found, detail.status, detail.ttfb_us, detail.cert_expires_at, detail.error
FROM targets t {LAST_RESULT} {LAST_RESOLUTION} {SENT_TO} {LAST_DETAIL}
WHERE {{where}}
ORDER BY t.id"""
_LATEST_MANY = _LATEST.format(where="t.state = ANY($1::text[]) AND t.tags @> $2::text[]")
_LATEST_ONE = _LATEST.format(where="t.id = $1")


def stale_targets_query(limit: int) -> str:
    """Stale targets, the first `limit` of them, each row with the total count."""
    return f"""
SELECT t.id, {PROBED} AS address, t.interval_ms, count(*) OVER () AS total,
       last.ts AS last_ping, res.error AS resolve_error
FROM targets t {LAST_RESULT} {LAST_RESOLUTION}
WHERE t.state = 'active' AND {stale_condition()}
ORDER BY t.id
LIMIT {int(limit)}"""


@dataclass(frozen=True, slots=True)
class Detail:
    status: int | None
    ttfb_us: int | None
    cert_expires_at: datetime | None
    error: str | None


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
    address: str | None  # where the newest result was sent; None: not resolved yet
    resolve_error: str | None  # the name does not resolve now: the newest failure
    resolve_ts: datetime | None
    detail: Detail | None  # tcp/http: what the newest result had to say, if anything

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
        address=row["address"],
        resolve_error=row["resolve_error"],
        resolve_ts=row["resolve_ts"],
        detail=None
        if row["found"] is None
        else Detail(row["status"], row["ttfb_us"], row["cert_expires_at"], row["error"]),
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

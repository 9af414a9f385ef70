"""Statistics over a range, from the best tier.

Raw when the range is inside the raw window and small enough: every figure
exact. Otherwise the range is widened to whole hours and read from the
rolled-up tiers: count, loss, min/max, mean, stddev and jitter from the
hourly summaries (jitter weighted by answered pings; pairs across an hour
edge are not counted), and percentiles, loss runs, availability and hop
changes from the segments, each stretch of the range read from the finest
level still kept there (tier_choice.level_pieces), taking each answered
segment as `count` pings at its mean (off by at most that level's tolerance,
since every ping lies inside its segment's envelope).

Availability is the share of pings outside outages, an outage being a loss
run of at least OUTAGE_PINGS consecutive lost pings; loss % counts every
lost ping.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime

import asyncpg
import numpy as np
import numpy.typing as npt

from api_service.history import load_ladder, resolve_range, target_info
from api_service.pings import iso
from api_service.tier_choice import (
    HOUR,
    HOURLY,
    RAW,
    LevelSpec,
    align_down,
    align_up,
    level_pieces,
)

OUTAGE_PINGS = 3
# Exact percentiles sort every ping: a few hours at 1 Hz stay within ~50 ms.
RAW_STATS_BUDGET = 14_400

_RAW_SQL = """
    WITH p AS (
        SELECT ts, rtt_us, hops, count(rtt_us) OVER (ORDER BY ts) AS island
        FROM raw_pings($1, $2, $3)
    ), a AS (
        SELECT rtt_us, abs(rtt_us - lag(rtt_us) OVER w) AS step,
               (lag(hops) OVER w IS NOT NULL AND hops IS DISTINCT FROM lag(hops) OVER w) AS hc
        FROM p WHERE rtt_us IS NOT NULL WINDOW w AS (ORDER BY ts)
    ), runs AS (
        SELECT count(*) AS n FROM p WHERE rtt_us IS NULL GROUP BY island
    )
    SELECT (SELECT count(*) FROM p) AS count,
           (SELECT count(*) FROM p WHERE rtt_us IS NULL) AS lost,
           min(rtt_us) AS min_us, max(rtt_us) AS max_us, avg(rtt_us)::float8 AS mean_us,
           stddev_pop(rtt_us)::float8 AS stddev_us,
           percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY rtt_us) AS pct,
           avg(step)::float8 AS jitter_us,
           count(*) FILTER (WHERE hc) AS hop_changes,
           (SELECT count(*) FROM runs) AS loss_runs,
           (SELECT coalesce(sum(n), 0)::bigint FROM runs WHERE n >= $4) AS outage_pings
    FROM a"""

_HOURLY_SQL = """
    SELECT coalesce(sum(count), 0) AS count, coalesce(sum(lost), 0) AS lost,
           min(min_us) AS min_us, max(max_us) AS max_us,
           sum(sum_us)::float8 / nullif(sum(count - lost), 0) AS mean_us,
           sum(sumsq_us)::float8 AS sumsq, sum(sum_us)::float8 AS total,
           sum(jitter_us * (count - lost - 1)) FILTER (WHERE count - lost > 1)
             / nullif(sum(count - lost - 1) FILTER (WHERE count - lost > 1), 0) AS jitter_us
    FROM hourly_summaries WHERE target_id = $1 AND hour >= $2 AND hour < $3"""

_SEGMENTS_SQL = """
    SELECT count, lost, sum_us, hops FROM segments
    WHERE target_id = $1 AND level = $2 AND start_ts >= $3 AND start_ts < $4
    ORDER BY start_ts"""


@dataclass(frozen=True, slots=True)
class SegmentFigures:
    p50_us: float | None
    p95_us: float | None
    p99_us: float | None
    hop_changes: int
    loss_runs: int
    outage_pings: int


def segment_figures(
    count: npt.NDArray[np.int64],
    lost: npt.NDArray[np.int64],
    sum_us: npt.NDArray[np.float64],
    hops: npt.NDArray[np.int64],
) -> SegmentFigures:
    """Figures of time-ordered segments (hops -1 for none). Pure.

    Percentile q is the smallest segment mean below which at least q of the
    answered pings lie; a loss run is a run of lost segments back to back.
    """
    answered = lost == 0
    means, weights = sum_us[answered] / count[answered], count[answered]
    order = np.argsort(means, kind="stable")
    cum = np.cumsum(weights[order])
    pct: list[float | None] = [None, None, None]
    if len(cum):
        at = np.searchsorted(cum, np.array([0.5, 0.95, 0.99]) * cum[-1], side="left")
        pct = [float(means[order][min(i, len(cum) - 1)]) for i in at]
    seen = hops[answered]
    is_lost = ~answered
    starts = is_lost & ~np.concatenate([[False], is_lost[:-1]])
    run_sizes = np.bincount(np.cumsum(starts)[is_lost], weights=lost[is_lost])[1:]
    return SegmentFigures(
        p50_us=pct[0],
        p95_us=pct[1],
        p99_us=pct[2],
        hop_changes=int(np.count_nonzero(seen[1:] != seen[:-1])),
        loss_runs=int(starts.sum()),
        outage_pings=int(run_sizes[run_sizes >= OUTAGE_PINGS].sum()),
    )


async def _segment_figures(
    conn: asyncpg.Connection, target_id: int, pieces: list[tuple[LevelSpec, datetime, datetime]]
) -> SegmentFigures:
    rows: list[asyncpg.Record] = []
    for spec, a, b in pieces:
        rows += await conn.fetch(_SEGMENTS_SQL, target_id, spec.level, a, b)
    return segment_figures(
        np.fromiter((r[0] for r in rows), np.int64, len(rows)),
        np.fromiter((r[1] for r in rows), np.int64, len(rows)),
        np.fromiter((r[2] for r in rows), np.float64, len(rows)),
        np.fromiter((-1 if r[3] is None else r[3] for r in rows), np.int64, len(rows)),
    )


@dataclass(frozen=True, slots=True)
class Stats:
    tier: str
    start: datetime
    end: datetime
    count: int
    lost: int
    loss_pct: float | None
    availability_pct: float | None
    min_ms: float | None
    avg_ms: float | None
    max_ms: float | None
    stddev_ms: float | None
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    jitter_ms: float | None
    hop_changes: int | None
    loss_runs: int | None

    def content(self) -> dict[str, object]:
        out = asdict(self)
        out["from"], out["to"] = iso(out.pop("start")), iso(out.pop("end"))
        return out


def _ms(us: float | None) -> float | None:
    return None if us is None else round(us / 1000, 3)


def _pct(part: int, whole: int) -> float | None:
    return None if whole == 0 else round(100 * part / whole, 4)


async def stats(
    pool: asyncpg.Pool,
    target_id: int,
    start: datetime | None = None,
    end: datetime | None = None,
    *,
    force: str | None = None,
) -> Stats:
    """Figures over [start, end); `force` = "raw" or "rolled_up" overrides the choice."""
    now = datetime.now(UTC)
    lo, hi = resolve_range(start, end, now)
    async with pool.acquire() as conn:
        info = await target_info(conn, target_id)
        ladder = await load_ladder(conn)
        first = min(max(lo, info.first_data), hi)
        pings = (hi - first) / info.interval
        raw_ok = first >= now - ladder.raw_retention and pings <= RAW_STATS_BUDGET
        if force == RAW or (raw_ok and force is None):
            r = await conn.fetchrow(_RAW_SQL, target_id, lo, hi, OUTAGE_PINGS)
            pct = r["pct"] or [None, None, None]
            return Stats(
                RAW,
                lo,
                hi,
                r["count"],
                r["lost"],
                _pct(r["lost"], r["count"]),
                _pct(r["count"] - r["outage_pings"], r["count"]),
                _ms(r["min_us"]),
                _ms(r["mean_us"]),
                _ms(r["max_us"]),
                _ms(r["stddev_us"]),
                _ms(pct[0]),
                _ms(pct[1]),
                _ms(pct[2]),
                _ms(r["jitter_us"]),
                r["hop_changes"],
                r["loss_runs"],
            )
        lo, hi = align_down(lo, HOUR), align_up(hi, HOUR)
        h = await conn.fetchrow(_HOURLY_SQL, target_id, lo, hi)
        pieces = level_pieces(lo, hi, now, ladder)
        s = await _segment_figures(conn, target_id, pieces) if pieces else None
    count, lost = int(h["count"]), int(h["lost"])
    answered = count - lost
    stddev = None
    if answered:
        variance = max(0.0, h["sumsq"] / answered - (h["total"] / answered) ** 2)
        stddev = variance**0.5
    tier = HOURLY + "".join(f"+segments_l{p.level}" for p, _, _ in pieces)
    return Stats(
        tier,
        lo,
        hi,
        count,
        lost,
        _pct(lost, count),
        None if s is None else _pct(count - s.outage_pings, count),
        _ms(h["min_us"]),
        _ms(h["mean_us"]),
        _ms(h["max_us"]),
        _ms(stddev),
        None if s is None else _ms(s.p50_us),
        None if s is None else _ms(s.p95_us),
        None if s is None else _ms(s.p99_us),
        _ms(h["jitter_us"]),
        None if s is None else s.hop_changes,
        None if s is None else s.loss_runs,
    )

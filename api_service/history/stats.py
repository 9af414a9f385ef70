"""Statistics over a range, from the best tier.

Raw when the range is inside the raw window and small enough: every figure
exact. Otherwise the range is widened to whole hours and read from the
rolled-up tiers: count, loss, min/max, mean, stddev and jitter from the
hourly summaries (jitter weighted by answered pings; pairs across an hour
edge are not counted), and percentiles, loss runs, availability and hop
changes from the segments, each stretch of the range read from the finest
level still kept there (tier_choice.level_pieces), taking each answered
segment as `count` pings at its mean (off by at most that level's tolerance,
since every ping lies inside its segment's envelope; segment_figures.py, pure).

Those segment figures are reduced in the database, so a month of level 1
(~18 000 segments) leaves PostgreSQL as a few hundred rows: the means
grouped on a 0.1 % logarithmic grid with their weights (a percentile is the
lowest mean of the grid cell it falls in: at most 0.1 % below the exact
pick, far inside any level's tolerance), and, in time order, only the
segments a loss run or a hop change can be seen from (lost ones, the first
answered one after a loss, and those whose hops differ from the one
before). `exact_segment_figures` reads every segment: the reference.

Availability is the share of pings outside outages, an outage being a loss
run of at least OUTAGE_PINGS consecutive lost pings; loss % counts every
lost ping.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime

import asyncpg
import numpy as np

from api_service.history.scope import resolve_range, target_info
from api_service.history.segment_figures import (
    OUTAGE_PINGS,
    SegmentFigures,
    run_figures,
    segment_figures,
    weighted_percentiles,
)
from api_service.history.tier_choice import (
    HOUR,
    HOURLY,
    RAW,
    level_pieces,
)
from api_service.times import iso
from shared.blocks import align_down, align_up
from shared.ladder import Level, load_ladder

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
    SELECT count, lost, sum_us, hops FROM segments_of($1, $2, $3, $4) ORDER BY start_ts"""


# Cells per e-fold of the mean: neighbouring cells differ by 0.1 %.
GRID_CELLS = 1000
# p: the pieces (level, from, to), disjoint and time-ordered, read once
# through segment_figures_of() (only the arrays used here). Rows of kind 0:
# grid cells of answered means (lowest mean, pings); kind 1: in time order,
# the segments that loss runs and hop changes are read from (each piece's
# first segment among them, as it has no predecessor there).
_FIGURES_SQL = f"""
    WITH p AS (
        SELECT * FROM unnest($2::smallint[], $3::timestamptz[], $4::timestamptz[])
            WITH ORDINALITY AS p(level, lo, hi, n)
    ), s AS MATERIALIZED (
        SELECT p.n, s.* FROM p CROSS JOIN LATERAL segment_figures_of($1, p.level, p.lo, p.hi) s
    )
    SELECT 0 AS kind, 0::bigint AS n, NULL::timestamptz AS ts, sum(count)::bigint AS count,
           0 AS lost, min(sum_us::float8 / count) AS mean_us, NULL::int AS hops
    FROM s WHERE lost = 0
    GROUP BY floor(ln(greatest(sum_us::float8 / count, 1)) * {GRID_CELLS})
    UNION ALL
    SELECT 1, x.n, x.start_ts, x.count, x.lost, NULL, coalesce(x.hops, -1)
    FROM (
        SELECT n, start_ts, count, lost, hops,
               lag(lost) OVER w AS prev_lost, lag(hops) OVER w AS prev_hops
        FROM s
        WINDOW w AS (PARTITION BY n ORDER BY start_ts)
    ) x
    WHERE lost <> 0 OR prev_lost IS NULL OR prev_lost <> 0 OR hops IS DISTINCT FROM prev_hops
    ORDER BY kind, n, ts"""

Pieces = list[tuple[Level, datetime, datetime]]


async def exact_segment_figures(
    conn: asyncpg.Connection, target_id: int, pieces: Pieces
) -> SegmentFigures:
    """Segment figures from every segment of the pieces: the reference for `segment_figures_of`."""
    rows: list[asyncpg.Record] = []
    for spec, a, b in pieces:
        rows += await conn.fetch(_SEGMENTS_SQL, target_id, spec.level, a, b)
    return segment_figures(
        np.fromiter((r[0] for r in rows), np.int64, len(rows)),
        np.fromiter((r[1] for r in rows), np.int64, len(rows)),
        np.fromiter((r[2] for r in rows), np.float64, len(rows)),
        np.fromiter((-1 if r[3] is None else r[3] for r in rows), np.int64, len(rows)),
    )


async def segment_figures_of(
    conn: asyncpg.Connection, target_id: int, pieces: Pieces
) -> SegmentFigures:
    """Segment figures reduced in the database (see the module doc), in one query."""
    rows = await conn.fetch(
        _FIGURES_SQL,
        target_id,
        [spec.level for spec, _, _ in pieces],
        [a for _, a, _ in pieces],
        [b for _, _, b in pieces],
    )
    cells = [r for r in rows if r["kind"] == 0]
    seq = rows[len(cells) :]
    p50, p95, p99 = weighted_percentiles(
        np.fromiter((r["mean_us"] for r in cells), np.float64, len(cells)),
        np.fromiter((r["count"] for r in cells), np.int64, len(cells)),
    )
    runs = run_figures(
        np.fromiter((r["lost"] for r in seq), np.int64, len(seq)),
        np.fromiter((r["hops"] for r in seq), np.int64, len(seq)),
    )
    return SegmentFigures(p50, p95, p99, *runs)


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
        s = await segment_figures_of(conn, target_id, pieces) if pieces else None
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

"""Graph series: at most N buckets over any range, from the tier tier_choice picks.

Rolled-up tiers (segments, hourly) hold only what the ladder has settled; the
blocks still waiting for it are read from raw and merged into the same grid.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg

from api_service.history import buckets as bk
from api_service.history.scope import dirty_from, resolve_range, target_info
from api_service.history.tier_choice import (
    HOUR,
    HOURLY,
    RAW,
    SEGMENT_BUDGET,
    Grid,
    coarser,
    grid_for,
    plan_series,
    tail_start,
)
from api_service.times import iso
from shared.blocks import us_since_origin
from shared.errors import InvalidInput
from shared.ladder import Ladder, load_ladder

DEFAULT_POINTS = 1000
MAX_POINTS = 5000

_AGGREGATES = """count(*)::int AS count, count(*) FILTER (WHERE rtt_us IS NULL)::int AS lost,
    min(rtt_us) AS min_us, max(rtt_us) AS max_us, coalesce(sum(rtt_us), 0)::float8 AS sum_us,
    min(hops) FILTER (WHERE rtt_us IS NOT NULL) AS hops_min,
    max(hops) FILTER (WHERE rtt_us IS NOT NULL) AS hops_max"""
# Both raw forms, as raw_pings() reads them, but grouped apart: raw_pings()
# orders its union, which costs 2.5x on a day of pings and buckets need no order.
_RAW_SQL = f"""
    SELECT date_bin($4, ts, $5) AS b, {_AGGREGATES}
    FROM pings WHERE target_id = $1 AND ts >= $2 AND ts < $3 GROUP BY 1
    UNION ALL
    SELECT date_bin($4, u.ts, $5) AS b, {_AGGREGATES}
    FROM pings_packed k CROSS JOIN LATERAL unpack_pings(k) u
    WHERE k.target_id = $1
      AND k.block_start >= date_bin(interval '1 hour', $2, ladder_origin())
      AND k.block_start < $3 AND u.ts >= $2 AND u.ts < $3
    GROUP BY 1"""

_HOURLY_SQL = """
    SELECT date_bin($4, hour, $5) AS b, sum(count)::int AS count, sum(lost)::int AS lost,
           min(min_us) AS min_us, max(max_us) AS max_us, sum(sum_us)::float8 AS sum_us,
           min(hops_min) AS hops_min, max(hops_max) AS hops_max
    FROM hourly_summaries
    WHERE target_id = $1 AND hour >= $2 AND hour < $3 GROUP BY 1"""

# Segments inside one bucket are summed here; the few crossing a bucket edge
# (or the raw hand-over at $3) are shared out in Python.
_SEGMENT_RANGE = """FROM segments_of($1, $2, $6, $3) WHERE end_ts >= $7"""
_SEGMENTS_INSIDE_SQL = f"""
    SELECT date_bin($4, start_ts, $5) AS b, sum(count)::int AS count, sum(lost)::int AS lost,
           min(min_us) AS min_us, max(max_us) AS max_us, sum(sum_us)::float8 AS sum_us,
           min(hops) AS hops_min, max(hops) AS hops_max
    {_SEGMENT_RANGE}
      AND date_bin($4, start_ts, $5) = date_bin($4, end_ts, $5) AND end_ts < $3
    GROUP BY 1"""
_SEGMENTS_ACROSS_SQL = f"""
    SELECT start_ts, end_ts, count, lost, min_us, max_us, sum_us, hops
    {_SEGMENT_RANGE}
      AND (date_bin($4, start_ts, $5) <> date_bin($4, end_ts, $5) OR end_ts >= $3)"""


@dataclass(frozen=True, slots=True)
class Series:
    tier: str
    grid: Grid
    buckets: list[bk.Bucket]
    raw_from: datetime | None  # where raw took over from the tier (unsettled data)

    def content(self) -> dict[str, object]:
        starts = [iso(ts) for ts in self.grid.starts()]
        return {
            "tier": self.tier,
            "from": iso(self.grid.first),
            "to": iso(self.grid.end),
            "bucket_s": self.grid.width.total_seconds(),
            "raw_from": None if self.raw_from is None else iso(self.raw_from),
            "points": bk.points(self.grid, self.buckets, starts),
        }


def _add_rows(rows: list[asyncpg.Record], grid: Grid, out: list[bk.Bucket]) -> None:
    for r in rows:
        i = bk.index_of(grid, us_since_origin(r["b"]))
        if i is not None:
            out[i].add(
                r["count"], r["lost"], r["min_us"], r["max_us"], r["sum_us"],
                r["hops_min"], r["hops_max"],
            )  # fmt: skip


async def add_segments(
    conn: asyncpg.Connection,
    target_id: int,
    level: int,
    span: timedelta,
    lo: datetime,
    hi: datetime,
    grid: Grid,
    out: list[bk.Bucket],
) -> None:
    args = (target_id, level, hi, grid.width, grid.first, lo - span, lo)
    _add_rows(await conn.fetch(_SEGMENTS_INSIDE_SQL, *args), grid, out)
    clip = us_since_origin(hi)
    for r in await conn.fetch(_SEGMENTS_ACROSS_SQL, *args):
        row = (
            us_since_origin(r["start_ts"]), us_since_origin(r["end_ts"]), r["count"], r["lost"],
            r["min_us"], r["max_us"], r["sum_us"], r["hops"],
        )  # fmt: skip
        bk.add_segment(out, grid, row, clip)


async def read_tier(
    conn: asyncpg.Connection,
    target_id: int,
    tier: str,
    ladder: Ladder,
    grid: Grid,
    lo: datetime,
    hi: datetime,
    out: list[bk.Bucket],
) -> None:
    """Add the rows of one tier in [lo, hi) to the grid's buckets."""
    if lo >= hi:
        return
    if tier in (RAW, HOURLY):
        sql = _RAW_SQL if tier == RAW else _HOURLY_SQL
        _add_rows(await conn.fetch(sql, target_id, lo, hi, grid.width, grid.first), grid, out)
    else:
        spec = ladder.level(tier)
        assert spec is not None, tier
        await add_segments(conn, target_id, spec.level, spec.max_span, lo, hi, grid, out)


_COUNT_SQL = """SELECT count(*) FROM (
    SELECT 1 FROM segments_of($1, $2, $3, $4) LIMIT $5) s"""


async def _affordable(
    conn: asyncpg.Connection, target_id: int, tier: str, ladder: Ladder,
    lo: datetime, hi: datetime, budget: int,
) -> str:  # fmt: skip
    """`tier`, or the first coarser one with at most `budget` segments in [lo, hi)."""
    while (spec := ladder.level(tier)) is not None:
        n = await conn.fetchval(_COUNT_SQL, target_id, spec.level, lo, hi, budget + 1)
        if n <= budget:
            break
        tier = coarser(tier, ladder)
    return tier


async def series(
    pool: asyncpg.Pool,
    target_id: int,
    start: datetime | None = None,
    end: datetime | None = None,
    points: int = DEFAULT_POINTS,
    *,
    tier: str | None = None,
    segment_budget: int = SEGMENT_BUDGET,
) -> Series:
    """The series of [start, end) in at most `points` buckets.

    `tier` forces a tier (tests compare tiers with it); by default the plan
    picks, moving up a level while a level holds more than `segment_budget`
    segments in the range.
    """
    if not 1 <= points <= MAX_POINTS:
        raise InvalidInput(f"points must be between 1 and {MAX_POINTS}, got {points}")
    now = datetime.now(UTC)
    lo, hi = resolve_range(start, end, now)
    async with pool.acquire() as conn:
        info = await target_info(conn, target_id)
        ladder = await load_ladder(conn)
        if lo == hi:
            return Series("none", grid_for(lo, lo, timedelta(seconds=1)), [], None)
        plan = plan_series(
            lo,
            hi,
            points,
            now=now,
            ladder=ladder,
            interval=info.interval,
            first_data=info.first_data,
        )
        chosen = tier or await _affordable(
            conn, target_id, plan.tier, ladder, lo, hi, segment_budget
        )
        if chosen != RAW and chosen != HOURLY and ladder.level(chosen) is None:
            raise InvalidInput(f"unknown tier {chosen!r}")
        grid = plan.grid if chosen != HOURLY else grid_for(lo, hi, max(plan.grid.width, HOUR))
        out = bk.empty(grid)
        tail = tail_start(chosen, await dirty_from(conn, target_id, grid.end, ladder), ladder)
        split = grid.end if tail is None else max(grid.first, min(tail, grid.end))
        await read_tier(conn, target_id, chosen, ladder, grid, grid.first, split, out)
        await read_tier(conn, target_id, RAW, ladder, grid, split, grid.end, out)
    return Series(chosen, grid, out, None if split >= grid.end else split)

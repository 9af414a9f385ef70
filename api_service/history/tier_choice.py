"""Which tier answers a range, and on what grid of buckets. Pure functions.

Buckets are aligned to the ladder's origin (shared/blocks.py), like every
block the ladder builds, and the grid covers whole buckets: a series over
[from, to) is answered over [first bucket start, last bucket end).

A tier is exact for a bucket width when none of its rows straddles a bucket
edge: raw always; hourly summaries for widths that are whole hours; a segment
level for widths that are multiples of its block span. The choice:

- width of an hour or more: hourly (exact and one row per hour);
- shorter, while the range is inside the raw window and holds at most
  RAW_BUDGET pings (PACKED_BUDGET where days may be packed already): raw;
- otherwise the finest segment level still kept for the range whose rows
  there number at most SEGMENT_BUDGET (series.py counts them); a segment
  crossing a bucket edge is shared out as if its pings were evenly spaced
  (exact for a drift-free schedule), its min/max are the segment's envelope;
- a range older than every segment level: hourly at one-hour buckets (fewer
  points than asked).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from shared.blocks import US, align_down, align_up, us_since_origin
from shared.ladder import Ladder, Level

SECOND = timedelta(seconds=1)
HOUR = timedelta(hours=1)
WEEK = timedelta(days=7)
# Pings a raw series may aggregate: about a day at 1 Hz in row form, a few
# hours once packed (unpacking in SQL costs ~10 µs a ping).
RAW_BUDGET = 100_000
PACKED_BUDGET = 10_800
# Segments a series may read: a jittery path has ~9 000 level-1 segments a day.
SEGMENT_BUDGET = 20_000
# Widths a graph axis reads well; past a week, whole weeks.
NICE_WIDTHS = tuple(
    timedelta(seconds=s)
    for s in (
        *(1, 2, 5, 10, 15, 30),
        *(60, 120, 300, 600, 900, 1800),
        *(3600, 7200, 10800, 21600, 43200),
        *(86400, 172800, 604800),
    )
)

RAW = "raw"
HOURLY = "hourly"


@dataclass(frozen=True, slots=True)
class Grid:
    first: datetime  # start of the first bucket
    width: timedelta
    count: int

    @property
    def end(self) -> datetime:
        return self.first + self.width * self.count

    @property
    def first_us(self) -> int:
        return us_since_origin(self.first)

    @property
    def width_us(self) -> int:
        return self.width // US

    def starts(self) -> list[datetime]:
        return [self.first + self.width * i for i in range(self.count)]


@dataclass(frozen=True, slots=True)
class SeriesPlan:
    tier: str
    grid: Grid


def grid_for(lo: datetime, hi: datetime, width: timedelta) -> Grid:
    first = align_down(lo, width)
    end = align_up(hi, width) if hi > lo else first
    return Grid(first, width, (end - first) // width)


def nice_grid(lo: datetime, hi: datetime, points: int) -> Grid:
    """The narrowest readable aligned grid over [lo, hi) with at most `points` buckets.

    With very few points a range can straddle the edge of every aligned
    bucket; it then gets one unaligned grid starting at `lo`.
    """
    if points < 1:
        raise ValueError("points must be at least 1")
    least = (hi - lo) / points
    for width in NICE_WIDTHS:
        if width >= least and (grid := grid_for(lo, hi, width)).count <= points:
            return grid
    weeks = max(1, -(-(hi - lo) // (WEEK * points)))
    for n in range(weeks, weeks + 64):
        if (grid := grid_for(lo, hi, WEEK * n)).count <= points:
            return grid
    width = max(SECOND, -(-(hi - lo) // (SECOND * points)) * SECOND)
    return Grid(lo, width, max(1, -(-(hi - lo) // width)))


def choose_tier(
    lo: datetime,
    hi: datetime,
    width: timedelta,
    *,
    now: datetime,
    ladder: Ladder,
    interval: timedelta,
) -> str:
    """The cheapest tier exact enough for buckets of `width` over [lo, hi).

    `lo` should already be clipped to the target's first data so that a range
    reaching far before it does not push the choice to a coarse tier.
    """
    if width >= HOUR and width % HOUR == timedelta(0):
        return HOURLY
    pings = (hi - lo) / max(interval, timedelta(milliseconds=1))
    # Days are packed whole once they ended pack_after ago.
    packed_before = align_down(now - ladder.pack_after, timedelta(days=1))
    budget = RAW_BUDGET if lo >= packed_before else PACKED_BUDGET
    if lo >= now - ladder.raw_retention and pings <= budget:
        return RAW
    for spec in ladder.levels:
        if lo >= now - spec.retention:
            return spec.tier
    return HOURLY


def plan_series(
    lo: datetime,
    hi: datetime,
    points: int,
    *,
    now: datetime,
    ladder: Ladder,
    interval: timedelta,
    first_data: datetime | None = None,
) -> SeriesPlan:
    grid = nice_grid(lo, hi, points)
    clipped = lo if first_data is None else min(max(lo, first_data), hi)
    tier = choose_tier(clipped, hi, grid.width, now=now, ladder=ladder, interval=interval)
    if tier == HOURLY and grid.width < HOUR:
        grid = grid_for(lo, hi, HOUR)
    return SeriesPlan(tier, grid)


def level_pieces(
    lo: datetime, hi: datetime, now: datetime, ladder: Ladder
) -> list[tuple[Level, datetime, datetime]]:
    """[lo, hi) cut into time-ordered spans, each read from the finest level kept there.

    A cut falls on a block edge of the coarser level, so no segment of either
    side crosses it.
    """
    pieces: list[tuple[Level, datetime, datetime]] = []
    top = hi
    for i, spec in enumerate(ladder.levels):
        if i + 1 < len(ladder.levels):
            start = max(lo, align_up(now - spec.retention, ladder.levels[i + 1].max_span))
        else:
            start = lo
        if start < top:
            pieces.append((spec, start, top))
            top = start
        if top <= lo:
            break
    return pieces[::-1]


def coarser(tier: str, ladder: Ladder) -> str:
    """The next tier up from a segment level: the level above, then hourly."""
    spec = ladder.level(tier)
    above = [lv for lv in ladder.levels if spec is not None and lv.level > spec.level]
    return above[0].tier if above else HOURLY


def tail_start(tier: str, dirty_from: datetime | None, ladder: Ladder) -> datetime | None:
    """Where a rolled-up tier stops being complete, so raw takes over.

    `dirty_from` is the oldest hour of the target still waiting for the
    ladder; every block of the tier that holds it is read from raw instead.
    """
    if tier == RAW or dirty_from is None:
        return None
    spec = ladder.level(tier)
    return align_down(dirty_from, HOUR if spec is None else spec.max_span)

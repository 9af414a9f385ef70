"""Tier choice, bucket grids and spreading segments over buckets: pure, fast."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from api_service.history import buckets as bk
from api_service.history.tier_choice import (
    HOUR,
    coarser,
    grid_for,
    level_pieces,
    nice_grid,
    plan_series,
    tail_start,
)
from shared.blocks import ORIGIN
from shared.ladder import Ladder, Level

NOW = datetime(2026, 6, 1, 12, 34, 56, tzinfo=UTC)
LADDER = Ladder(
    levels=(
        Level(1, HOUR, timedelta(days=30), 5000, Fraction("0.2")),
        Level(2, timedelta(days=1), timedelta(days=90), 15000, Fraction("0.5")),
        Level(3, timedelta(days=1), timedelta(days=1826), 100000, Fraction(3)),
    ),
    raw_retention=timedelta(days=14),
    hourly_retention=timedelta(days=1826),
)
SECOND = timedelta(seconds=1)


@pytest.mark.parametrize(
    ("span", "tier", "width"),
    [
        (timedelta(hours=1), "raw", timedelta(seconds=5)),
        (timedelta(hours=24), "raw", timedelta(minutes=2)),
        (timedelta(days=7), "segments_l1", timedelta(minutes=15)),
        (timedelta(days=30), "hourly", timedelta(hours=1)),
        (timedelta(days=365), "hourly", timedelta(hours=12)),
        (timedelta(days=5 * 365), "hourly", timedelta(days=2)),
    ],
)
def test_plan_for_the_benchmark_ranges(span: timedelta, tier: str, width: timedelta) -> None:
    plan = plan_series(NOW - span, NOW, 1000, now=NOW, ladder=LADDER, interval=SECOND)
    assert (plan.tier, plan.grid.width) == (tier, width)
    assert plan.grid.count <= 1000


def test_old_fine_range_takes_the_finest_level_still_kept() -> None:
    lo = NOW - timedelta(days=60)
    plan = plan_series(lo, lo + timedelta(hours=6), 1000, now=NOW, ladder=LADDER, interval=SECOND)
    assert plan.tier == "segments_l2"
    lo = NOW - timedelta(days=400)
    plan = plan_series(lo, lo + timedelta(hours=6), 1000, now=NOW, ladder=LADDER, interval=SECOND)
    assert plan.tier == "segments_l3"


def test_range_older_than_every_level_falls_back_to_hourly_buckets() -> None:
    lo = NOW - timedelta(days=3000)
    plan = plan_series(lo, lo + timedelta(hours=6), 1000, now=NOW, ladder=LADDER, interval=SECOND)
    assert plan.tier == "hourly" and plan.grid.width == HOUR
    assert plan.grid.count == 7  # six hours, not aligned: both ragged ends


def test_slow_target_reads_raw_for_longer() -> None:
    span = timedelta(days=7)
    plan = plan_series(
        NOW - span, NOW, 1000, now=NOW, ladder=LADDER, interval=timedelta(seconds=60)
    )
    assert plan.tier == "raw"


def test_range_reaching_before_first_data_is_chosen_on_the_data() -> None:
    first = NOW - timedelta(hours=2)
    plan = plan_series(
        NOW - timedelta(days=1), NOW, 1000, now=NOW, ladder=LADDER, interval=SECOND,
        first_data=first,
    )  # fmt: skip
    assert plan.tier == "raw"


@given(
    st.integers(0, 10**15),
    st.integers(1, 10**14),
    st.integers(1, 6000),
)
def test_grid_is_aligned_covers_the_range_and_fits(lo_us: int, span_us: int, points: int) -> None:
    lo = ORIGIN + timedelta(microseconds=lo_us)
    hi = lo + timedelta(microseconds=span_us)
    grid = nice_grid(lo, hi, points)
    assert 1 <= grid.count <= points
    assert grid.first <= lo and grid.end >= hi
    if points > 1:
        assert (grid.first - ORIGIN) % grid.width == timedelta(0)


def test_tail_starts_at_the_block_holding_the_oldest_unsettled_hour() -> None:
    dirty = datetime(2026, 5, 30, 7, tzinfo=UTC)
    assert tail_start("raw", dirty, LADDER) is None
    assert tail_start("hourly", dirty, LADDER) == dirty
    assert tail_start("segments_l1", dirty, LADDER) == dirty
    assert tail_start("segments_l2", dirty, LADDER) == datetime(2026, 5, 30, tzinfo=UTC)
    assert tail_start("segments_l2", None, LADDER) is None


GRID = grid_for(ORIGIN, ORIGIN + timedelta(seconds=100), timedelta(seconds=10))


@pytest.mark.parametrize(
    ("start_s", "end_s", "count", "expected"),
    [
        (0, 9, 10, [(0, 10)]),
        (5, 24, 20, [(0, 5), (1, 10), (2, 5)]),
        (5, 24.5, 40, [(0, 10), (1, 20), (2, 10)]),  # every half second
        (95, 104, 10, [(9, 5)]),  # the rest is past the grid
        (42, 42, 1, [(4, 1)]),
    ],
)
def test_segment_pings_are_spread_as_if_evenly_spaced(
    start_s: float, end_s: float, count: int, expected: list[tuple[int, int]]
) -> None:
    got = bk.spread(GRID, int(start_s * 1e6), int(end_s * 1e6), count)
    assert got == expected


def test_spread_stops_where_raw_takes_over() -> None:
    assert bk.spread(GRID, 0, 29_000_000, 30, clip_to_us=15_000_000) == [(0, 10), (1, 5)]


def test_shared_out_segment_keeps_its_envelope_and_mean() -> None:
    buckets = bk.empty(GRID)
    bk.add_segment(buckets, GRID, (5_000_000, 24_000_000, 20, 0, 900, 1100, 20_000, 7))
    assert [b.count for b in buckets[:3]] == [5, 10, 5]
    assert all(b.min_us == 900 and b.max_us == 1100 and b.avg_us == 1000 for b in buckets[:3])
    assert buckets[3].count == 0 and buckets[3].avg_us is None
    bk.add_segment(buckets, GRID, (30_000_000, 34_000_000, 5, 5, None, None, 0, None))
    assert (buckets[3].count, buckets[3].lost, buckets[3].min_us) == (5, 5, None)


def test_points_show_gaps_as_nulls() -> None:
    grid = grid_for(ORIGIN, ORIGIN + timedelta(seconds=20), timedelta(seconds=10))
    buckets = bk.empty(grid)
    buckets[0].add(3, 1, 1000, 3000, 4000.0, 5, 6)
    out = bk.points(grid, buckets, ["a", "b"])
    assert out[0] == {
        "start": "a", "count": 3, "lost": 1, "min": 1.0, "avg": 2.0, "max": 3.0,
        "hops": 6, "hops_min": 5,
    }  # fmt: skip
    assert out[1]["count"] == 0 and out[1]["avg"] is None and out[1]["min"] is None


def test_coarser_climbs_the_levels_then_hourly() -> None:
    assert coarser("segments_l1", LADDER) == "segments_l2"
    assert coarser("segments_l2", LADDER) == "segments_l3"
    assert coarser("segments_l3", LADDER) == "hourly"


def test_level_pieces_take_the_finest_level_kept_and_cut_on_coarser_blocks() -> None:
    lo, hi = NOW - timedelta(days=120), NOW
    pieces = [(p.level, a, b) for p, a, b in level_pieces(lo, hi, NOW, LADDER)]
    l1_from = datetime(2026, 5, 3, tzinfo=UTC)  # now - 30 d, up to a day edge
    l2_from = datetime(2026, 3, 4, tzinfo=UTC)  # now - 90 d, up to a day edge
    assert pieces == [(3, lo, l2_from), (2, l2_from, l1_from), (1, l1_from, hi)]
    recent = level_pieces(NOW - timedelta(days=2), NOW, NOW, LADDER)
    assert [(p.level, a, b) for p, a, b in recent] == [(1, NOW - timedelta(days=2), NOW)]

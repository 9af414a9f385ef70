"""The segment rule's reference model: unit cases and invariants on random series."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.blocks import ORIGIN_US
from shared.segments import (
    DEFAULT_MAX_GAP_US,
    HOUR_US,
    Ping,
    Segment,
    Tolerance,
    block_of,
    build_ladder,
    max_gap_us,
    segment_pings,
)

DAY_US = 24 * HOUR_US
# The migration's defaults.
DEFAULT_TOLERANCES = (
    Tolerance(abs_us=5000, rel=Fraction("0.20"), span_us=HOUR_US),
    Tolerance(abs_us=15000, rel=Fraction("0.50"), span_us=DAY_US),
    Tolerance(abs_us=100_000, rel=Fraction("3.00"), span_us=DAY_US),
)
# Two minutes before a midnight, so series cross hour and day boundaries.
NEAR_MIDNIGHT_US = ORIGIN_US + 9000 * DAY_US - 120_000_000


def at(seconds: float, rtt: int | None, hops: int | None = 3) -> Ping:
    ttl = None if hops is None else 64 - hops
    return Ping(ORIGIN_US + int(seconds * 1e6), rtt, ttl, hops if rtt is not None else None)


def test_steady_pings_within_absolute_tolerance_make_one_segment() -> None:
    pings = [at(i, 1000 + (i % 3) * 500) for i in range(10)]
    (seg,) = segment_pings(pings, DEFAULT_TOLERANCES[0])
    assert (seg.count, seg.min_us, seg.max_us, seg.sum_us) == (10, 1000, 2000, 14500)
    assert seg.sumsq_us == sum(p.rtt_us**2 for p in pings if p.rtt_us is not None)


def test_relative_tolerance_uses_mean_including_candidate() -> None:
    tol = Tolerance(abs_us=0, rel=Fraction("0.10"), span_us=HOUR_US)
    # 100000 and 110000: envelope 10000, 2 * 10000 <= 0.1 * 210000 holds.
    assert len(segment_pings([at(0, 100_000), at(1, 110_000)], tol)) == 1
    # 100000 and 111000: 2 * 11000 = 22000 > 21100.
    assert len(segment_pings([at(0, 100_000), at(1, 111_000)], tol)) == 2


def test_a_spike_splits_level_two_but_only_raises_the_max_at_level_three() -> None:
    pings = [at(i, 25_000 + (60_000 if i == 30 else 0)) for i in range(60)]
    _, level2, level3 = build_ladder(pings, DEFAULT_TOLERANCES)
    assert [s.count for s in level2] == [30, 1, 29]
    assert [(s.count, s.max_us) for s in level3] == [(60, 85_000)]


def test_spike_starts_a_new_segment_and_is_kept_whole() -> None:
    pings = [at(0, 1000), at(1, 1100), at(2, 50_000), at(3, 1000)]
    segs = segment_pings(pings, DEFAULT_TOLERANCES[0])
    assert [(s.count, s.max_us) for s in segs] == [(2, 1100), (1, 50_000), (1, 1000)]


def test_loss_run_and_hop_change_are_boundaries() -> None:
    pings = [at(0, 1000), at(1, None), at(2, None), at(3, 1000), at(4, 1000, hops=4)]
    segs = segment_pings(pings, DEFAULT_TOLERANCES[0])
    assert [(s.count, s.lost, s.hops) for s in segs] == [
        (1, 0, 3),
        (2, 2, None),
        (1, 0, 3),
        (1, 0, 4),
    ]
    assert segs[1].min_us is None and segs[1].sum_us == 0


def test_no_segment_crosses_an_aligned_block() -> None:
    start = NEAR_MIDNIGHT_US
    pings = [Ping(start + i * 1_000_000, 1000, 61, 3) for i in range(240)]
    level1, level2, level3 = build_ladder(pings, DEFAULT_TOLERANCES)
    assert [s.count for s in level1] == [120, 120]
    assert [s.count for s in level2] == [120, 120]  # midnight is also a day boundary
    assert [s.count for s in level3] == [120, 120]
    assert block_of(level1[1].start_us, HOUR_US) == level1[1].start_us


def test_next_level_merges_segments_a_finer_level_kept_apart() -> None:
    pings = [at(i, 1000 if i < 5 else 7000) for i in range(10)]
    level1, level2, _ = build_ladder(pings, DEFAULT_TOLERANCES)
    assert [s.count for s in level1] == [5, 5]
    assert [(s.count, s.min_us, s.max_us) for s in level2] == [(10, 1000, 7000)]


def test_a_paused_hour_is_covered_by_no_segment_at_any_level() -> None:
    before = [at(i, 1000) for i in range(600)]
    after = [at(4200 + i, 1000) for i in range(600)]  # an hour's pause, same RTT and hops
    for level in build_ladder(before + after, DEFAULT_TOLERANCES):
        assert not [s for s in level if s.start_us <= before[-1].ts_us < after[0].ts_us <= s.end_us]
        assert before[-1].ts_us in {s.end_us for s in level}
        assert after[0].ts_us in {s.start_us for s in level}


@pytest.mark.parametrize(("gap_s", "segments"), [(2.0, 1), (3.0, 1), (3.000001, 2), (60.0, 2)])
def test_a_gap_longer_than_the_maximum_ends_a_segment(gap_s: float, segments: int) -> None:
    pings = [at(0, 1000), at(gap_s, 1000)]
    assert len(segment_pings(pings, DEFAULT_TOLERANCES[0])) == segments


def test_the_maximum_gap_follows_the_interval_above_a_floor() -> None:
    assert max_gap_us(None) == max_gap_us(100) == max_gap_us(1000) == DEFAULT_MAX_GAP_US
    assert max_gap_us(60_000) == 180_000_000
    assert max_gap_us(10_000, floor_us=1_000_000, factor=5) == 50_000_000


@st.composite
def series(draw: st.DrawFn, max_episodes: int = 12) -> list[Ping]:
    """1 Hz pings with steps, spikes, jitter, loss runs and hop changes."""
    ts = NEAR_MIDNIGHT_US + draw(st.integers(-3 * HOUR_US, 0))
    base = draw(st.integers(100, 80_000))
    hops = draw(st.integers(0, 20))
    pings: list[Ping] = []
    for _ in range(draw(st.integers(1, max_episodes))):
        kind = draw(st.sampled_from(["steady", "step", "spike", "loss", "hop", "gap"]))
        length = draw(st.integers(1, 40))
        noise = draw(st.integers(0, max(1, base // 4)))
        if kind == "step":
            base = max(1, base + draw(st.integers(-base // 2, base)))
        elif kind == "hop":
            hops = draw(st.integers(0, 20))
        elif kind == "gap":
            ts += draw(st.integers(1, 2 * HOUR_US))
        for i in range(length):
            ts += 1_000_000 + draw(st.integers(0, 2000))
            if kind == "loss":
                pings.append(Ping(ts, None, None, None))
                continue
            rtt = base + draw(st.integers(0, noise))
            if kind == "spike" and i == 0:
                rtt += draw(st.integers(1, 500_000))
            pings.append(Ping(ts, rtt, 64 - hops, hops))
    return pings


def assert_ladder_invariants(
    pings: Sequence[Ping],
    tolerances: Sequence[Tolerance],
    levels: Sequence[Sequence[Segment]],
    max_gap: int = DEFAULT_MAX_GAP_US,
) -> None:
    """What every level of segments must satisfy against the raw pings."""
    for tol, segs in zip(tolerances, levels, strict=True):
        starts = {s.start_us for s in segs}
        i = 0
        for seg in segs:
            inside = []
            while i < len(pings) and pings[i].ts_us <= seg.end_us:
                inside.append(pings[i])
                i += 1
            assert inside and inside[0].ts_us == seg.start_us, "a ping outside every segment"
            rtts = [p.rtt_us for p in inside if p.rtt_us is not None]
            assert seg.count == len(inside)
            assert seg.lost == len(inside) - len(rtts)
            assert seg.lost in (0, seg.count), "answered and lost pings mixed"
            assert {(p.hops, p.ttl) for p in inside} == {(seg.hops, seg.ttl)}
            assert seg.sum_us == sum(rtts) and seg.sumsq_us == sum(r * r for r in rtts)
            if rtts:
                assert (seg.min_us, seg.max_us) == (min(rtts), max(rtts))
                assert tol.fits(min(rtts), max(rtts), seg.count, seg.sum_us)
            assert block_of(seg.start_us, tol.span_us) == block_of(seg.end_us, tol.span_us)
        assert i == len(pings), "a ping after the last segment"
        for prev, cur in itertools.pairwise(pings):
            if (prev.rtt_us is None) != (cur.rtt_us is None) or prev.hops != cur.hops:
                assert cur.ts_us in starts, "a loss or hop boundary inside a segment"
            if cur.ts_us - prev.ts_us > max_gap:
                assert cur.ts_us in starts, "a segment spans a gap"


@settings(max_examples=150, deadline=None)
@given(series())
def test_reference_ladder_keeps_every_invariant(pings: list[Ping]) -> None:
    levels = build_ladder(pings, DEFAULT_TOLERANCES)
    assert_ladder_invariants(pings, DEFAULT_TOLERANCES, levels)
    assert len(levels[2]) <= len(levels[1]) <= len(levels[0]) <= len(pings)

"""Segment figures (api_service/history/segment_figures.py): percentiles, runs, hops. Pure."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from api_service.history import segment_figures as sf

QUANTILES = (0.5, 0.95, 0.99)


def test_segment_figures_weigh_means_by_pings_and_join_lost_segments() -> None:
    count = np.array([10, 3, 2, 80, 1, 4])
    lost = np.array([0, 3, 2, 0, 1, 0])
    sum_us = np.array([10 * 5.0, 0, 0, 80 * 20.0, 0, 4 * 90.0])
    hops = np.array([7, -1, -1, 8, -1, 8])
    got = sf.segment_figures(count, lost, sum_us, hops)
    assert (got.p50_us, got.p95_us, got.p99_us) == (20.0, 20.0, 90.0)
    assert (got.loss_runs, got.outage_pings, got.hop_changes) == (2, 5, 1)
    none = sf.segment_figures(*(np.array([], dtype=np.int64),) * 4)
    assert none.p50_us is None and none.loss_runs == 0


def test_weighted_percentiles_pick_the_smallest_mean_holding_each_share() -> None:
    means = np.array([30.0, 10.0, 20.0])
    weights = np.array([2, 93, 5])
    assert sf.weighted_percentiles(means, weights) == [10.0, 20.0, 30.0]
    assert sf.weighted_percentiles(np.array([]), np.array([], dtype=np.int64)) == [None] * 3


def test_run_figures_skip_lost_segments_between_hop_comparisons() -> None:
    lost = np.array([0, 4, 0, 0, 1, 0])
    hops = np.array([7, -1, 7, 8, -1, 8])
    assert sf.run_figures(lost, hops) == (1, 2, 4)


@given(st.lists(st.tuples(st.integers(1, 500), st.integers(1, 20)), min_size=1, max_size=40))
def test_weighted_percentiles_equal_the_pick_from_every_ping_sorted(
    segments: list[tuple[int, int]],
) -> None:
    """A mean weighing n is n pings at that mean: the q-th of them all, sorted."""
    means = np.array([float(m) for m, _ in segments])
    weights = np.array([w for _, w in segments], dtype=np.int64)
    every = sorted(m for m, w in segments for _ in range(w))
    total = len(every)
    want = [float(every[max(0, math.ceil(q * total) - 1)]) for q in QUANTILES]
    assert sf.weighted_percentiles(means, weights) == want


@given(
    st.lists(
        st.one_of(
            st.tuples(st.just(0), st.integers(1, 3)), st.tuples(st.integers(1, 9), st.just(-1))
        ),
        max_size=40,
    )
)
def test_run_figures_equal_a_walk_through_the_segments(segments: list[tuple[int, int]]) -> None:
    """(lost pings, hops) per segment: hop changes between answered ones, loss runs of
    lost ones back to back, outage pings in runs of at least OUTAGE_PINGS."""
    hop_changes = loss_runs = outage_pings = run = 0
    last_hops = None
    for lost, hops in [*segments, (0, None)]:
        if lost:
            loss_runs += run == 0
            run += lost
            continue
        outage_pings += run if run >= sf.OUTAGE_PINGS else 0
        run = 0
        if hops is not None:
            hop_changes += last_hops is not None and hops != last_hops
            last_hops = hops
    lost_column = np.array([lost for lost, _ in segments], dtype=np.int64)
    hops_column = np.array([hops for _, hops in segments], dtype=np.int64)
    assert sf.run_figures(lost_column, hops_column) == (hop_changes, loss_runs, outage_pings)

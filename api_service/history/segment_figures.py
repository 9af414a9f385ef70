"""Figures of time-ordered segments: percentiles of their means, loss runs, outages,
hop changes. Pure.

Each answered segment stands for `count` pings at its mean (off by at most its
level's tolerance: every ping lies inside its segment's envelope). A loss run
is a run of lost segments back to back; an outage is a loss run of at least
OUTAGE_PINGS pings; hop changes are counted between successive answered
segments. stats.py feeds these either every segment of a range or, reduced in
the database, the grid of means and the segments runs are seen from.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

OUTAGE_PINGS = 3


@dataclass(frozen=True, slots=True)
class SegmentFigures:
    p50_us: float | None
    p95_us: float | None
    p99_us: float | None
    hop_changes: int
    loss_runs: int
    outage_pings: int


def weighted_percentiles(
    means: npt.NDArray[np.float64], weights: npt.NDArray[np.int64]
) -> list[float | None]:
    """p50, p95, p99: the smallest mean below which at least q of the weight lies. Pure."""
    order = np.argsort(means, kind="stable")
    cum = np.cumsum(weights[order])
    if not len(cum):
        return [None, None, None]
    at = np.searchsorted(cum, np.array([0.5, 0.95, 0.99]) * cum[-1], side="left")
    return [float(means[order][min(i, len(cum) - 1)]) for i in at]


def run_figures(lost: npt.NDArray[np.int64], hops: npt.NDArray[np.int64]) -> tuple[int, int, int]:
    """(hop changes, loss runs, outage pings) of time-ordered segments (hops -1 for none). Pure.

    A loss run is a run of lost segments back to back; hop changes are
    counted between successive answered segments.
    """
    answered = lost == 0
    seen = hops[answered]
    is_lost = ~answered
    starts = is_lost & ~np.concatenate([[False], is_lost[:-1]])
    run_sizes = np.bincount(np.cumsum(starts)[is_lost], weights=lost[is_lost])[1:]
    return (
        int(np.count_nonzero(seen[1:] != seen[:-1])),
        int(starts.sum()),
        int(run_sizes[run_sizes >= OUTAGE_PINGS].sum()),
    )


def segment_figures(
    count: npt.NDArray[np.int64],
    lost: npt.NDArray[np.int64],
    sum_us: npt.NDArray[np.float64],
    hops: npt.NDArray[np.int64],
) -> SegmentFigures:
    """Figures of time-ordered segments (hops -1 for none), each answered one
    taken as `count` pings at its mean. Pure."""
    answered = lost == 0
    p50, p95, p99 = weighted_percentiles(sum_us[answered] / count[answered], count[answered])
    return SegmentFigures(p50, p95, p99, *run_figures(lost, hops))

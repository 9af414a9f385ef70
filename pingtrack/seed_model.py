"""Synthetic ping history for one target, as the ladder's tiers would hold it. Pure numpy.

Pings sit on a drift-free grid of slots (slot k at start + k x interval).
The RTT level follows a diurnal cycle, plus planted latency steps; planted
loss bursts lose every ping, planted route changes change the hop count
(and the reply TTL with it); single-ping spikes are sprinkled in.

Level-1 segments ("pieces") are cut at every hour edge, every planted
event edge, every spike and at random points (what noise does to a real
series); each keeps an envelope inside the level-1 tolerance. Level 2
merges pieces between day edges, event edges, spikes and a few random
cuts; hourly summaries aggregate the pieces of each hour. Inside the raw
window, pings are drawn within each piece's envelope (its first ping at
the minimum, its last at the maximum) and the pieces' sums are recomputed
from them, so every tier agrees with raw.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

HOUR_US = 3_600_000_000
DAY_US = 24 * HOUR_US
LOSS, HOP_CHANGE, LATENCY_SHIFT = "loss", "hop_change", "latency_shift"

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Upper:
    """A segment level above 1: its block span, tolerance, and share of random cuts kept."""

    span_us: int
    abs_tolerance_us: int
    rel_tolerance: float
    keep: float


@dataclass(frozen=True)
class Shape:
    """The ladder the history is shaped for (level-1 tolerance, the levels above)."""

    abs_tolerance_us: int = 2000
    rel_tolerance: float = 0.10
    upper: tuple[Upper, ...] = (Upper(DAY_US, 10_000, 0.30, 0.05),)
    piece_gap_s: float = 180.0  # mean distance between random level-1 cuts
    spike_gap_s: float = 1800.0  # mean distance between spikes
    step_gap_days: float = 4.0  # mean distance between latency steps
    loss_gap_days: float = 2.0
    route_gap_days: float = 9.0


@dataclass(frozen=True)
class Planted:
    kind: str
    start_us: int  # µs since the ladder origin (shared/blocks.py): first ping of the event
    end_us: int  # last ping of the event (a step or change: first ping after it)
    magnitude: float  # lost pings; hop delta; RTT delta in µs


@dataclass
class Pieces:
    """Level-1 segments as columns; times in µs since the ladder origin (shared/blocks.py)."""

    start_us: I64
    end_us: I64
    count: I64
    lost: I64
    min_us: I64
    max_us: I64
    sum_us: I64
    sumsq: F64
    hops: I64

    def __len__(self) -> int:
        return len(self.start_us)

    def take(self, mask: npt.NDArray[np.bool_]) -> Pieces:
        return Pieces(*(getattr(self, f)[mask] for f in _FIELDS))


_FIELDS = ("start_us", "end_us", "count", "lost", "min_us", "max_us", "sum_us", "sumsq", "hops")


@dataclass
class History:
    levels: list[Pieces]  # level 1 first
    hourly: dict[str, npt.NDArray[np.generic]]
    pings_ts: I64  # raw window only
    pings_rtt: I64  # -1: lost
    pings_hops: I64
    planted: list[Planted]


def _unique(values: npt.ArrayLike) -> I64:
    """Sorted distinct values (a sort beats numpy's hash-based unique here)."""
    a = np.sort(np.asarray(values, dtype=np.int64))
    return a[np.concatenate([[True], a[1:] != a[:-1]])] if len(a) else a


def _events(
    rng: np.random.Generator, n_slots: int, per_slot: float, min_len: int, max_len: int
) -> tuple[I64, I64]:
    """Non-overlapping [start, end) slot runs, starts Poisson-spaced."""
    gaps = rng.exponential(per_slot, size=int(n_slots / per_slot * 1.5) + 4)
    starts = np.cumsum(gaps).astype(np.int64) + min_len
    lens = rng.integers(min_len, max_len + 1, size=len(starts))
    keep = np.ones(len(starts), bool)
    last_end = -1
    for i in range(len(starts)):  # drop overlaps (few events: a plain loop is fine)
        if starts[i] <= last_end + 1 or starts[i] + lens[i] >= n_slots:
            keep[i] = False
        else:
            last_end = starts[i] + lens[i]
    return starts[keep], (starts + lens)[keep]


def generate(
    target_seed: int,
    start_us: int,
    n_slots: int,
    interval_us: int,
    raw_from_slot: int,
    shape: Shape = Shape(),
) -> History:
    """History of n_slots pings from start_us (hour-aligned); raw pings from raw_from_slot."""
    rng = np.random.default_rng(target_seed)
    per_hour = HOUR_US // interval_us
    per_day = DAY_US // interval_us
    base = rng.uniform(5_000, 80_000)
    amplitude = rng.uniform(0.03, 0.10)
    phase = rng.uniform(0, 24)
    hops0 = int(rng.integers(3, 18))

    steps = _events(rng, n_slots, shape.step_gap_days * per_day, per_hour, 2 * per_day)
    losses = _events(rng, n_slots, shape.loss_gap_days * per_day, 5, 300)
    routes = _events(rng, n_slots, shape.route_gap_days * per_day, per_hour, 5 * per_day)
    # Up, then back down when the step ends: the level never drops near zero.
    step_delta = np.maximum(10_000, base * rng.uniform(0.5, 1.5, len(steps[0])))
    route_delta = rng.choice([-2, -1, 1, 2], len(routes[0]))
    n_spikes = int(n_slots * interval_us / 1e6 / shape.spike_gap_s)
    spikes = _unique(rng.integers(0, n_slots, n_spikes))
    spike_mult = rng.uniform(2, 5, len(spikes))

    hours = np.arange(0, n_slots, per_hour, dtype=np.int64)
    edges = np.concatenate([*steps, *losses, *routes, spikes, spikes + 1, [raw_from_slot]])
    mean_cut = shape.piece_gap_s * 1e6 / interval_us
    cuts = np.cumsum(rng.exponential(mean_cut, int(n_slots / mean_cut * 1.2) + 8)).astype(np.int64)
    bounds = _unique(np.concatenate([[0], hours, edges, cuts]))
    bounds = bounds[(bounds >= 0) & (bounds < n_slots)]
    first, last = bounds, np.append(bounds[1:], n_slots) - 1
    count = last - first + 1
    t_first = start_us + first * interval_us
    t_last = start_us + last * interval_us

    def within(runs: tuple[I64, I64], slots: I64) -> npt.NDArray[np.intp]:
        """Index of the run each slot falls in, -1 outside every run."""
        i = np.searchsorted(runs[0], slots, side="right") - 1
        inside = (i >= 0) & (slots < runs[1][np.maximum(i, 0)])
        return np.where(inside, i, -1)

    lost_run = within(losses, first) >= 0
    step_i = within(steps, first)
    route_i = within(routes, first)
    hops = hops0 + np.where(route_i >= 0, route_delta[np.maximum(route_i, 0)], 0)
    mid_h = ((t_first + t_last) / 2 / 3.6e9 + phase) % 24
    level = base * (1 + amplitude * np.sin(2 * np.pi * mid_h / 24))
    level += np.where(step_i >= 0, step_delta[np.maximum(step_i, 0)], 0)
    level = np.maximum(level, 300)
    is_spike = np.isin(first, spikes) & (count == 1)
    mean = level * (1 + rng.normal(0, 0.01, len(first)))
    mult = spike_mult[np.minimum(np.searchsorted(spikes, first), len(spikes) - 1)]
    mean = np.where(is_spike, mean * mult, mean)
    tol = np.maximum(shape.abs_tolerance_us, shape.rel_tolerance * mean)
    env = np.where(count > 1, tol * rng.uniform(0.2, 0.95, len(first)), 0)
    lo = np.round(mean - env / 2).astype(np.int64)
    hi = np.maximum(lo, np.round(mean + env / 2).astype(np.int64))
    lost = np.where(lost_run, count, 0)
    answered = count - lost
    pieces = Pieces(
        t_first, t_last, count, lost,
        np.where(lost_run, -1, lo), np.where(lost_run, -1, hi),
        np.where(lost_run, 0, np.round(mean * count)).astype(np.int64),
        np.where(lost_run, 0.0, answered * (mean**2 + (env / 4) ** 2)),
        np.where(lost_run, -1, hops),
    )  # fmt: skip
    pings = _raw_pings(rng, pieces, first, raw_from_slot, start_us, interval_us)
    levels = [pieces]
    for up in shape.upper:
        tol = max(up.abs_tolerance_us, up.rel_tolerance * base)
        big = np.abs(step_delta) > tol
        sharp = spike_mult - 1 > up.rel_tolerance
        kept: list[npt.ArrayLike] = [
            np.arange((-start_us) % up.span_us // interval_us, n_slots, up.span_us // interval_us),
            *losses, *routes, steps[0][big], steps[1][big],
            spikes[sharp], spikes[sharp] + 1,
            cuts[rng.random(len(cuts)) < up.keep], [0, raw_from_slot],
        ]  # fmt: skip
        at = _unique(np.concatenate(kept))
        levels.append(merge(pieces, np.searchsorted(first, at[(at >= 0) & (at < n_slots)])))
    planted = _planted(start_us, interval_us, steps, step_delta, losses, routes, route_delta)
    return History(levels, summarize(pieces, hours, first), *pings, planted)


def _raw_pings(
    rng: np.random.Generator, p: Pieces, first: I64, raw_from: int, start_us: int, interval_us: int
) -> tuple[I64, I64, I64]:
    """Pings of the pieces from raw_from on; the pieces' sums are set to match them."""
    sel = np.flatnonzero(first >= raw_from)
    if len(sel) == 0:
        empty = np.empty(0, np.int64)
        return empty, empty, empty
    counts = p.count[sel]
    owner = np.repeat(sel, counts)
    pos = np.arange(len(owner)) - np.repeat(np.cumsum(counts) - counts, counts)
    ts = p.start_us[owner] + pos * interval_us
    lo, hi = p.min_us[owner], p.max_us[owner]
    rtt = lo + np.floor(rng.random(len(owner)) * (hi - lo + 1)).astype(np.int64)
    rtt = np.where(pos == 0, lo, np.where(pos == counts.repeat(counts) - 1, hi, rtt))
    rtt = np.minimum(rtt, hi)
    lost = p.lost[owner] > 0
    rtt = np.where(lost, -1, rtt)
    starts = np.cumsum(counts) - counts
    p.sum_us[sel] = np.add.reduceat(np.where(lost, 0, rtt), starts)
    p.sumsq[sel] = np.add.reduceat(np.where(lost, 0.0, rtt.astype(np.float64) ** 2), starts)
    return ts, rtt, np.where(lost, -1, p.hops[owner])


def merge(p: Pieces, at: npt.NDArray[np.intp]) -> Pieces:
    """Pieces joined into runs starting at the indices `at` (sorted, first 0)."""
    at = _unique(at)
    last = np.append(at[1:], len(p)) - 1
    answered = p.lost == 0
    big = np.iinfo(np.int64).max
    mn = np.minimum.reduceat(np.where(answered, p.min_us, big), at)
    mx = np.maximum.reduceat(np.where(answered, p.max_us, -1), at)
    return Pieces(
        p.start_us[at], p.end_us[last],
        np.add.reduceat(p.count, at), np.add.reduceat(p.lost, at),
        np.where(mn == big, -1, mn), mx,
        np.add.reduceat(p.sum_us, at), np.add.reduceat(p.sumsq, at), p.hops[at],
    )  # fmt: skip


def summarize(p: Pieces, hours: I64, first: I64) -> dict[str, npt.NDArray[np.generic]]:
    """Hourly summaries from the pieces (none crosses an hour edge)."""
    at = np.searchsorted(first, hours)
    h = merge(p, at)
    answered = h.count - h.lost
    mean = h.sum_us / np.maximum(answered, 1)
    sd = np.sqrt(np.maximum(h.sumsq / np.maximum(answered, 1) - mean**2, 0))
    hop_step = np.diff(p.hops, prepend=p.hops[:1]) != 0
    hop_step &= (p.lost == 0) & (np.roll(p.lost, 1) == 0)
    hop_step[at] = False
    run_start = (p.lost > 0) & (np.roll(p.lost, 1) == 0)
    return {
        "hour": h.start_us - (h.start_us % HOUR_US),
        "count": h.count,
        "lost": h.lost,
        "min_us": h.min_us,
        "max_us": h.max_us,
        "sum_us": h.sum_us,
        "sumsq_us": h.sumsq,
        "mean_us": mean,
        "stddev_us": sd,
        "p50_us": mean,
        "p95_us": np.minimum(h.max_us, mean + 1.645 * sd),
        "p99_us": np.minimum(h.max_us, mean + 2.326 * sd),
        "jitter_us": sd * 1.128,
        "hops_min": _nulls(np.minimum.reduceat(np.where(p.lost == 0, p.hops, 999), at), 999),
        "hops_max": np.maximum.reduceat(p.hops, at),
        "hop_changes": np.add.reduceat(hop_step.astype(np.int64), at),
        "loss_runs": np.add.reduceat(run_start.astype(np.int64), at),
    }


def _nulls(values: I64, marker: int) -> I64:
    return np.where(values == marker, -1, values)


def _planted(
    start_us: int,
    interval_us: int,
    steps: tuple[I64, I64],
    step_delta: F64,
    losses: tuple[I64, I64],
    routes: tuple[I64, I64],
    route_delta: I64,
) -> list[Planted]:
    def t(slot: int) -> int:
        return start_us + int(slot) * interval_us

    out = [Planted(LOSS, t(a), t(b - 1), b - a) for a, b in zip(*losses, strict=True)]
    for (a, b), d in zip(zip(*steps, strict=True), step_delta, strict=True):
        out += [Planted(LATENCY_SHIFT, t(a), t(a), d), Planted(LATENCY_SHIFT, t(b), t(b), -d)]
    for (a, b), d in zip(zip(*routes, strict=True), route_delta, strict=True):
        out += [Planted(HOP_CHANGE, t(a), t(a), d), Planted(HOP_CHANGE, t(b), t(b), -d)]
    return sorted(out, key=lambda e: e.start_us)

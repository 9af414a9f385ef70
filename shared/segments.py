"""The segment rule, as plain Python: the reference the SQL jobs are tested against.

A segment is a run of consecutive pings of one target with one hop count and
one TTL, all answered or all lost, inside one aligned block of the level's
maximum span, whose RTT envelope fits the level's tolerance:

    envelope = max - min                       (µs, integers)
    fits     = envelope <= abs_us  or  envelope * count <= rel * sum

where count and sum are those of the segment including the candidate, so
`envelope * count <= rel * sum` is `envelope <= rel * mean` without division.
A segment never spans a gap: the candidate's first ping must follow the run's
last ping within `max_gap_us` (max(gap_floor, gap_factor x the target's
interval), see `max_gap_us`), so a pause or a monitoring outage stays a hole
at every level.
Runs are grown greedily from the left. Level L+1 applies the same rule to the
segments of level L (each taken whole). The SQL in migrations/ computes exactly
this; any change here must be made there too.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction

from shared.blocks import ORIGIN_US

HOUR_US = 3_600_000_000
# ladder_settings defaults (migration 0006): a gap longer than
# max(3 s, 3 x interval) between two pings ends a segment.
GAP_FLOOR_US = 3_000_000
GAP_FACTOR = 3
DEFAULT_MAX_GAP_US = GAP_FLOOR_US  # a target at 1 s, or one the database does not know


def max_gap_us(
    interval_ms: int | None, floor_us: int = GAP_FLOOR_US, factor: int = GAP_FACTOR
) -> int:
    """The longest gap a segment may bridge for a target pinged every interval_ms."""
    return max(floor_us, factor * (interval_ms or 0) * 1000)


@dataclass(frozen=True)
class Ping:
    ts_us: int  # send time, epoch microseconds
    rtt_us: int | None  # None: lost
    ttl: int | None
    hops: int | None


@dataclass(frozen=True)
class Tolerance:
    abs_us: int
    rel: Fraction
    span_us: int  # blocks of this length, aligned to ORIGIN_US, are never crossed

    def fits(self, low: int, high: int, count: int, total: int) -> bool:
        envelope = high - low
        return envelope <= self.abs_us or envelope * count <= self.rel * total


@dataclass(frozen=True)
class Segment:
    start_us: int  # first ping
    end_us: int  # last ping (inclusive)
    count: int
    lost: int
    min_us: int | None  # None for a lost segment
    max_us: int | None
    sum_us: int  # 0 for a lost segment
    sumsq_us: int
    hops: int | None
    ttl: int | None

    @property
    def is_lost(self) -> bool:
        return self.lost > 0

    @classmethod
    def of_ping(cls, ping: Ping) -> Segment:
        rtt = ping.rtt_us
        return cls(
            start_us=ping.ts_us,
            end_us=ping.ts_us,
            count=1,
            lost=1 if rtt is None else 0,
            min_us=rtt,
            max_us=rtt,
            sum_us=rtt or 0,
            sumsq_us=(rtt or 0) ** 2,
            hops=ping.hops,
            ttl=ping.ttl,
        )


def block_of(ts_us: int, span_us: int) -> int:
    """Start of the aligned block holding ts_us (what date_bin gives in SQL)."""
    return ts_us - (ts_us - ORIGIN_US) % span_us


def _joinable(run: Segment, nxt: Segment, tol: Tolerance, max_gap: int) -> bool:
    if nxt.start_us - run.end_us > max_gap:
        return False
    if block_of(run.start_us, tol.span_us) != block_of(nxt.start_us, tol.span_us):
        return False
    if run.is_lost != nxt.is_lost or run.hops != nxt.hops or run.ttl != nxt.ttl:
        return False
    if run.is_lost:
        return True
    assert run.min_us is not None and run.max_us is not None
    assert nxt.min_us is not None and nxt.max_us is not None
    return tol.fits(
        min(run.min_us, nxt.min_us),
        max(run.max_us, nxt.max_us),
        run.count + nxt.count,
        run.sum_us + nxt.sum_us,
    )


def _join(run: Segment, nxt: Segment) -> Segment:
    both = run.min_us is not None and nxt.min_us is not None
    return Segment(
        start_us=run.start_us,
        end_us=nxt.end_us,
        count=run.count + nxt.count,
        lost=run.lost + nxt.lost,
        min_us=min(run.min_us, nxt.min_us) if both else None,  # type: ignore[type-var]
        max_us=max(run.max_us, nxt.max_us) if both else None,  # type: ignore[type-var]
        sum_us=run.sum_us + nxt.sum_us,
        sumsq_us=run.sumsq_us + nxt.sumsq_us,
        hops=run.hops,
        ttl=run.ttl,
    )


def merge_segments(
    parts: Iterable[Segment], tol: Tolerance, max_gap: int = DEFAULT_MAX_GAP_US
) -> list[Segment]:
    """Greedy left-to-right merge of time-ordered segments (or single pings)."""
    out: list[Segment] = []
    run: Segment | None = None
    for part in parts:
        if run is not None and _joinable(run, part, tol, max_gap):
            run = _join(run, part)
            continue
        if run is not None:
            out.append(run)
        run = part
    if run is not None:
        out.append(run)
    return out


def segment_pings(
    pings: Iterable[Ping], tol: Tolerance, max_gap: int = DEFAULT_MAX_GAP_US
) -> list[Segment]:
    """Level 1 from raw pings (ordered by time)."""
    return merge_segments((Segment.of_ping(p) for p in pings), tol, max_gap)


def build_ladder(
    pings: Sequence[Ping], tolerances: Sequence[Tolerance], max_gap: int = DEFAULT_MAX_GAP_US
) -> list[list[Segment]]:
    """Every level in turn: level 1 from the pings, level L+1 from level L."""
    levels: list[list[Segment]] = []
    current = [Segment.of_ping(p) for p in pings]
    for tol in tolerances:
        current = merge_segments(current, tol, max_gap)
        levels.append(current)
    return levels

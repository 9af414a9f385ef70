"""Events in a run of segments: loss runs, hop changes, latency shifts. Pure.

- A loss run is a maximal run of lost segments; magnitude = lost pings.
- A hop change is two answered segments in a row (lost ones between are
  skipped) with different hop counts; magnitude = new - old hops.
- A latency shift is a new RTT level that differs from the reference level by
  more than the level-1 tolerance (max(abs, rel x mean)) and holds for at
  least `min_plateau_us`; shorter excursions (spikes) are not shifts, and a
  spike inside a new level does not restart it. The
  reference follows slow drift (a diurnal cycle) through a moving mean over at
  most `memory` pings, so only steps count. Start = last ping at the old
  level, end = first ping at the new one; magnitude = new - old mean, µs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

LOSS = "loss"
HOP_CHANGE = "hop_change"
LATENCY_SHIFT = "latency_shift"
ADDRESS_CHANGE = "address_change"


@dataclass(frozen=True, slots=True)
class Seg:
    start_us: int
    end_us: int
    count: int
    lost: int
    sum_us: int
    hops: int | None

    @property
    def mean_us(self) -> float:
        return self.sum_us / self.count


@dataclass(frozen=True, slots=True)
class Event:
    kind: str
    start_us: int
    end_us: int
    magnitude: float
    old: str | None = None  # address_change only
    new: str | None = None


@dataclass(frozen=True, slots=True)
class Rules:
    abs_us: int
    rel: float
    min_plateau_us: int
    memory: int = 600

    def tolerance(self, mean: float) -> float:
        return max(self.abs_us, self.rel * mean)


@dataclass(slots=True)
class _Level:
    start_us: int
    end_us: int
    count: int
    total: float

    @property
    def mean(self) -> float:
        return self.total / self.count

    def take(self, seg: Seg, memory: int | None = None) -> None:
        self.end_us = seg.end_us
        self.count += seg.count
        self.total += seg.sum_us
        if memory is not None and self.count > memory:  # forget the oldest share
            self.total *= memory / self.count
            self.count = memory


def _level(seg: Seg) -> _Level:
    return _Level(seg.start_us, seg.end_us, seg.count, float(seg.sum_us))


def detect(segments: Iterable[Seg], rules: Rules) -> list[Event]:
    """Events of time-ordered segments, in time order of their start."""
    events: list[Event] = []
    loss: Event | None = None
    prev: Seg | None = None  # last answered segment
    ref: _Level | None = None
    cand: _Level | None = None
    for seg in segments:
        if seg.lost:
            if loss is None:
                loss = Event(LOSS, seg.start_us, seg.end_us, seg.lost)
            else:
                loss = Event(LOSS, loss.start_us, seg.end_us, loss.magnitude + seg.lost)
            continue
        if loss is not None:
            events.append(loss)
            loss = None
        if prev is not None and prev.hops != seg.hops:
            change = None if prev.hops is None or seg.hops is None else seg.hops - prev.hops
            events.append(Event(HOP_CHANGE, prev.end_us, seg.start_us, change or 0))
        prev = seg
        mean = seg.mean_us
        if ref is not None and abs(mean - ref.mean) <= rules.tolerance(ref.mean):
            ref.take(seg, rules.memory)
            cand = None
            continue
        if cand is not None and abs(mean - cand.mean) <= rules.tolerance(cand.mean):
            cand.take(seg)
        elif cand is None or seg.end_us - seg.start_us >= rules.min_plateau_us // 10:
            cand = _level(seg)
        else:  # a spike inside a new level does not restart it
            continue
        if cand.end_us - cand.start_us >= rules.min_plateau_us:
            if ref is not None:  # the first level only sets the reference
                events.append(Event(LATENCY_SHIFT, ref.end_us, cand.start_us, cand.mean - ref.mean))
            ref, cand = cand, None
    if loss is not None:
        events.append(loss)
    events.sort(key=lambda e: e.start_us)
    return events


def address_changes(records: Iterable[tuple[int, str | None]]) -> list[Event]:
    """Changes in time-ordered (ts µs, address or None when unresolved) records."""
    events: list[Event] = []
    last: str | None = None
    for ts, address in records:
        if address is None:
            continue
        if last is not None and address != last:
            events.append(Event(ADDRESS_CHANGE, ts, ts, 0, last, address))
        last = address
    return events

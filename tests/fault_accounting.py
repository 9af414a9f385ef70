"""Pure accounting for the fault tests: match stored pings against what was sent.

A prober logs, when it stops, how many pings it sent and how many slots it
skipped per target. Every stored series must then show no duplicate (two
pings closer than half the interval), no hole the probers did not announce
as a skipped slot, and as many pings as were sent.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field


@dataclass(frozen=True, slots=True)
class Hole:
    after: float  # epoch seconds of the ping before the hole
    before: float  # and after it
    missing: int  # slots without a ping

    def within(self, start: float, end: float) -> bool:
        return start <= self.after and self.before <= end


def holes_and_duplicates(ts: Sequence[float], interval: float) -> tuple[list[Hole], list[Hole]]:
    """Gaps longer than 1.5 intervals (with the slots they miss), and gaps under 0.5."""
    holes: list[Hole] = []
    duplicates: list[Hole] = []
    for a, b in itertools.pairwise(ts):
        gap = b - a
        if gap < interval / 2:
            duplicates.append(Hole(a, b, 0))
        elif gap > interval * 1.5:
            holes.append(Hole(a, b, round(gap / interval) - 1))
    return holes, duplicates


@dataclass(frozen=True, slots=True)
class ProberCounts:
    sent: Counter[int] = field(default_factory=Counter)
    missed: Counter[int] = field(default_factory=Counter)
    dropped: int = 0
    unpublished: int = 0


def prober_counts(log_lines: Iterable[str]) -> ProberCounts:
    """Sum the per-target counts of every "prober stopped" line of JSON logs."""
    counts = ProberCounts()
    dropped = unpublished = 0
    for line in log_lines:
        if '"prober stopped"' not in line:
            continue
        entry = json.loads(line)
        counts.sent.update({int(k): v for k, v in entry["sent_per_target"].items()})
        counts.missed.update({int(k): v for k, v in entry["missed_per_target"].items()})
        # A slot not sent for a local reason is a hole the prober announced too.
        counts.missed.update({int(k): v for k, v in entry.get("unsent_per_target", {}).items()})
        dropped += entry["dropped_results"]
        # What a prober left in its spool is not lost: its next start publishes it
        # (and stored == sent then shows it was).
        unpublished += entry["unpublished_results"] - entry.get("spool_results", 0)
    return ProberCounts(counts.sent, counts.missed, dropped, unpublished)


@dataclass(frozen=True, slots=True)
class TargetAccount:
    target_id: int
    sent: int  # by the probers that logged their counts
    stored: int  # of those probers' pings
    lost: int  # stored as lost: the network's losses, not ours
    duplicates: int
    missing: int  # slots in holes outside the excused window
    announced: int  # slots the probers said they skipped
    excused: int  # slots in holes inside the excused window (a dead prober's)
    # Where the series is irregular (epoch seconds of the pings around each gap).
    irregular: tuple[Hole, ...] = ()

    @property
    def sound(self) -> bool:
        return self.sent == self.stored and self.duplicates == 0 and self.missing == self.announced

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    def figures(self) -> dict[str, int]:
        return {k: v for k, v in self.as_dict().items() if isinstance(v, int)}


def account(
    target_id: int,
    ts: Sequence[float],
    lost: int,
    interval: float,
    counts: ProberCounts,
    *,
    counted_from: float = float("-inf"),
    excused: tuple[float, float] | None = None,
) -> TargetAccount:
    """`counted_from`: only pings from then on were sent by probers that logged counts.
    `excused`: the window in which a killed prober could not ping (its hole is reported)."""
    holes, duplicates = holes_and_duplicates(ts, interval)
    inside = [h for h in holes if excused is not None and h.within(*excused)]
    outside = [h for h in holes if h not in inside]
    return TargetAccount(
        target_id=target_id,
        sent=counts.sent[target_id],
        stored=sum(1 for t in ts if t >= counted_from),
        lost=lost,
        duplicates=len(duplicates),
        missing=sum(h.missing for h in outside),
        announced=counts.missed[target_id],
        excused=sum(h.missing for h in inside),
        irregular=(*duplicates, *outside),
    )

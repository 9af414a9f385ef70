"""Series buckets: what each tier's rows add to them, and their JSON. Pure.

RTTs are kept in µs inside and given in ms on the wire. A bucket without
pings is an explicit gap: count 0 and null figures.
"""

from __future__ import annotations

from dataclasses import dataclass

from api_service.history.tier_choice import Grid


@dataclass(slots=True)
class Bucket:
    count: int = 0
    lost: int = 0
    min_us: int | None = None
    max_us: int | None = None
    sum_us: float = 0.0
    hops_min: int | None = None
    hops_max: int | None = None

    def add(
        self,
        count: int,
        lost: int,
        min_us: int | None,
        max_us: int | None,
        sum_us: float,
        hops_min: int | None,
        hops_max: int | None,
    ) -> None:
        if count <= 0:
            return
        self.count += count
        self.lost += lost
        self.sum_us += sum_us
        if min_us is not None:
            self.min_us = min_us if self.min_us is None else min(self.min_us, min_us)
        if max_us is not None:
            self.max_us = max_us if self.max_us is None else max(self.max_us, max_us)
        if hops_min is not None:
            self.hops_min = hops_min if self.hops_min is None else min(self.hops_min, hops_min)
        if hops_max is not None:
            self.hops_max = hops_max if self.hops_max is None else max(self.hops_max, hops_max)

    @property
    def answered(self) -> int:
        return self.count - self.lost

    @property
    def avg_us(self) -> float | None:
        return self.sum_us / self.answered if self.answered else None


def empty(grid: Grid) -> list[Bucket]:
    return [Bucket() for _ in range(grid.count)]


def index_of(grid: Grid, ts_us: int) -> int | None:
    """Bucket of an epoch-2000 µs time, None outside the grid."""
    i = (ts_us - grid.first_us) // grid.width_us
    return i if 0 <= i < grid.count else None


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def spread(
    grid: Grid, start_us: int, end_us: int, count: int, clip_to_us: int | None = None
) -> list[tuple[int, int]]:
    """(bucket, pings) for a run of `count` pings evenly spaced over [start, end].

    Exact for a drift-free schedule; pings at or after `clip_to_us` are dropped
    (they are read from raw instead).
    """
    stop = grid.first_us + grid.width_us * grid.count
    if clip_to_us is not None:
        stop = min(stop, clip_to_us)
    if count == 1 or end_us <= start_us:
        i = index_of(grid, start_us)
        return [] if i is None or start_us >= stop else [(i, count)]
    gaps, span = count - 1, end_us - start_us
    out = []
    first = max(0, (start_us - grid.first_us) // grid.width_us)
    last = min(grid.count - 1, (end_us - grid.first_us) // grid.width_us)
    for i in range(first, last + 1):
        b0 = grid.first_us + i * grid.width_us
        b1 = min(b0 + grid.width_us, stop)
        # ping k sits at start + k * span / gaps; the ones with b0 <= t < b1:
        k_lo = max(0, _ceil_div((b0 - start_us) * gaps, span))
        k_hi = min(gaps, _ceil_div((b1 - start_us) * gaps, span) - 1)
        if k_hi >= k_lo:
            out.append((i, k_hi - k_lo + 1))
    return out


def add_segment(
    buckets: list[Bucket],
    grid: Grid,
    row: tuple[int, int, int, int, int | None, int | None, int, int | None],
    clip_to_us: int | None = None,
) -> None:
    """A segment row (start_us, end_us, count, lost, min, max, sum, hops) shared out."""
    start_us, end_us, count, lost, min_us, max_us, sum_us, hops = row
    is_lost = lost > 0
    mean = 0.0 if is_lost or count == lost else sum_us / (count - lost)
    for i, n in spread(grid, start_us, end_us, count, clip_to_us):
        whole = n == count
        buckets[i].add(
            n,
            n if is_lost else 0,
            min_us,
            max_us,
            sum_us if whole else n * mean,
            hops,
            hops,
        )


def _ms(us: float | None) -> float | None:
    return None if us is None else round(us / 1000, 3)


def points(grid: Grid, buckets: list[Bucket], iso_starts: list[str]) -> list[dict[str, object]]:
    """The wire form of every bucket, gaps included."""
    return [
        {
            "start": start,
            "count": b.count,
            "lost": b.lost,
            "min": _ms(b.min_us),
            "avg": _ms(b.avg_us),
            "max": _ms(b.max_us),
            "hops": b.hops_max,
            "hops_min": b.hops_min,
        }
        for start, b in zip(iso_starts, buckets, strict=True)
    ]

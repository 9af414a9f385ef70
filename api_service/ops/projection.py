"""Storage math: what N targets would need under the ladder, from what a tier costs. Pure.

The projection multiplies, tier by tier, the pings (or segments, or hours) a
tier keeps under the ladder's retentions by the bytes each costs, measured
from the live data (storage.py) once a tier holds enough of it, else the
defaults below (measured by bench/ladder_bench.py; docs/contraction.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from shared.errors import InvalidInput
from shared.ladder import Ladder, Level
from shared.settings import MAX_INTERVAL_S, MIN_INTERVAL_S

DAY_S = 86_400
YEAR_DAYS = 365.25
MAX_TARGETS = 1_000_000
MAX_YEARS = 100.0
# Below this many pings (raw) or rows (segments, hourly) page overhead
# dominates, so the defaults are used instead of the measurement.
MIN_MEASURED = 20_000

# bench/ladder_bench.py (BENCHMARKS.md, "Ladder"; docs/storage.md): raw rows
# and packed from 1.08 M pings; segment and hourly rows in steady state, i.e.
# >= 200 000 rows inserted day after day (the index then settles near 70 % full).
DEFAULT_BYTES_PER_ROW = {"raw_rows": 84.0, "raw_packed": 3.8, "segment": 164.0, "hourly": 188.0}
# A segment of a packed level (one row of arrays per target and day), on the
# jittery WAN series (bench/ladder_bench.py): 34.2 B at level 3 (~261 segments
# a day share one row), 31.7 B at level 1 (~8 900), 33.4 B weighed by what is kept.
DEFAULT_PACKED_SEGMENT_BYTES = 34.0
# Segments per ping at each level on a whole day of the jittery WAN series
# (25 ms, sigma 1.5 ms, 1 % spikes, 0.1 % loss) under the default ladder: calm
# targets cost far less, lossy ones more (docs/storage.md). Levels beyond
# these get the last one.
DEFAULT_SEGMENTS_PER_PING = (0.1026, 0.0205, 0.0030)


@dataclass(frozen=True)
class TierNow:
    tier: str
    rows: int  # segments, hours or pings; for a segment level both forms
    pings: int  # pings the rows stand for
    bytes: int
    packed_rows: int = 0  # of those, segments held in the packed form
    packed_bytes: int = 0

    @property
    def bytes_per_row(self) -> float | None:
        return self.bytes / self.rows if self.rows else None

    @property
    def bytes_per_ping(self) -> float | None:
        return self.bytes / self.pings if self.pings else None


@dataclass(frozen=True)
class Figure:
    """One cost used by the projection and where it came from."""

    value: float
    source: str  # "measured" or "default"


@dataclass(frozen=True)
class Figures:
    raw_row_bytes_per_ping: Figure
    packed_bytes_per_ping: Figure
    segment_bytes: Figure
    hourly_bytes: Figure
    segments_per_ping: dict[int, Figure] = field(default_factory=dict)
    packed_segment_bytes: Figure = Figure(DEFAULT_PACKED_SEGMENT_BYTES, "default")


@dataclass(frozen=True)
class TierProjection:
    tier: str
    retention_days: float
    rows: float
    bytes: float


@dataclass(frozen=True)
class Projection:
    targets: int
    interval_s: float
    years: float
    tiers: list[TierProjection]
    total_bytes: float
    raw_only_bytes: float  # every ping as a row for all the years
    keep_every_ping_bytes: float  # the ladder, with the packed tier kept all the years

    @property
    def contraction(self) -> float:
        return self.raw_only_bytes / self.total_bytes if self.total_bytes else 0.0


def days(value: timedelta) -> float:
    return value / timedelta(days=1)


def pack_span_s(level: Level) -> float:
    """The unit a packed level packs into one row: its block, at least a day."""
    return max(level.max_span.total_seconds(), DAY_S)


def ladder_content(ladder: Ladder) -> dict[str, Any]:
    """The ladder as /storage shows it, in seconds and days."""
    return {
        "levels": [
            {
                "level": lv.level,
                "max_span_s": lv.max_span.total_seconds(),
                "retention_days": days(lv.retention),
                "packed": lv.packed,
            }
            for lv in ladder.levels
        ],
        "pack_after_days": days(ladder.pack_after),
        "raw_retention_days": days(ladder.raw_retention),
        "hourly_retention_days": days(ladder.hourly_retention),
    }


def check_parameters(targets: int, interval_s: float, years: float) -> None:
    if not 1 <= targets <= MAX_TARGETS:
        raise InvalidInput(f"targets must be between 1 and {MAX_TARGETS}, got {targets}")
    if not MIN_INTERVAL_S <= interval_s <= MAX_INTERVAL_S:
        raise InvalidInput(
            f"interval_s must be between {MIN_INTERVAL_S} and {MAX_INTERVAL_S}, got {interval_s}"
        )
    if not 0 < years <= MAX_YEARS:
        raise InvalidInput(f"years must be above 0 and at most {MAX_YEARS}, got {years}")


def figures_from(now: list[TierNow], levels: tuple[Level, ...]) -> Figures:
    """The measured costs where a tier holds enough data, the defaults elsewhere."""
    by = {t.tier: t for t in now}

    def per(amount: int, value: float | None, default: float) -> Figure:
        if value is not None and amount >= MIN_MEASURED:
            return Figure(round(value, 3), "measured")
        return Figure(default, "default")

    raw, packed, hourly = by["raw_rows"], by["raw_packed"], by["hourly"]
    segs = [by[lv.tier] for lv in levels]
    row_rows = sum(s.rows - s.packed_rows for s in segs)
    row_bytes = sum(s.bytes - s.packed_bytes for s in segs)
    packed_rows = sum(s.packed_rows for s in segs)
    packed_bytes = sum(s.packed_bytes for s in segs)
    density: dict[int, Figure] = {}
    for i, (lv, seg) in enumerate(zip(levels, segs, strict=True)):
        default = DEFAULT_SEGMENTS_PER_PING[min(i, len(DEFAULT_SEGMENTS_PER_PING) - 1)]
        ratio = seg.rows / seg.pings if seg.pings else None
        density[lv.level] = per(seg.pings, ratio, default)
    return Figures(
        raw_row_bytes_per_ping=per(
            raw.pings, raw.bytes_per_ping, DEFAULT_BYTES_PER_ROW["raw_rows"]
        ),
        packed_bytes_per_ping=per(
            packed.pings, packed.bytes_per_ping, DEFAULT_BYTES_PER_ROW["raw_packed"]
        ),
        segment_bytes=per(
            row_rows, row_bytes / row_rows if row_rows else None, DEFAULT_BYTES_PER_ROW["segment"]
        ),
        hourly_bytes=per(hourly.rows, hourly.bytes_per_row, DEFAULT_BYTES_PER_ROW["hourly"]),
        segments_per_ping=density,
        packed_segment_bytes=per(
            packed_rows,
            packed_bytes / packed_rows if packed_rows else None,
            DEFAULT_PACKED_SEGMENT_BYTES,
        ),
    )


def project(
    ladder: Ladder, figures: Figures, targets: int, interval_s: float, years: float
) -> Projection:
    """Steady-state size of every tier for `targets` pinged every `interval_s` over `years`."""
    check_parameters(targets, interval_s, years)
    horizon = years * YEAR_DAYS
    pings_per_day = targets * DAY_S / interval_s

    def raw_tiers(raw_days: float) -> list[TierProjection]:
        # A day stays in row form until it ended pack_after ago: at worst
        # today plus pack_after days; the rest of the raw retention is packed.
        kept = min(horizon, raw_days)
        row_days = min(kept, 1 + days(ladder.pack_after))
        packed_days = kept - row_days
        return [
            TierProjection(
                "raw_rows",
                row_days,
                pings_per_day * row_days,
                pings_per_day * row_days * figures.raw_row_bytes_per_ping.value,
            ),
            TierProjection(
                "raw_packed",
                packed_days,
                targets * 24 * packed_days,  # one row per target-hour
                pings_per_day * packed_days * figures.packed_bytes_per_ping.value,
            ),
        ]

    rest: list[TierProjection] = []
    for lv in ladder.levels:
        kept = min(horizon, days(lv.retention))
        # A segment never crosses its level's block, so a block holds at least one.
        per_day = max(
            pings_per_day * figures.segments_per_ping[lv.level].value,
            targets * DAY_S / lv.max_span.total_seconds(),
        )
        # A packed level keeps only its unended day (or longer block) as rows.
        row_days = min(kept, pack_span_s(lv) / DAY_S) if lv.packed else kept
        cost = per_day * row_days * figures.segment_bytes.value
        cost += per_day * (kept - row_days) * figures.packed_segment_bytes.value
        rest.append(TierProjection(lv.tier, kept, per_day * kept, cost))
    hourly_days = min(horizon, days(ladder.hourly_retention))
    hours = targets * 24 * hourly_days
    rest.append(TierProjection("hourly", hourly_days, hours, hours * figures.hourly_bytes.value))

    tiers = raw_tiers(days(ladder.raw_retention)) + rest
    every_ping = raw_tiers(horizon) + rest
    return Projection(
        targets=targets,
        interval_s=interval_s,
        years=years,
        tiers=tiers,
        total_bytes=sum(t.bytes for t in tiers),
        raw_only_bytes=pings_per_day * horizon * figures.raw_row_bytes_per_ping.value,
        keep_every_ping_bytes=sum(t.bytes for t in every_ping),
    )

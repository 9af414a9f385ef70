"""Storage math (api_service/ops/projection.py): tier by tier, from costs to bytes. Pure."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from fractions import Fraction

import pytest

from api_service.ops.projection import (
    DAY_S,
    DEFAULT_BYTES_PER_ROW,
    MIN_MEASURED,
    YEAR_DAYS,
    Figure,
    Figures,
    TierNow,
    figures_from,
    ladder_content,
    project,
)
from shared.errors import InvalidInput
from shared.ladder import Ladder, Level


def _level(level: int, span_s: int, days: int, packed: bool = False) -> Level:
    """A level as the projection sees it: tolerances play no part in it."""
    return Level(level, timedelta(seconds=span_s), timedelta(days=days), 0, Fraction(0), packed)


LADDER = Ladder(
    levels=(_level(1, 3600, 90), _level(2, 86400, 1825)),
    raw_retention=timedelta(days=14),
    hourly_retention=timedelta(days=1825),
    pack_after=timedelta(days=1),
)
FIGURES = Figures(
    raw_row_bytes_per_ping=Figure(84, "default"),
    packed_bytes_per_ping=Figure(4, "default"),
    segment_bytes=Figure(100, "default"),
    hourly_bytes=Figure(200, "default"),
    segments_per_ping={1: Figure(0.01, "default"), 2: Figure(0.001, "default")},
)


def test_projection_adds_up_tier_by_tier() -> None:
    p = project(LADDER, FIGURES, targets=300, interval_s=1, years=5)
    per_day = 300 * DAY_S
    by = {t.tier: t for t in p.tiers}
    assert by["raw_rows"].bytes == pytest.approx(per_day * 2 * 84)
    assert by["raw_packed"].bytes == pytest.approx(per_day * 12 * 4)
    assert by["segments_l1"].rows == pytest.approx(per_day * 0.01 * 90)
    assert by["segments_l2"].bytes == pytest.approx(per_day * 0.001 * 1825 * 100)
    assert by["hourly"].rows == 300 * 24 * 1825
    assert p.total_bytes == pytest.approx(sum(t.bytes for t in p.tiers))
    assert p.raw_only_bytes == pytest.approx(per_day * 5 * YEAR_DAYS * 84)
    keep_all = p.total_bytes + per_day * (5 * YEAR_DAYS - 14) * 4
    assert p.keep_every_ping_bytes == pytest.approx(keep_all)


def test_a_segment_level_costs_at_least_one_row_per_block() -> None:
    p = project(LADDER, FIGURES, targets=10, interval_s=3600, years=1)
    by = {t.tier: t for t in p.tiers}
    assert by["segments_l1"].rows == pytest.approx(10 * 24 * 90)  # one per hour, not 0.01 per ping
    assert by["segments_l2"].rows == pytest.approx(10 * 365.25)
    assert by["raw_packed"].retention_days == 12


def test_packed_level_costs_rows_for_its_open_block_and_packed_for_the_rest() -> None:
    packed = replace(LADDER, levels=(_level(1, 3600, 90), _level(2, 86400, 1825, packed=True)))
    figures = replace(FIGURES, packed_segment_bytes=Figure(30, "default"))
    by = {t.tier: t for t in project(packed, figures, targets=300, interval_s=1, years=5).tiers}
    per_day = 300 * DAY_S * 0.001
    assert by["segments_l2"].rows == pytest.approx(per_day * 1825)
    assert by["segments_l2"].bytes == pytest.approx(per_day * (1 * 100 + 1824 * 30))
    plain = {t.tier: t for t in project(LADDER, figures, targets=300, interval_s=1, years=5).tiers}
    assert plain["segments_l1"].bytes == by["segments_l1"].bytes


def test_a_packed_level_of_hour_blocks_keeps_its_open_day_as_rows() -> None:
    packed = replace(LADDER, levels=(_level(1, 3600, 90, packed=True), LADDER.levels[1]))
    figures = replace(FIGURES, packed_segment_bytes=Figure(30, "default"))
    by = {t.tier: t for t in project(packed, figures, targets=300, interval_s=1, years=5).tiers}
    per_day = 300 * DAY_S * 0.01
    assert by["segments_l1"].rows == pytest.approx(per_day * 90)
    assert by["segments_l1"].bytes == pytest.approx(per_day * (1 * 100 + 89 * 30))


@pytest.mark.parametrize(
    ("targets", "interval_s", "years"), [(0, 1, 5), (300, 0.01, 5), (300, 1, 0), (300, 1, 101)]
)
def test_projection_refuses_impossible_fleets(
    targets: int, interval_s: float, years: float
) -> None:
    with pytest.raises(InvalidInput):
        project(LADDER, FIGURES, targets, interval_s, years)


def _measured(pings: int, rows: int) -> list[TierNow]:
    """Tiers holding `pings` each: raw at 90 B a ping, packed at 4, a segment row at 150 B
    and a packed one at 34, level 2 with a tenth of level 1's segments, half of them packed."""
    upper = rows // 10
    return [
        TierNow("raw_rows", pings, pings, pings * 90),
        TierNow("raw_packed", pings // 3600, pings, pings * 4),
        TierNow("segments_l1", rows, pings, rows * 150),
        TierNow("segments_l2", upper, pings, upper // 2 * (150 + 34), upper // 2, upper // 2 * 34),
        TierNow("hourly", pings // 3600, pings, pings // 3600 * 190),
    ]


def test_costs_are_measured_once_a_tier_holds_enough_of_them() -> None:
    figures = figures_from(_measured(MIN_MEASURED, MIN_MEASURED), LADDER.levels)
    assert figures.raw_row_bytes_per_ping == Figure(90.0, "measured")
    assert figures.packed_bytes_per_ping == Figure(4.0, "measured")
    assert figures.segments_per_ping[1] == Figure(1.0, "measured")
    assert figures.segments_per_ping[2] == Figure(0.1, "measured")
    assert figures.segment_bytes == Figure(150.0, "measured")
    # too few hours and packed segments to measure them
    assert figures.hourly_bytes == Figure(DEFAULT_BYTES_PER_ROW["hourly"], "default")
    assert figures.packed_segment_bytes.source == "default"


def test_packed_segments_are_measured_apart_from_segment_rows() -> None:
    figures = figures_from(_measured(MIN_MEASURED, 20 * MIN_MEASURED), LADDER.levels)
    assert figures.segment_bytes == Figure(150.0, "measured")
    assert figures.packed_segment_bytes == Figure(34.0, "measured")


def test_costs_of_a_nearly_empty_database_are_the_defaults() -> None:
    figures = figures_from(_measured(MIN_MEASURED - 1, 10), LADDER.levels)
    assert figures.raw_row_bytes_per_ping == Figure(DEFAULT_BYTES_PER_ROW["raw_rows"], "default")
    assert {f.source for f in figures.segments_per_ping.values()} == {"default"}


def test_storage_shows_the_ladder_in_seconds_and_days() -> None:
    assert ladder_content(LADDER) == {
        "levels": [
            {"level": 1, "max_span_s": 3600.0, "retention_days": 90.0, "packed": False},
            {"level": 2, "max_span_s": 86400.0, "retention_days": 1825.0, "packed": False},
        ],
        "pack_after_days": 1.0,
        "raw_retention_days": 14.0,
        "hourly_retention_days": 1825.0,
    }

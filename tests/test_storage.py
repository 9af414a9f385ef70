"""GET /storage: measured bytes per tier, and the projection's arithmetic."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest

from api_service.storage import (
    DAY_S,
    YEAR_DAYS,
    Figure,
    Figures,
    Ladder,
    LevelConfig,
    project,
)
from shared.errors import InvalidInput
from shared.settings import Settings
from tests.api_client import api_client

LADDER = Ladder(
    levels=[LevelConfig(1, 3600, 90), LevelConfig(2, 86400, 1825)],
    pack_after_days=1,
    raw_retention_days=14,
    hourly_retention_days=1825,
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
    packed = Ladder(
        levels=[LevelConfig(1, 3600, 90), LevelConfig(2, 86400, 1825, packed=True)],
        pack_after_days=1,
        raw_retention_days=14,
        hourly_retention_days=1825,
    )
    figures = replace(FIGURES, packed_segment_bytes=Figure(30, "default"))
    by = {t.tier: t for t in project(packed, figures, targets=300, interval_s=1, years=5).tiers}
    per_day = 300 * DAY_S * 0.001
    assert by["segments_l2"].rows == pytest.approx(per_day * 1825)
    assert by["segments_l2"].bytes == pytest.approx(per_day * (1 * 100 + 1824 * 30))
    plain = {t.tier: t for t in project(LADDER, figures, targets=300, interval_s=1, years=5).tiers}
    assert plain["segments_l1"].bytes == by["segments_l1"].bytes


def test_a_packed_level_of_hour_blocks_keeps_its_open_day_as_rows() -> None:
    packed = replace(LADDER, levels=[LevelConfig(1, 3600, 90, packed=True), LADDER.levels[1]])
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


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(settings) as client:
        yield client


@pytest.fixture
async def rolled_up(pool: asyncpg.Pool) -> None:
    """Three settled hours of one target at 1 Hz, rolled up and packed, and a fresh ten minutes."""
    target = await pool.fetchval(
        "INSERT INTO targets (address, interval_ms, timeout_ms, state)"
        " VALUES ('127.0.0.2', 1000, 1000, 'stopped') RETURNING id"
    )
    day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    start = day - timedelta(days=3, hours=1)  # 23:00 three days ago, into the next day
    await pool.execute("SELECT ensure_ping_partitions(current_date - 4, current_date)")
    await pool.copy_records_to_table(
        "pings",
        records=[
            (target, start + timedelta(seconds=i), None if i % 97 == 0 else 20_000 + i % 700, 60, 4)
            for i in range(3 * 3600)
        ],
        columns=["target_id", "ts", "rtt_us", "ttl", "hops"],
    )
    async with pool.acquire() as conn:
        while await conn.fetchval("SELECT ladder_rollup()"):
            pass
        assert await conn.fetchval("SELECT ladder_pack(10)") >= 3600
        assert await conn.fetchval("SELECT ladder_pack_segments(5000, $1)", target) == 6
    recent = datetime.now(UTC) - timedelta(hours=2)  # stays in row form (not settled a day)
    await pool.copy_records_to_table(
        "pings",
        records=[(target, recent + timedelta(seconds=i), 20_000, 60, 4) for i in range(600)],
        columns=["target_id", "ts", "rtt_us", "ttl", "hops"],
    )


async def test_storage_measures_every_tier_and_scales_with_targets(
    client: httpx.AsyncClient, rolled_up: None
) -> None:
    small = await client.get("/storage", params={"targets": 300, "interval_s": 1, "years": 5})
    assert small.status_code == 200, small.text
    body = small.json()
    now = {t["tier"]: t for t in body["now"]["tiers"]}
    levels = [f"segments_l{lv['level']}" for lv in body["ladder"]["levels"]]
    assert levels == ["segments_l1", "segments_l2", "segments_l3"]
    assert set(now) == {"raw_rows", "raw_packed", "hourly", *levels}
    for tier in now.values():
        assert tier["rows"] > 0 and tier["bytes"] > 0, tier
    assert now["raw_packed"]["bytes_per_ping"] < now["raw_rows"]["bytes_per_ping"]
    for level in levels:  # two ended days, packed
        tier = now[level]
        assert tier["pings"] >= 3 * 3600 and 0 < tier["packed_rows"] <= tier["rows"], tier
        assert 0 < tier["packed_bytes"] < tier["bytes"], tier
    assert body["now"]["total_bytes"] == sum(t["bytes"] for t in now.values())

    double = (await client.get("/storage", params={"targets": 600})).json()["projection"]
    single = body["projection"]
    assert single["targets"] == 300 and single["interval_s"] == 1 and single["years"] == 5
    for key in ("total_bytes", "raw_only_bytes", "keep_every_ping_bytes"):
        assert double[key] == pytest.approx(2 * single[key], rel=1e-9)
    assert 0 < single["total_bytes"] < single["keep_every_ping_bytes"] < single["raw_only_bytes"]


@pytest.mark.parametrize(
    "params",
    [
        {"targets": 0},
        {"targets": "many"},
        {"targets": 2_000_000},
        {"interval_s": 0},
        {"interval_s": 7200},
        {"years": 0},
        {"years": -1},
        {"years": 1000},
    ],
)
async def test_storage_refuses_bad_parameters(client: httpx.AsyncClient, params: dict) -> None:
    response = await client.get("/storage", params=params)
    assert response.status_code == 422, response.text
    assert next(iter(params)) in response.text

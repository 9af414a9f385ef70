"""GET /storage: measured bytes per tier (the projection's arithmetic: test_projection.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest

from shared.settings import Settings
from tests.api_client import api_client


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

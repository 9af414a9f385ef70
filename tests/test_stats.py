"""GET /targets/{id}/stats: exact from raw, and the rolled-up tiers agree with it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import numpy as np
import pytest

from api_service.history import stats as st
from api_service.history.tier_choice import level_pieces
from shared.ladder import load_ladder
from shared.settings import Settings
from tests.api_client import api_client
from tests.history_data import (
    HOURS,
    LOSS_LEN,
    Laddered,
    create_target,
    insert_pings,
    laddered,
)


@pytest.fixture(scope="module")
async def data(database_url: str) -> Laddered:
    return await laddered(database_url, days_ago=4)


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(settings) as client:
        yield client


def _expected(data: Laddered) -> dict[str, float]:
    rtts = np.array([r for _, r, _ in data.pings if r is not None], dtype=np.float64)
    return {
        "min": rtts.min() / 1000,
        "max": rtts.max() / 1000,
        "avg": rtts.mean() / 1000,
        "stddev": rtts.std() / 1000,
        "p50": np.percentile(rtts, 50) / 1000,
        "p95": np.percentile(rtts, 95) / 1000,
        "p99": np.percentile(rtts, 99) / 1000,
        "jitter": np.abs(np.diff(rtts)).mean() / 1000,
    }


async def test_raw_stats_are_exact(data: Laddered, pool: asyncpg.Pool) -> None:
    got = await st.stats(pool, data.target_id, data.start, data.end, force="raw")
    want = _expected(data)
    assert got.tier == "raw"
    assert (got.count, got.lost, got.loss_runs, got.hop_changes) == (HOURS * 3600, LOSS_LEN, 1, 1)
    assert got.loss_pct == pytest.approx(100 * LOSS_LEN / (HOURS * 3600), abs=1e-4)
    # the one loss run is an outage (>= 3 pings): availability excludes it
    assert got.loss_pct is not None
    assert got.availability_pct == pytest.approx(100 - got.loss_pct, abs=1e-4)
    assert (got.min_ms, got.max_ms) == (want["min"], want["max"])
    for key in ("avg", "stddev", "p50", "p95", "p99", "jitter"):
        assert getattr(got, f"{key}_ms") == pytest.approx(want[key], abs=1e-3), key


async def test_rolled_up_stats_agree_with_raw(data: Laddered, pool: asyncpg.Pool) -> None:
    raw = await st.stats(pool, data.target_id, data.start, data.end, force="raw")
    got = await st.stats(pool, data.target_id, data.start, data.end, force="rolled_up")
    assert got.tier.startswith("hourly+segments_l")
    level1 = await pool.fetchrow(
        "SELECT abs_tolerance_us, rel_tolerance::float8 FROM ladder_levels WHERE level = 1"
    )
    assert (got.count, got.lost, got.min_ms, got.max_ms) == (
        raw.count,
        raw.lost,
        raw.min_ms,
        raw.max_ms,
    )
    assert (got.loss_runs, got.hop_changes, got.availability_pct) == (
        raw.loss_runs,
        raw.hop_changes,
        raw.availability_pct,
    )
    assert got.avg_ms == pytest.approx(raw.avg_ms, abs=1e-3)
    assert got.stddev_ms == pytest.approx(raw.stddev_ms, abs=1e-3)
    for key in ("p50_ms", "p95_ms", "p99_ms"):
        a, b = getattr(raw, key), getattr(got, key)
        assert abs(a - b) * 1000 <= max(level1[0], level1[1] * a * 1000), key
    # pairs across an hour edge are left out: a handful of 21 600
    assert got.jitter_ms == pytest.approx(raw.jitter_ms, rel=0.02)


async def test_stats_over_http(client: httpx.AsyncClient, data: Laddered) -> None:
    z = lambda t: t.isoformat().replace("+00:00", "Z")  # noqa: E731
    r = await client.get(
        f"/targets/{data.target_id}/stats", params={"from": z(data.start), "to": z(data.end)}
    )
    assert r.status_code == 200
    body = r.json()  # six hours at 1 Hz: past the exact budget, from the rolled-up tiers
    assert body["tier"] == "hourly+segments_l1" and body["count"] == HOURS * 3600
    assert body["lost"] == LOSS_LEN
    hour = {"from": z(data.start), "to": z(data.start + timedelta(hours=1))}
    r = await client.get(f"/targets/{data.target_id}/stats", params=hour)
    assert r.json()["tier"] == "raw" and r.json()["count"] == 3600
    assert body["from"] == z(data.start) and body["hop_changes"] == 1
    r = await client.get(
        f"/targets/{data.target_id}/stats",
        params={"from": z(data.end), "to": z(data.start)},
    )
    assert r.status_code == 422


async def test_stats_of_an_empty_range_are_zero_and_null(
    client: httpx.AsyncClient, data: Laddered
) -> None:
    z = lambda t: t.isoformat().replace("+00:00", "Z")  # noqa: E731
    lo = data.start - timedelta(hours=3)
    r = await client.get(
        f"/targets/{data.target_id}/stats", params={"from": z(lo), "to": z(data.start)}
    )
    body = r.json()
    assert r.status_code == 200 and body["count"] == 0
    assert body["loss_pct"] is None and body["avg_ms"] is None and body["p50_ms"] is None


async def test_targets_show_loss_over_the_last_minute(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    now = datetime.now(UTC)
    async with pool.acquire() as conn:
        target = await create_target(conn, now - timedelta(hours=1))
        # every 4th ping lost, 1 to 49 s ago and 73 to 117 s ago
        pings = [
            (now - timedelta(seconds=k + 0.5), None if k % 4 == 1 and not 50 < k < 70 else 1500, 7)
            for k in range(120)
        ]
        await insert_pings(conn, target, sorted(pings))
    body = (await client.get(f"/targets/{target}")).json()
    # 59 or 60 pings are younger than a minute by the time the API asks
    minute = body["last_minute"]
    assert minute["pings"] in (59, 60) and minute["lost"] == 13
    assert minute["loss_pct"] == round(100 * 13 / minute["pings"], 2)
    listed = {t["id"]: t for t in (await client.get("/targets")).json()["items"]}
    assert listed[target]["last_minute"]["lost"] == 13


async def test_figures_reduced_in_the_database_match_every_segment_read(
    data: Laddered, pool: asyncpg.Pool
) -> None:
    now = datetime.now(UTC)
    async with pool.acquire() as conn:
        ladder = await load_ladder(conn)
        pieces = level_pieces(data.start, data.end, now, ladder)
        exact = await st.exact_segment_figures(conn, data.target_id, pieces)
        fast = await st.segment_figures_of(conn, data.target_id, pieces)
    assert (fast.hop_changes, fast.loss_runs, fast.outage_pings) == (
        exact.hop_changes,
        exact.loss_runs,
        exact.outage_pings,
    )
    assert (exact.hop_changes, exact.loss_runs, exact.outage_pings) == (1, 1, LOSS_LEN)
    spec = pieces[0][0]
    for key in ("p50_us", "p95_us", "p99_us"):
        a, b = getattr(exact, key), getattr(fast, key)
        # the grid cell's lowest mean: at most one cell (0.1 %) below the exact pick
        assert a * (1 - 1.001 / st.GRID_CELLS) <= b <= a, key
        assert abs(a - b) <= max(spec.abs_tolerance_us, spec.rel_tolerance * a), key

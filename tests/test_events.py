"""GET /targets/{id}/events and /segments: what was planted is what is found, at every age."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest

from api_service.history import events as ev
from api_service.history import stats as st
from pingtrack.seed import SeedOptions, SeedReport, seed_history
from shared.blocks import at_us_since_origin
from shared.settings import Settings
from tests.api_client import api_client
from tests.history_data import LOSS_AT, LOSS_LEN, ROUTE_AT, STEP_AT, Laddered, laddered

END = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)


@pytest.fixture(scope="module")
async def data(database_url: str) -> Laddered:
    return await laddered(database_url, days_ago=5)


@pytest.fixture(scope="module")
async def seeded(database_url: str) -> SeedReport:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    try:
        options = SeedOptions(targets=1, years=0.5, raw=timedelta(days=2), end=END, seed=11)
        return await seed_history(pool, options)
    finally:
        await pool.close()


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(settings) as client:
        yield client


async def test_events_of_laddered_raw_are_the_planted_ones(
    data: Laddered, pool: asyncpg.Pool
) -> None:
    got = await ev.events(pool, data.target_id, data.start, data.end)
    assert got.tier == "segments_l1"
    found = [
        (e.kind, at_us_since_origin(e.start_us), at_us_since_origin(e.end_us), e.magnitude)
        for e in got.events
    ]
    loss_end = data.start + LOSS_AT + timedelta(seconds=LOSS_LEN - 1)
    assert found[0] == ("loss", data.start + LOSS_AT, loss_end, LOSS_LEN)
    kind, _start, end, magnitude = found[1]
    assert (kind, end) == ("latency_shift", data.start + STEP_AT)
    assert 23_000 < magnitude < 27_000
    assert found[2] == (
        "hop_change", data.start + ROUTE_AT - timedelta(seconds=1), data.start + ROUTE_AT, 1,
    )  # fmt: skip
    assert len(found) == 3


@pytest.mark.parametrize(
    ("days", "tier", "shifts"),
    [((20, 0), "segments_l1", True), ((80, 40), "segments_l2", True),
     ((180, 100), "segments_l3", False)],
)  # fmt: skip
async def test_seeded_events_are_found_at_every_age(
    seeded: SeedReport, pool: asyncpg.Pool, days: tuple[int, int], tier: str, shifts: bool
) -> None:
    """Loss runs and hop changes keep their exact times at every level; latency
    shifts too while the level's tolerance keeps them as boundaries (level 3
    absorbs steps under 300 %, so it gives them to the segment, not the ping)."""
    target = seeded.target_ids[0]
    lo, hi = END - timedelta(days=days[0]), END - timedelta(days=days[1])
    got = await ev.events(pool, target, lo, hi)
    assert got.tier == tier
    kinds = {"loss", "hop_change"} | ({"latency_shift"} if shifts else set())
    # a shift or hop change is timed by its first ping at the new level; a loss by its first loss
    found = {
        (e.kind, at_us_since_origin(e.start_us if e.kind == "loss" else e.end_us))
        for e in got.events
        if e.kind in kinds
    }
    planted = {
        (p.kind, at_us_since_origin(p.start_us))
        for p in seeded.planted[target]
        if p.kind in kinds and lo <= at_us_since_origin(p.start_us) < hi
    }
    assert len(planted) >= 5
    assert found == planted


async def test_events_and_segments_over_http(client: httpx.AsyncClient, data: Laddered) -> None:
    z = lambda t: t.isoformat().replace("+00:00", "Z")  # noqa: E731
    params = {"from": z(data.start), "to": z(data.end)}
    r = await client.get(f"/targets/{data.target_id}/events", params=params)
    assert r.status_code == 200
    events = r.json()["events"]
    assert [e["kind"] for e in events] == ["loss", "latency_shift", "hop_change"]
    assert events[0] == {
        "kind": "loss", "start": z(data.start + LOSS_AT),
        "end": z(data.start + LOSS_AT + timedelta(seconds=LOSS_LEN - 1)),
        "magnitude": LOSS_LEN, "unit": "pings",
    }  # fmt: skip
    assert events[1]["unit"] == "ms" and 23 < events[1]["magnitude"] < 27
    r = await client.get(f"/targets/{data.target_id}/segments", params={**params, "level": 1})
    body = r.json()
    assert r.status_code == 200 and body["level"] == 1 and body["next_from"] is None
    assert sum(s["count"] for s in body["segments"]) == 6 * 3600
    lost = [s for s in body["segments"] if s["lost"]]
    assert sum(s["lost"] for s in lost) == LOSS_LEN and all(s["min"] is None for s in lost)
    r = await client.get(
        f"/targets/{data.target_id}/segments", params={**params, "level": 1, "limit": 10}
    )
    assert len(r.json()["segments"]) == 10 and r.json()["next_from"] is not None
    r = await client.get(f"/targets/{data.target_id}/segments", params={**params, "level": 9})
    assert r.status_code == 422 and "level must be one of" in r.json()["error"]["message"]


async def test_stats_across_retention_edges_read_each_stretch_from_its_finest_level(
    seeded: SeedReport, pool: asyncpg.Pool
) -> None:
    target = seeded.target_ids[0]
    lo, hi = END - timedelta(days=60), END - timedelta(days=3)
    got = await st.stats(pool, target, lo, hi)
    assert got.tier == "hourly+segments_l2+segments_l1"
    planted = [p for p in seeded.planted[target] if lo <= at_us_since_origin(p.start_us) < hi]
    assert got.loss_runs == sum(p.kind == "loss" for p in planted)
    assert got.hop_changes == sum(p.kind == "hop_change" for p in planted)
    assert got.lost == sum(int(p.magnitude) for p in planted if p.kind == "loss")

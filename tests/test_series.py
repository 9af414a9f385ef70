"""GET /targets/{id}/series: tiers agree with raw, unsettled data comes from raw, bad input."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest

from api_service.history import series as sr
from shared.settings import Settings
from tests.api_client import api_client
from tests.history_data import HOURS, Laddered, create_target, insert_pings, laddered, make_pings


@pytest.fixture(scope="module")
async def data(database_url: str) -> Laddered:
    return await laddered(database_url)


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(settings) as client:
        yield client


def _z(ts: datetime) -> str:
    return ts.isoformat().replace("+00:00", "Z")


async def _tolerances(pool: asyncpg.Pool) -> dict[str, tuple[int, float]]:
    rows = await pool.fetch(
        "SELECT level, abs_tolerance_us, rel_tolerance::float8 FROM ladder_levels"
    )
    return {f"segments_l{r[0]}": (r[1], r[2]) for r in rows}


@pytest.mark.parametrize("points", [HOURS, HOURS * 12])
async def test_every_tier_agrees_with_raw(data: Laddered, pool: asyncpg.Pool, points: int) -> None:
    """Same counts and loss per bucket; min/max exact where no row crosses a bucket edge,
    otherwise the row's envelope holds them; averages within the tier's tolerance."""
    tolerances = await _tolerances(pool)
    raw = await sr.series(pool, data.target_id, data.start, data.end, points, tier="raw")
    assert sum(b.count for b in raw.buckets) == HOURS * 3600
    assert sum(b.lost for b in raw.buckets) == 40
    tiers = [*tolerances, "hourly"] if points == HOURS else list(tolerances)
    for tier in tiers:
        got = await sr.series(pool, data.target_id, data.start, data.end, points, tier=tier)
        assert got.tier == tier and got.grid == raw.grid and got.raw_from is None
        abs_us, rel = tolerances.get(tier, (0, 0.0))
        for a, b in zip(raw.buckets, got.buckets, strict=True):
            assert (a.count, a.lost) == (b.count, b.lost), tier
            assert a.avg_us is not None and b.avg_us is not None
            exact = tier in ("hourly", "segments_l1") and points == HOURS
            if exact:
                assert (a.min_us, a.max_us) == (b.min_us, b.max_us), tier
                assert a.avg_us == pytest.approx(b.avg_us, rel=1e-9)
            else:
                assert b.min_us <= a.min_us <= a.max_us <= b.max_us, tier  # type: ignore[operator]
                assert abs(a.avg_us - b.avg_us) <= max(abs_us, rel * a.avg_us), tier
            assert (a.hops_min, a.hops_max) == (b.hops_min, b.hops_max), tier


async def test_short_range_is_raw_with_explicit_gaps(data: Laddered, pool: asyncpg.Pool) -> None:
    lo = data.start - timedelta(minutes=30)  # half an hour before the first ping
    got = await sr.series(pool, data.target_id, lo, data.start + timedelta(minutes=30), 60)
    assert got.tier == "raw" and got.grid.width == timedelta(minutes=1)
    assert len(got.buckets) == 60
    assert all(b.count == 0 and b.min_us is None and b.avg_us is None for b in got.buckets[:30])
    assert all(b.count == 60 for b in got.buckets[30:])


async def test_long_old_range_uses_hourly(data: Laddered, pool: asyncpg.Pool) -> None:
    got = await sr.series(pool, data.target_id, data.start, data.start + timedelta(days=2), 48)
    assert got.tier == "hourly" and got.grid.width == timedelta(hours=1)
    assert sum(b.count for b in got.buckets) == HOURS * 3600


async def test_unsettled_hours_are_read_from_raw(pool: asyncpg.Pool) -> None:
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=8)
    async with pool.acquire() as conn:
        target_id = await create_target(conn, start)
        pings = make_pings(start, 99)
        await insert_pings(conn, target_id, pings[: 3 * 3600])
        while await conn.fetchval("SELECT ladder_rollup()"):
            pass
        await insert_pings(conn, target_id, pings[3 * 3600 :])  # not rolled up
    end = start + timedelta(hours=HOURS)
    raw = await sr.series(pool, target_id, start, end, HOURS, tier="raw")
    for tier in ("segments_l1", "hourly"):
        got = await sr.series(pool, target_id, start, end, HOURS, tier=tier)
        assert got.raw_from == start + timedelta(hours=3)
        assert [b.count for b in got.buckets] == [b.count for b in raw.buckets] == [3600] * HOURS
        assert [b.max_us for b in got.buckets] == [b.max_us for b in raw.buckets]


async def test_series_over_http_names_tier_and_gaps(
    client: httpx.AsyncClient, data: Laddered
) -> None:
    r = await client.get(
        f"/targets/{data.target_id}/series",
        params={"from": _z(data.start), "to": _z(data.end + timedelta(hours=2)), "points": 8},
    )
    assert r.status_code == 200
    body = r.json()
    assert body["tier"] == "hourly" and body["bucket_s"] == 3600
    assert [p["count"] for p in body["points"]] == [3600] * HOURS + [0, 0]
    first, gap = body["points"][0], body["points"][-1]
    assert first["start"] == _z(data.start) and first["lost"] == 0 and first["hops"] == 12
    assert first["min"] < first["avg"] < first["max"]
    assert gap == {
        "start": _z(data.end + timedelta(hours=1)), "count": 0, "lost": 0,
        "min": None, "avg": None, "max": None, "hops": None, "hops_min": None,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("params", "status", "code"),
    [
        ({"from": "2025-01-02T00:00:00Z", "to": "2025-01-01T00:00:00Z"}, 422, "invalid_input"),
        ({"points": 0}, 422, "validation_error"),
        ({"points": sr.MAX_POINTS + 1}, 422, "validation_error"),
        ({"from": "yesterday"}, 422, "validation_error"),
    ],
)
async def test_bad_series_requests_are_4xx(
    client: httpx.AsyncClient, data: Laddered, params: dict[str, object], status: int, code: str
) -> None:
    r = await client.get(f"/targets/{data.target_id}/series", params=params)
    assert r.status_code == status and r.json()["error"]["code"] == code


async def test_unknown_target_is_404_on_every_history_path(client: httpx.AsyncClient) -> None:
    for path in ("series", "segments", "events", "stats"):
        r = await client.get(f"/targets/987654321/{path}")
        assert r.status_code == 404, path
        assert r.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize(
    "params",
    [
        {"from": "0001-01-01T00:00:00Z", "to": "0001-01-02T00:00:00Z"},
        {"to": "0001-01-01T00:00:00Z"},
        {"from": "9999-12-31T00:00:00Z", "to": "9999-12-31T23:59:59Z"},
    ],
)
async def test_ranges_at_the_ends_of_time_are_empty_not_errors(
    client: httpx.AsyncClient, data: Laddered, params: dict[str, str]
) -> None:
    for path in ("series", "stats", "events", "segments"):
        r = await client.get(f"/targets/{data.target_id}/{path}", params=params)
        assert r.status_code == 200, (path, r.text)
    r = await client.get(f"/targets/{data.target_id}/series", params=params)
    assert r.json()["points"] == []


@pytest.mark.parametrize("shift", [timedelta(0), timedelta(days=3)])
async def test_empty_and_future_ranges_give_no_points(
    client: httpx.AsyncClient, data: Laddered, shift: timedelta
) -> None:
    at = datetime.now(UTC) + shift
    r = await client.get(
        f"/targets/{data.target_id}/series",
        params={"from": _z(at), "to": _z(at + shift)},
    )
    assert r.status_code == 200 and r.json()["points"] == []


async def test_packed_pings_give_the_same_raw_series(database_url: str, pool: asyncpg.Pool) -> None:
    data = await laddered(database_url, days_ago=9)  # a day no other test packs or reads
    before = await sr.series(pool, data.target_id, data.start, data.end, 72, tier="raw")
    day = f"pings_{data.start:%Y%m%d}"
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT ladder_lock()")
        assert await conn.fetchval("SELECT ladder_pack_partition($1::regclass)", day) > 0
    left = "SELECT count(*) FROM pings WHERE target_id = $1"
    assert await pool.fetchval(left, data.target_id) == 0
    after = await sr.series(pool, data.target_id, data.start, data.end, 72, tier="raw")
    assert after.buckets == before.buckets


async def test_range_from_long_before_any_data_is_answered(
    client: httpx.AsyncClient, data: Laddered
) -> None:
    r = await client.get(
        f"/targets/{data.target_id}/series", params={"from": "1970-01-01T00:00:00Z", "points": 50}
    )
    body = r.json()
    assert r.status_code == 200 and len(body["points"]) <= 50 and body["tier"] == "hourly"
    assert sum(p["count"] for p in body["points"]) == HOURS * 3600


async def test_a_level_with_too_many_segments_gives_way_to_a_coarser_tier(
    data: Laddered, pool: asyncpg.Pool
) -> None:
    # six hours three days back: past the packed raw budget, so segments
    fine = await sr.series(pool, data.target_id, data.start, data.end, 72)
    assert fine.tier == "segments_l1" and fine.grid.width == timedelta(minutes=5)
    level1 = await pool.fetchval(
        "SELECT count(*) FROM segments_of($1, 1, '-infinity', 'infinity')", data.target_id
    )
    level2 = await sr.series(
        pool, data.target_id, data.start, data.end, 72, segment_budget=level1 - 1
    )
    assert level2.tier == "segments_l2" and level2.grid.width == timedelta(minutes=5)
    coarse = await sr.series(pool, data.target_id, data.start, data.end, 72, segment_budget=0)
    assert coarse.tier == "hourly" and coarse.grid.width == timedelta(hours=1)
    assert [b.count for b in coarse.buckets] == [3600] * HOURS

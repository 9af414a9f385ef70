"""Latest results: newest result of every target, its age, and one staleness everywhere."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest

from shared.settings import Settings
from tests.api_client import api_client
from tests.conftest import ADMIN_TOKEN, AMQP_URL
from tests.fleet_support import fresh_database


@pytest.fixture
async def own(amqp_prefix: str) -> AsyncIterator[tuple[httpx.AsyncClient, asyncpg.Pool]]:
    """A database of its own, so /health lists only this test's stale targets."""
    async with fresh_database() as dsn:
        settings = Settings(
            database_url=dsn,
            amqp_url=AMQP_URL,
            amqp_prefix=amqp_prefix,
            admin_token=ADMIN_TOKEN,  # type: ignore[arg-type]
            web_port=0,
        )
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
        try:
            async with api_client(settings) as client:
                yield client, pool
        finally:
            await pool.close()


async def _target(pool: asyncpg.Pool, address: str, state: str, age_s: float) -> int:
    """A target last changed `age_s` ago, interval 1 s."""
    target_id: int = await pool.fetchval(
        "INSERT INTO targets (address, interval_ms, timeout_ms, state, updated_at, tags)"
        " VALUES ($1::inet, 1000, 500, $2, now() - make_interval(secs => $3), '{lab}')"
        " RETURNING id",
        address,
        state,
        age_s,
    )
    return target_id


async def _ping(pool: asyncpg.Pool, target_id: int, ago_s: float, rtt_us: int | None) -> None:
    await pool.execute(
        "INSERT INTO pings (target_id, ts, rtt_us, ttl, hops)"
        " VALUES ($1, now() - make_interval(secs => $2), $3, 64, 0)",
        target_id,
        ago_s,
        rtt_us,
    )


async def test_latest_shows_the_newest_result_its_age_and_the_stale_flag(
    own: tuple[httpx.AsyncClient, asyncpg.Pool],
) -> None:
    client, pool = own
    fresh = await _target(pool, "192.0.2.1", "active", 600)
    await _ping(pool, fresh, 30, 900)
    await _ping(pool, fresh, 1, 1500)
    lost = await _target(pool, "192.0.2.2", "active", 600)
    await _ping(pool, lost, 2, None)
    silent = await _target(pool, "192.0.2.3", "active", 600)
    await _ping(pool, silent, 10, 700)  # nothing for 10 intervals
    never = await _target(pool, "192.0.2.4", "active", 600)
    just_made = await _target(pool, "192.0.2.5", "active", 1)  # within its grace
    paused = await _target(pool, "192.0.2.6", "paused", 600)

    response = await client.get("/results/latest")
    assert response.status_code == 200, response.text
    body = response.json()
    by_id = {item["id"]: item for item in body["items"]}
    assert (body["count"], body["stale"]) == (6, 2)
    assert (by_id[fresh]["rtt_ms"], by_id[fresh]["lost"], by_id[fresh]["stale"]) == (
        1.5,
        False,
        False,
    )
    assert 0.9 < by_id[fresh]["age_s"] < 5
    assert (by_id[lost]["rtt_ms"], by_id[lost]["lost"], by_id[lost]["stale"]) == (None, True, False)
    assert by_id[silent]["stale"] is True and 9.9 < by_id[silent]["age_s"] < 15
    assert (by_id[never]["ts"], by_id[never]["lost"], by_id[never]["stale"]) == (None, None, True)
    assert by_id[just_made]["stale"] is False
    assert (by_id[paused]["state"], by_id[paused]["stale"]) == ("paused", False)
    assert by_id[fresh]["target"] == "192.0.2.1" and by_id[fresh]["tags"] == ["lab"]

    one = await client.get(f"/targets/{silent}/latest")
    assert one.status_code == 200
    assert (one.json()["id"], one.json()["stale"], one.json()["rtt_ms"]) == (silent, True, 0.7)
    assert (await client.get("/targets/999999/latest")).status_code == 404

    health = (await client.get("/health")).json()
    assert [t["id"] for t in health["stale_targets"]["items"]] == [silent, never]
    assert health["stale_targets"]["count"] == 2

    only_paused = await client.get("/results/latest", params={"state": "paused"})
    assert [i["id"] for i in only_paused.json()["items"]] == [paused]
    no_tag = await client.get("/results/latest", params={"tag": "other"})
    assert no_tag.json()["items"] == []


async def test_latest_of_three_thousand_targets_is_one_fast_query(
    own: tuple[httpx.AsyncClient, asyncpg.Pool],
) -> None:
    client, pool = own
    # A thousand each of IPs, hostnames and URLs.
    await pool.execute(
        "INSERT INTO targets (address, interval_ms, timeout_ms)"
        " SELECT ('127.88.0.0'::inet + n), 1000, 500 FROM generate_series(1, 1000) n;"
        "INSERT INTO targets (hostname, interval_ms, timeout_ms)"
        " SELECT 'h' || n || '.lab.test', 1000, 500 FROM generate_series(1, 1000) n;"
        "INSERT INTO targets (kind, url, interval_ms, timeout_ms)"
        " SELECT 'http', 'http://u' || n || '.lab.test/', 1000, 500"
        " FROM generate_series(1, 1000) n"
    )
    # Ten results each, the newest one second ago; names resolved before them,
    # and every http result with its details.
    await pool.execute(
        "INSERT INTO pings (target_id, ts, rtt_us, ttl, hops)"
        " SELECT t.id, now() - make_interval(secs => k), 1000 + k, 64, 0"
        " FROM targets t, generate_series(1, 10) k;"
        "INSERT INTO target_addresses (target_id, ts, address)"
        " SELECT id, now() - interval '1 minute', '127.89.0.1' FROM targets"
        " WHERE address IS NULL;"
        "INSERT INTO probe_details (target_id, ts, status, ttfb_us)"
        " SELECT p.target_id, p.ts, 200, 900 FROM pings p JOIN targets t ON t.id = p.target_id"
        " WHERE t.kind = 'http'"
    )
    await pool.execute(
        "ANALYZE targets; ANALYZE pings; ANALYZE target_addresses; ANALYZE probe_details"
    )
    await client.get("/results/latest")  # warm the plan cache and the pages
    timings = []
    for _ in range(3):
        started = time.perf_counter()
        response = await client.get("/results/latest")
        timings.append(time.perf_counter() - started)
    body = response.json()
    assert body["count"] == 3000
    assert {item["rtt_ms"] for item in body["items"]} == {1.001}
    assert all(item["address"] for item in body["items"])
    assert sum(item["detail"] is not None for item in body["items"]) == 1000
    best = min(timings)
    print(f"GET /results/latest over 3000 targets: {best * 1000:.0f} ms")
    assert best < 1.0, f"latest of 3000 targets took {best:.3f}s"


async def _named(pool: asyncpg.Pool, kind: str, column: str, value: str, **extra: object) -> int:
    """An active target probed by name (hostname or URL), last changed 10 min ago."""
    port = extra.get("port")
    target_id: int = await pool.fetchval(
        f"INSERT INTO targets (kind, {column}, port, interval_ms, timeout_ms, updated_at)"
        " VALUES ($1, $2, $3, 1000, 500, now() - interval '10 minutes') RETURNING id",
        kind,
        value,
        port,
    )
    return target_id


async def _resolved(pool: asyncpg.Pool, target_id: int, ago_s: float, address: str | None) -> None:
    await pool.execute(
        "INSERT INTO target_addresses (target_id, ts, address, error)"
        " VALUES ($1, now() - make_interval(secs => $2), $3::inet, $4)",
        target_id,
        ago_s,
        address,
        None if address else "NXDOMAIN",
    )


async def test_latest_shows_the_address_probed_why_a_name_fails_and_probe_details(
    own: tuple[httpx.AsyncClient, asyncpg.Pool],
) -> None:
    client, pool = own
    moved = await _named(pool, "icmp", "hostname", "moved.lab.test")
    await _resolved(pool, moved, 60, "127.0.0.7")
    await _ping(pool, moved, 40, 900)
    await _resolved(pool, moved, 30, "127.0.0.8")  # moved: the newest result went to .8
    await _ping(pool, moved, 1, 800)
    gone = await _named(pool, "icmp", "hostname", "gone.lab.test")
    await _resolved(pool, gone, 120, "127.0.0.9")
    await _ping(pool, gone, 100, 700)
    await _resolved(pool, gone, 90, None)  # no longer resolves: not probed since
    web = await _named(pool, "http", "url", "https://web.lab.test/health")
    await _resolved(pool, web, 60, "127.0.0.10")
    await _ping(pool, web, 1, 25_000)
    await pool.execute(
        "INSERT INTO probe_details (target_id, ts, status, ttfb_us, cert_expires_at, error)"
        " SELECT $1, ts, 503, 12500, '2030-01-02T03:04:05Z', 'status' FROM pings"
        " WHERE target_id = $1",
        web,
    )
    port = await _named(pool, "tcp", "hostname", "db.lab.test", port=5432)
    await _resolved(pool, port, 60, "127.0.0.11")
    await _ping(pool, port, 1, 300)  # a plain success has no detail row
    ip = await _target(pool, "192.0.2.7", "active", 600)
    await _ping(pool, ip, 1, 500)

    by_id = {i["id"]: i for i in (await client.get("/results/latest")).json()["items"]}
    assert (by_id[moved]["address"], by_id[moved]["resolve_error"]) == ("127.0.0.8", None)
    assert by_id[moved]["target"] == "moved.lab.test" and by_id[moved]["detail"] is None
    assert (by_id[gone]["address"], by_id[gone]["resolve_error"]) == ("127.0.0.9", "NXDOMAIN")
    assert by_id[gone]["stale"] is True and by_id[gone]["resolve_error_at"] is not None
    assert by_id[web]["address"] == "127.0.0.10"
    assert by_id[web]["detail"] == {
        "status": 503,
        "ttfb_ms": 12.5,
        "cert_expires_at": "2030-01-02T03:04:05Z",
        "error": "status",
    }
    assert (by_id[port]["address"], by_id[port]["detail"]) == ("127.0.0.11", None)
    assert (by_id[ip]["address"], by_id[ip]["resolve_error"]) == ("192.0.2.7", None)

    one = (await client.get(f"/targets/{gone}/latest")).json()
    assert (one["resolve_error"], one["stale"]) == ("NXDOMAIN", True)
    stale = (await client.get("/health")).json()["stale_targets"]["items"]
    assert [(t["id"], t["resolve_error"]) for t in stale] == [(gone, "NXDOMAIN")]

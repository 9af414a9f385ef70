"""POST /targets:bulk: per-item results, one transaction, and a thousand targets probed at once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest

from shared.settings import Settings
from tests.api_client import ADMIN, CommandTap, api_client, unique_address
from tests.fleet_support import pipeline


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(settings) as client:
        yield client


async def test_mixed_items_get_one_result_each_and_only_good_ones_are_created(
    client: httpx.AsyncClient, settings: Settings, pool: asyncpg.Pool
) -> None:
    taken = (
        await client.post("/targets", json={"address": unique_address()}, headers=ADMIN)
    ).json()
    good, other = unique_address(), unique_address()
    items: list[object] = [
        {"address": good, "name": "one", "tags": ["bulk"]},
        {"address": "not-an-ip!"},
        {"address": taken["address"]},
        {"kind": "tcp", "address": other, "port": 22},
        {"address": good},
        {"address": other, "interval": 1},
        "a string",
    ]
    async with CommandTap.open(settings) as tap:
        response = await client.post("/targets:bulk", json={"targets": items}, headers=ADMIN)
        assert response.status_code == 200, response.text
        body = response.json()
        published = await tap.take()
    results = body["results"]
    assert [(r["index"], r["status"]) for r in results] == [
        (0, 201),
        (1, 422),
        (2, 409),
        (3, 201),
        (4, 409),
        (5, 422),
        (6, 422),
    ]
    assert (body["created"], body["failed"]) == (2, 5)
    assert results[0]["target"]["name"] == "one" and results[0]["target"]["tags"] == ["bulk"]
    assert results[3]["target"]["port"] == 22
    assert results[1]["error"] == {
        "code": "invalid_input",
        "message": "address 'not-an-ip!' is not a literal IPv4 or IPv6 address"
        " (a host name goes in hostname)",
    }
    assert results[2]["error"]["message"] == (
        f"address {taken['address']} is already tracked by target {taken['id']}"
    )
    assert results[4]["error"] == {
        "code": "conflict",
        "message": f"address {good} is item 0 of this call too",
    }
    assert results[5]["error"]["message"] == "interval: unknown field"
    assert results[6]["error"]["code"] == "invalid_input"
    ids = [results[0]["target"]["id"], results[3]["target"]["id"]]
    assert sorted(c.spec.id for c in published) == sorted(ids)
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM targets WHERE address = ANY($1::inet[])", [good, other]
        )
        == 2
    )


async def test_more_than_the_cap_is_refused_whole(client: httpx.AsyncClient) -> None:
    items = [{"address": "127.0.0.1"}] * 5001
    response = await client.post("/targets:bulk", json={"targets": items}, headers=ADMIN)
    assert response.status_code == 422
    assert response.json()["error"]["message"] == "at most 5000 targets per call, got 5001"
    assert (await client.post("/targets:bulk", json={"targets": []})).status_code == 401


async def test_a_thousand_loopback_targets_in_one_call_are_all_probed_within_two_intervals() -> (
    None
):
    addresses = [f"127.77.{n // 250}.{n % 250 + 1}" for n in range(1000)]
    async with pipeline() as (settings, pool), api_client(settings) as client:
        started = time.monotonic()
        response = await client.post(
            "/targets:bulk",
            json={"targets": [{"address": a, "interval_s": 1.0} for a in addresses]},
            headers=ADMIN,
        )
        took = time.monotonic() - started
        assert response.status_code == 200, response.text
        assert response.json()["created"] == 1000
        created_at = await pool.fetchval("SELECT max(created_at) FROM targets")

        async def first_pings() -> list[asyncpg.Record]:
            return await pool.fetch(
                "SELECT t.id, min(p.ts) AS first FROM targets t JOIN pings p ON p.target_id = t.id"
                " GROUP BY t.id"
            )

        deadline = time.monotonic() + 10
        rows = await first_pings()
        while len(rows) < 1000 and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            rows = await first_pings()
        assert len(rows) == 1000, f"{len(rows)} of 1000 targets have a stored ping"
        late = [r["id"] for r in rows if (r["first"] - created_at).total_seconds() > 2.0]
        assert late == [], f"{len(late)} targets first probed more than two intervals late"
        lost = await pool.fetchval("SELECT count(*) FROM pings WHERE rtt_us IS NULL")
        assert lost == 0
    assert took < 5.0, f"bulk creation of 1000 took {took:.2f}s"

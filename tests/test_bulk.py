"""POST /targets:bulk: per-item results, one transaction, and a thousand targets probed at once."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest

from shared.settings import Settings
from tests.api_client import ADMIN, CommandTap, api_client, unique_address
from tests.fleet_support import pipeline

# Commands still queued behind the answer, or the next reconcile: well under this.
INTAKE_AFTER_ANSWER_US = 500_000
# A burst of sends is judged at one moment and leaves over a few milliseconds.
BURST_US = 50_000


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


async def test_a_thousand_targets_in_one_call_are_each_probed_at_their_first_slot_after_intake(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The bound the prober keeps: a target's first ping is at the first slot of
    its grid at or after the prober took it in (so within one interval), late
    by less than half an interval, or a whole interval later per slot it
    counted as skipped; and it takes a bulk in as soon as the API has answered.

    Measured from the prober's own record of when it took each target in, not
    from `created_at`: that is the transaction's start, before the insert, the
    commit and the publishing of 1000 commands, whose durations grow with load.
    """
    caplog.set_level(logging.INFO, logger="prober_service")
    caplog.set_level(logging.DEBUG, logger="prober_service.scheduler")  # last: sets the handler's
    addresses = [f"127.77.{n // 250}.{n % 250 + 1}" for n in range(1000)]
    async with pipeline() as (settings, pool), api_client(settings) as client:
        # Start-up (fleet join, command bindings) is not part of the bound.
        await _logged(caplog, "following target commands", 30.0)
        response = await client.post(
            "/targets:bulk",
            json={"targets": [{"address": a, "interval_s": 1.0} for a in addresses]},
            headers=ADMIN,
        )
        answered_us = time.time_ns() // 1000
        assert response.status_code == 200, response.text
        assert response.json()["created"] == 1000
        created_at = await pool.fetchval("SELECT max(created_at) FROM targets")

        async def first_pings() -> dict[int, int]:
            rows = await pool.fetch(
                "SELECT target_id, (extract(epoch FROM min(ts)) * 1000000)::bigint AS first"
                " FROM pings GROUP BY target_id"
            )
            return {r["target_id"]: r["first"] for r in rows}

        deadline = time.monotonic() + 10
        first = await first_pings()
        while len(first) < 1000 and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            first = await first_pings()
        assert len(first) == 1000, f"{len(first)} of 1000 targets have a stored ping"
        lost = await pool.fetchval("SELECT count(*) FROM pings WHERE rtt_us IS NULL")
        assert lost == 0
    taken = _taken_in(caplog)
    (stopped,) = [r for r in caplog.records if r.getMessage() == "prober stopped"]
    missed: dict[int, int] = vars(stopped)["missed_per_target"]
    assert sorted(taken) == sorted(first)
    assert min(t for t, _, _ in taken.values()) >= created_at.timestamp() * 1e6
    behind = max(t for t, _, _ in taken.values()) - answered_us
    assert behind <= INTAKE_AFTER_ANSWER_US, f"last taken in {behind / 1e6:.2f}s after the answer"
    off_slot = []
    for target_id, (taken_us, slot_us, interval_us) in taken.items():
        assert 0 <= slot_us - taken_us <= interval_us
        skipped, late = divmod(first[target_id] - slot_us, interval_us)
        if not (0 <= skipped <= missed.get(target_id, 0) and late <= interval_us // 2 + BURST_US):
            off_slot.append((target_id, skipped, late))
    assert off_slot == [], f"{len(off_slot)} first pings off their first slot: {off_slot[:5]}"


async def _logged(caplog: pytest.LogCaptureFixture, message: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not any(r.getMessage() == message for r in caplog.records):
        assert time.monotonic() < deadline, f"no {message!r} within {timeout}s"
        await asyncio.sleep(0.05)


def _taken_in(caplog: pytest.LogCaptureFixture) -> dict[int, tuple[int, int, int]]:
    """Per target, from the prober's log: when it was taken in, its first slot, its interval."""
    taken: dict[int, tuple[int, int, int]] = {}
    for r in caplog.records:
        if r.getMessage() == "target scheduled":
            f = vars(r)  # the `extra=` fields
            taken.setdefault(f["target_id"], (f["taken_us"], f["first_slot_us"], f["interval_us"]))
    return taken

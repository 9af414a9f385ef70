"""Hostname targets end to end: resolved by the tests' own override file, pinged,
an address change stored at the right time and shown as an event, and a name
that does not resolve recorded as such, never as loss."""

from __future__ import annotations

import os
import time
from pathlib import Path

import asyncpg
import pytest

from shared.settings import Settings
from tests.api_client import api_client
from tests.conftest import eventually
from tests.probe_stack import Targets, prober_and_writer

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="the prober's raw ICMP sockets need root"),
    pytest.mark.timeout(50),
]


@pytest.fixture
def database_url(own_database_url: str) -> str:
    """A prober runs here: a database of this test's own, holding only its targets."""
    return own_database_url


OLD, NEW = "127.0.9.1", "127.0.9.2"


async def test_hostname_is_pinged_and_its_address_change_is_an_event(
    settings: Settings, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text(f"{OLD} moving.pingtrack.test\n")
    tuned = settings.model_copy(
        update={
            "prober_id": "hostname-test",
            "hosts_file": hosts,
            "resolve_system": False,
            "resolve_interval_s": 0.3,
        }
    )
    targets = Targets(pool)
    moving = await targets.add(hostname="moving.pingtrack.test", interval_ms=200)
    lost = await targets.add(hostname="nowhere.pingtrack.test", interval_ms=200)
    try:
        async with prober_and_writer(tuned):

            async def pinged() -> int:
                n: int = await pool.fetchval(
                    "SELECT count(*) FROM pings WHERE target_id = $1 AND rtt_us IS NOT NULL",
                    moving,
                )
                return n >= 5

            await eventually(pinged, timeout=15)
            changed_after = time.time()
            hosts.write_text(f"{NEW} moving.pingtrack.test\n# moved\n")

            async def moved() -> bool:
                n = await pool.fetchval(
                    "SELECT count(*) FROM pings WHERE target_id = $1"
                    " AND host(target_address_at(target_id, ts)) = $2 AND rtt_us IS NOT NULL",
                    moving,
                    NEW,
                )
                return bool(n >= 5)

            await eventually(moved, timeout=15)
            changed_before = time.time()
    finally:
        await targets.end()

    records = await pool.fetch(
        "SELECT ts, host(address) AS address, error"
        " FROM target_addresses WHERE target_id = $1 ORDER BY ts",
        moving,
    )
    assert [(r["address"], r["error"]) for r in records] == [(OLD, None), (NEW, None)]
    switched = records[1]["ts"]
    assert changed_after <= switched.timestamp() <= changed_before
    counts = await pool.fetchrow(
        "SELECT count(*) FILTER (WHERE ts < $2) AS before, count(*) FILTER (WHERE ts >= $2)"
        " AS after, count(*) FILTER (WHERE rtt_us IS NULL) AS lost"
        " FROM pings WHERE target_id = $1",
        moving,
        switched,
    )
    assert counts["before"] >= 5 and counts["after"] >= 5
    assert counts["lost"] == 0  # loopback answers at either address

    # The name that never resolved: failures recorded, no ping (lost or not) stored.
    failures = await pool.fetch(
        "SELECT address, error FROM target_addresses WHERE target_id = $1", lost
    )
    assert len(failures) >= 3
    assert all(r["address"] is None and r["error"] == "name not found" for r in failures)
    assert await pool.fetchval("SELECT count(*) FROM pings WHERE target_id = $1", lost) == 0

    async with api_client(settings) as client:
        response = await client.get(f"/targets/{moving}/events")
    assert response.status_code == 200, response.text
    changes = [e for e in response.json()["events"] if e["kind"] == "address_change"]
    assert len(changes) == 1
    assert (changes[0]["old"], changes[0]["new"]) == (OLD, NEW)
    assert changes[0]["start"] == changes[0]["end"]
    assert changes[0]["start"] == switched.isoformat().replace("+00:00", "Z")

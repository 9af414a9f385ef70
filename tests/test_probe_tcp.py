"""TCP connect probes: connect time for an open port, the reason for a refused one."""

from __future__ import annotations

import asyncio
import os

import asyncpg
import pytest

from prober_service.probe_outcome import ProbeOutcome
from prober_service.probe_tcp import tcp_connect
from shared.settings import Settings
from tests.conftest import eventually
from tests.probe_stack import Targets, prober_and_writer, refused_port, responder, serve

pytestmark = pytest.mark.timeout(40)


@pytest.fixture
def database_url(own_database_url: str) -> str:
    """A prober runs here: a database of this test's own, holding only its targets."""
    return own_database_url


async def test_open_port_gives_a_positive_connect_time() -> None:
    async with serve(responder(200)) as server:
        outcome = await tcp_connect("127.0.0.1", server.port, False, 1.0)
    assert outcome.error is None
    assert outcome.rtt_us is not None and 0 < outcome.rtt_us < 1_000_000


async def test_refused_port_fails_with_refused() -> None:
    assert await tcp_connect("127.0.0.1", refused_port(), False, 1.0) == ProbeOutcome(
        None, "refused"
    )


async def test_ipv6_loopback_connects() -> None:
    server = await asyncio.start_server(responder(200), "::1", 0)
    try:
        outcome = await tcp_connect("::1", server.sockets[0].getsockname()[1], True, 1.0)
    finally:
        server.close()
        await server.wait_closed()
    assert outcome.rtt_us is not None and outcome.rtt_us > 0


@pytest.mark.skipif(os.geteuid() != 0, reason="the prober's ICMP sockets need root")
async def test_tcp_targets_are_stored_with_connect_time_or_reason(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    targets = Targets(pool)
    async with serve(responder(200)) as server:
        try:
            open_id = await targets.add(address="127.0.0.1", kind="tcp", port=server.port)
            closed_id = await targets.add(address="127.0.0.1", kind="tcp", port=refused_port())
            # Under the prober's floor (1 s by default): refused, never probed.
            fast_id = await targets.add(
                address="127.0.0.2", kind="tcp", port=server.port, interval_ms=200
            )
            async with prober_and_writer(settings.model_copy(update={"prober_id": "tcp-test"})):

                async def both_probed() -> bool:
                    counts = await pool.fetchval(
                        "SELECT count(DISTINCT target_id) FROM pings WHERE target_id = ANY($1)",
                        [open_id, closed_id],
                    )
                    return bool(counts == 2)

                await eventually(both_probed, timeout=15)
        finally:
            await targets.end()
    opened = await pool.fetch("SELECT rtt_us FROM pings WHERE target_id = $1", open_id)
    assert opened and all(r["rtt_us"] is not None and r["rtt_us"] > 0 for r in opened)
    assert (
        await pool.fetchval("SELECT count(*) FROM probe_details WHERE target_id = $1", open_id) == 0
    )
    refused = await pool.fetch(
        "SELECT p.rtt_us, d.error, d.status FROM pings p"
        " JOIN probe_details d USING (target_id, ts) WHERE p.target_id = $1",
        closed_id,
    )
    assert refused and all(r["rtt_us"] is None and r["error"] == "refused" for r in refused)
    assert all(r["status"] is None for r in refused)
    assert await pool.fetchval("SELECT count(*) FROM pings WHERE target_id = $1", fast_id) == 0

"""Commands of a large change all reach the broker, even when the API's event loop is busy."""

from __future__ import annotations

import asyncio
import time

from api_service.targets.publisher import CommandPublisher
from shared.broker import BrokerLink
from shared.codec import TargetSpec
from shared.constants import Topology
from shared.settings import Settings
from tests.api_client import CommandTap


def spec(target_id: int) -> TargetSpec:
    address = f"127.0.{target_id // 250}.{target_id % 250 + 1}"
    return TargetSpec(target_id, address, 1000, 500, "active", rev=1)


async def hog(stop: asyncio.Event, block_s: float, gap_s: float) -> None:
    """Other requests' synchronous work: the loop is blocked `block_s` every `gap_s`."""
    while not stop.is_set():
        time.sleep(block_s)  # noqa: ASYNC251 -- blocking the loop is the point
        await asyncio.sleep(gap_s)


async def test_a_busy_event_loop_drops_no_command_of_a_bulk_change(settings: Settings) -> None:
    # With a 0.5 s timeout and the loop blocked 0.1 s in every 0.11 s, the 256
    # confirms of a chunk take longer than 0.5 s, yet some arrive in every 0.5 s:
    # none may be given up (a deadline per message dropped about half of them).
    count = 1000
    broker = BrokerLink(settings.amqp_url)
    publisher = CommandPublisher(broker, Topology(settings.amqp_prefix), timeout_s=0.5)
    stop = asyncio.Event()
    async with CommandTap.open(settings) as tap:
        await publisher.publish_many([spec(count + 1)])  # connected before the loop gets busy
        busy = asyncio.create_task(hog(stop, 0.1, 0.01))
        try:
            started = time.monotonic()
            confirmed = await publisher.publish_many([spec(i) for i in range(1, count + 1)])
            took = time.monotonic() - started
        finally:
            stop.set()
            await busy
            await broker.close()
        received = await tap.take()
    assert took > 1.0, f"the loop was not busy enough to matter ({took:.2f}s)"
    assert confirmed == count and publisher.failed == 0
    assert sorted(p.spec.id for p in received) == list(range(1, count + 2))

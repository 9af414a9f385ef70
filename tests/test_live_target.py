"""Opt-in: ping a real address of the operator's network through the whole stack.

Skipped unless PINGTRACK_LIVE_TARGET names the address (for example the
local gateway, PINGTRACK_LIVE_TARGET=192.168.1.254). It sends one ping a
second for about five seconds, to that address only.
"""

from __future__ import annotations

import ipaddress
import itertools
import os
import time

import pytest

from tests.conftest import eventually
from tests.fleet_support import insert_targets, pipeline, stored

LIVE_TARGET = os.environ.get("PINGTRACK_LIVE_TARGET", "")

pytestmark = [
    pytest.mark.skipif(not LIVE_TARGET, reason="set PINGTRACK_LIVE_TARGET to an address to ping"),
    pytest.mark.skipif(os.geteuid() != 0, reason="the prober's raw ICMP sockets need root"),
    pytest.mark.timeout(40),
]


async def test_live_target_is_pinged_every_second_and_answers() -> None:
    address = str(ipaddress.ip_address(LIVE_TARGET))
    async with pipeline() as (settings, pool):
        [tid] = await insert_targets(settings.database_url, [address], 1000)
        started = time.time()

        async def five_stored() -> bool:
            return len(await stored(pool, tid)) >= 5

        await eventually(five_stored, timeout=12, interval=0.5)
        await pool.execute("UPDATE targets SET state = 'stopped', rev = rev + 1 WHERE id = $1", tid)
        rows = await stored(pool, tid)
    gaps = [b.ts - a.ts for a, b in itertools.pairwise(rows)]
    assert all(0.9 < gap < 1.1 for gap in gaps), gaps
    answered = [r for r in rows if r.rtt_ms is not None]
    assert answered, f"{address} never answered in {time.time() - started:.0f} s"
    assert all(r.hops is not None and 0 <= r.hops < 64 for r in answered)

"""A prober frozen while it holds the fleet lock does not stall the other members."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from prober_service.membership import EXPIRY_S
from shared.constants import SHARD_COUNT
from tests.conftest import eventually
from tests.fleet_support import fresh_database
from tests.test_fleet_membership import FLEET, Member

pytestmark = pytest.mark.timeout(40)
REPO = Path(__file__).resolve().parent.parent

# A member that stops its own process inside its second heartbeat's
# transaction, after taking the fleet lock (stats are asked for under it).
FREEZER = """
import asyncio, os, signal, sys
import asyncpg
from prober_service.membership import Membership
from tests.test_fleet_membership import Member

async def main() -> None:
    pool = await asyncpg.create_pool(sys.argv[1], min_size=1, max_size=1)
    member = Member(pool, "frozen", sys.argv[2])
    asked = member.membership._stats

    def stats() -> dict[str, int]:
        if member.rounds == 1:
            print("freezing", flush=True)
            os.kill(os.getpid(), signal.SIGSTOP)
        return asked()

    member.membership._stats = stats
    await member.membership.join()
    await member.membership.heartbeat()

asyncio.run(main())
"""


@pytest.fixture
async def dsn() -> AsyncIterator[str]:
    async with fresh_database() as dsn:
        yield dsn


def stopped(pid: int) -> bool:
    return Path(f"/proc/{pid}/stat").read_text().split()[2] == "T"


async def test_a_member_frozen_holding_the_fleet_lock_does_not_stall_the_others(
    dsn: str,
) -> None:
    child = subprocess.Popen(  # noqa: ASYNC220 -- started once, before anything is awaited
        [sys.executable, "-c", FREEZER, dsn, FLEET],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        text=True,
    )
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    try:
        assert child.stdout is not None
        assert await asyncio.to_thread(child.stdout.readline) == "freezing\n"
        await eventually(lambda: asyncio.sleep(0, stopped(child.pid)), timeout=5)
        other = Member(pool, "awake")

        async def took_over() -> bool:
            try:
                await other.membership.heartbeat()
            except (TimeoutError, asyncpg.PostgresError):
                return False  # the frozen member still holds the fleet lock
            return other.ownership.shards == frozenset(range(SHARD_COUNT))

        # The frozen member's session ends in half a lease, its row expires in
        # one expiry, and the other takes every shard. Before the fix every
        # round waited on the lock until the frozen member woke: never, here.
        await eventually(took_over, timeout=EXPIRY_S + 6, interval=0.2)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
        if child.stdout is not None:
            child.stdout.close()
        await pool.close()

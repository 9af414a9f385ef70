"""Membership rounds against the real PostgreSQL: claims, hand-overs, duplicates, outages."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from prober_service.membership import DuplicateProber, Membership
from prober_service.scheduler import Scheduler
from prober_service.shards import Ownership, assign
from shared.constants import SHARD_COUNT
from tests.conftest import eventually
from tests.fleet_support import fresh_database
from tests.tcp_proxy import TcpProxy

pytestmark = pytest.mark.timeout(30)
FLEET = "pt-membership"


class Idle:
    def send(self, target_id: int, address: str, ipv6: bool, timeout_ns: int) -> None:
        raise AssertionError("no targets here")


class Member:
    def __init__(self, pool: asyncpg.Pool, name: str, fleet: str = FLEET, **timing: float) -> None:
        self.ownership = Ownership()
        self.changes: list[tuple[frozenset[int], frozenset[int]]] = []
        self.rounds = 0  # heartbeat rounds that reached the database (they ask for stats)
        scheduler = Scheduler(Idle(), self.ownership.owns, self.ownership.may_send)

        async def on_change(added: frozenset[int], removed: frozenset[int]) -> None:
            self.changes.append((added, removed))

        def stats() -> dict[str, int]:
            self.rounds += 1
            return {"targets": 0}

        self.membership = Membership(
            pool,
            fleet,
            name,
            self.ownership,
            scheduler,
            on_change,
            stats,
            **timing,
        )


@pytest.fixture
async def dsn() -> AsyncIterator[str]:
    async with fresh_database() as dsn:
        yield dsn


@pytest.fixture
async def pool(dsn: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=4)
    yield pool
    await pool.close()


async def test_a_newcomer_gets_its_share_only_after_the_old_owner_lets_go(
    pool: asyncpg.Pool,
) -> None:
    a, b = Member(pool, "a"), Member(pool, "b")
    await a.membership.join()
    assert a.ownership.shards == frozenset(range(SHARD_COUNT))
    await b.membership.join()
    assert b.ownership.shards == frozenset()  # a still lists everything
    await a.membership.heartbeat()
    share = assign(["a", "b"])
    assert a.ownership.shards == share["a"]
    await b.membership.heartbeat()
    assert b.ownership.shards == share["b"]
    assert b.changes[-1] == (share["b"], frozenset())

    # A clean leave hands everything back at the next round of the other.
    await b.membership.leave()
    assert b.ownership.shards == frozenset()
    await a.membership.heartbeat()
    assert a.ownership.shards == frozenset(range(SHARD_COUNT))


async def test_two_live_probers_with_one_id_are_refused(pool: asyncpg.Pool) -> None:
    first = Member(pool, "same", heartbeat_s=0.1, expiry_s=1.0)
    await first.membership.join()
    beating = asyncio.create_task(first.membership.run())
    try:
        second = Member(pool, "same", heartbeat_s=0.1, expiry_s=1.0)
        with pytest.raises(DuplicateProber, match="PINGTRACK_PROBER_ID"):
            await second.membership.join()
        # Another fleet (another broker prefix) may use the id.
        await Member(pool, "same", fleet="pt-other").membership.join()
    finally:
        beating.cancel()
        await asyncio.gather(beating, return_exceptions=True)


async def test_a_restart_under_the_same_id_takes_over_once_the_old_row_expires(
    pool: asyncpg.Pool,
) -> None:
    await Member(pool, "again", heartbeat_s=0.1, expiry_s=1.0).membership.join()
    # The first life died without leaving (kill -9): its row lists every shard.
    loop = asyncio.get_running_loop()
    started = loop.time()
    restarted = Member(pool, "again", heartbeat_s=0.1, expiry_s=1.0)
    await restarted.membership.join()
    assert 0.8 < loop.time() - started < 1.6
    assert restarted.ownership.shards == frozenset(range(SHARD_COUNT))


async def test_a_database_outage_keeps_the_prober_sending(dsn: str) -> None:
    parts = urlsplit(dsn)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    await proxy.start()
    proxied = urlunsplit(parts._replace(netloc=f"{parts.username}@127.0.0.1:{proxy.port}"))
    cut_pool = await asyncpg.create_pool(proxied, min_size=1, max_size=1)
    member = Member(cut_pool, "lonely", heartbeat_s=0.1, expiry_s=1.2)
    runner = asyncio.create_task(member.membership.run())
    try:
        await member.membership.join()
        joined_rounds = member.rounds

        async def beating() -> bool:
            return member.rounds >= joined_rounds + 2

        await eventually(beating, timeout=5)
        assert member.ownership.may_send()
        await proxy.cut()
        # Well past the lease of the last good heartbeat (0.9 s): the failing
        # rounds keep renewing it, since this process is alive. A sleep on purpose:
        # it is the outage under test (a longer one on a loaded machine proves as much).
        await asyncio.sleep(2.0)
        assert member.ownership.may_send()
        assert member.ownership.shards == frozenset(range(SHARD_COUNT))
        # Whereas a process that stops heartbeating at all (hung) loses it.
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        # A sleep on purpose: the lease (0.9 s from the last renewal) runs out meanwhile.
        await asyncio.sleep(1.2)
        assert not member.ownership.may_send()
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        await proxy.stop()
        cut_pool.terminate()

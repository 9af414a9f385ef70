"""Probers as a fleet of real processes: shared targets, failover, rebalancing."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from prober_service.schedule import phase_us
from prober_service.shards import assign
from shared.constants import shard_of
from tests.conftest import eventually
from tests.fleet_support import (
    ResultTap,
    fresh_database,
    insert_targets,
    live_shards,
    prober_process,
    result_tap,
)
from tests.stack import ServiceProcess

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="the prober's raw ICMP sockets need root"),
    pytest.mark.timeout(80),
]

INTERVAL_S = 0.5


def now_us() -> int:
    return time.time_ns() // 1000


def double_pings(tap: ResultTap, targets: list[int]) -> list[tuple[int, int, list[str]]]:
    """Pings of one target in the same slot of its epoch-anchored grid.

    Sends are never early, and a send later than an interval skips its slot,
    so two pings in one slot mean two probers (or one, twice) pinged it.
    """
    interval_us = int(INTERVAL_S * 1e6)
    found = []
    for tid in targets:
        by_slot: dict[int, list[str]] = {}
        for row in tap.of(tid):
            slot = (row.ts_us - phase_us(tid, interval_us)) // interval_us
            by_slot.setdefault(slot, []).append(row.prober)
        found += [(tid, slot, probers) for slot, probers in by_slot.items() if len(probers) > 1]
    return found


def pinged_by(tap: ResultTap, tid: int, after_us: int) -> set[str]:
    return {r.prober for r in tap.of(tid, after_us)}


def owners(shards: dict[str, frozenset[int]], targets: list[int]) -> set[str]:
    return {p for p, held in shards.items() if any(shard_of(tid) in held for tid in targets)}


async def delivered_past(tap: ResultTap, probers: set[str], mark_us: int) -> None:
    """Wait until each of `probers` has delivered a result of a ping sent after `mark_us`.

    A prober publishes its results in order into one queue, so by then every
    result it had of a ping sent before `mark_us` is in the tap too.
    """

    async def check() -> bool:
        past = {r.prober for rows in tap.rows.values() for r in rows if r.ts_us > mark_us}
        return probers <= past

    await eventually(check, timeout=10, interval=0.1)


@pytest.fixture
async def fleet_db() -> AsyncIterator[str]:
    async with fresh_database() as dsn:
        yield dsn


async def fleet_settles(dsn: str, prefix: str, members: set[str]) -> dict[str, frozenset[int]]:
    """Wait until exactly `members` are live, each listing the shards assigned to it."""
    expected = assign(members)

    async def check() -> dict[str, frozenset[int]] | None:
        shards = await live_shards(dsn, prefix)
        return shards if shards == expected else None

    settled = await eventually(check, timeout=15, interval=0.2)
    assert isinstance(settled, dict)
    return settled


async def test_probers_share_fail_over_and_rebalance_without_double_pings(
    fleet_db: str, tmp_path: Path
) -> None:
    prefix = f"pt-fleet-{uuid.uuid4().hex[:8]}"
    targets = await insert_targets(
        fleet_db, [f"127.0.9.{i}" for i in range(1, 61)], int(INTERVAL_S * 1000)
    )
    processes: dict[str, ServiceProcess] = {}
    async with result_tap(prefix) as tap:
        try:
            for name in ("p1", "p2", "p3"):
                processes[name] = prober_process(fleet_db, prefix, name, tmp_path)
            shards = await fleet_settles(fleet_db, prefix, {"p1", "p2", "p3"})
            owner = {
                tid: next(p for p, s in shards.items() if shard_of(tid) in s) for tid in targets
            }

            # Steady state: every target pinged, each by its owner alone.
            steady = now_us() + 300_000

            async def each_pinged_five_times() -> bool:
                return all(len(tap.of(tid, steady)) >= 5 for tid in targets)

            await eventually(each_pinged_five_times, timeout=15, interval=0.1)
            for tid in targets:
                assert pinged_by(tap, tid, steady) == {owner[tid]}, (tid, tap.of(tid))
            assert {owner[tid] for tid in targets} == {"p1", "p2", "p3"}

            # kill -9: the survivors take p3's targets within 10 s.
            orphans = [tid for tid in targets if owner[tid] == "p3"]
            processes["p3"].kill()
            killed = now_us()

            async def orphans_resumed() -> bool:
                return all(pinged_by(tap, tid, killed) - {"p3"} for tid in orphans)

            await eventually(orphans_resumed, timeout=10, interval=0.1)
            resumed_after_s = [
                (min(r.ts_us for r in tap.of(tid, killed) if r.prober != "p3") - killed) / 1e6
                for tid in orphans
            ]
            assert max(resumed_after_s) < 10.0, resumed_after_s
            await fleet_settles(fleet_db, prefix, {"p1", "p2"})

            # A fourth prober joins: the load spreads to it.
            processes["p4"] = prober_process(fleet_db, prefix, "p4", tmp_path)
            shards = await fleet_settles(fleet_db, prefix, {"p1", "p2", "p4"})
            joined = now_us()
            mine = [tid for tid in targets if shard_of(tid) in shards["p4"]]
            assert mine

            async def p4_pings_them() -> bool:
                return all(len(tap.of(tid, joined + 700_000)) >= 2 for tid in mine)

            await eventually(p4_pings_them, timeout=10, interval=0.1)
            # What the old owners sent until then has landed as well.
            await delivered_past(tap, owners(shards, targets), now_us())
            assert all(pinged_by(tap, tid, joined + 700_000) == {"p4"} for tid in mine)

            # A clean stop hands over at once (no expiry wait).
            handed = [tid for tid in targets if shard_of(tid) in shards["p1"]]
            assert processes["p1"].stop() == 0, processes["p1"].log()
            stopped = now_us()
            shards = await fleet_settles(fleet_db, prefix, {"p2", "p4"})

            async def handed_over() -> bool:
                return all(pinged_by(tap, tid, stopped) - {"p1"} for tid in handed)

            await eventually(handed_over, timeout=4, interval=0.1)
            # The last batches of everyone arrive (p1 flushed its own before exiting).
            await delivered_past(tap, owners(shards, targets), now_us())
            assert double_pings(tap, targets) == []
        finally:
            for process in processes.values():
                if process.process is not None and process.process.poll() is None:
                    process.stop()


async def test_a_hung_prober_loses_its_targets_and_sends_nothing_stale_on_waking(
    fleet_db: str, tmp_path: Path
) -> None:
    prefix = f"pt-fleet-{uuid.uuid4().hex[:8]}"
    targets = await insert_targets(
        fleet_db, [f"127.0.10.{i}" for i in range(1, 31)], int(INTERVAL_S * 1000)
    )
    processes: dict[str, ServiceProcess] = {}
    async with result_tap(prefix) as tap:
        try:
            for name in ("h1", "h2"):
                processes[name] = prober_process(fleet_db, prefix, name, tmp_path)
            shards = await fleet_settles(fleet_db, prefix, {"h1", "h2"})
            settled = now_us()
            frozen = [tid for tid in targets if shard_of(tid) in shards["h2"]]
            assert frozen

            async def h2_pings_them() -> bool:
                return all("h2" in pinged_by(tap, tid, settled) for tid in frozen)

            # It hangs in the middle of pinging its share.
            await eventually(h2_pings_them, timeout=10, interval=0.1)
            hung = processes["h2"].process
            assert hung is not None
            hung.send_signal(signal.SIGSTOP)
            stopped = now_us()

            async def taken_over() -> bool:
                return all(pinged_by(tap, tid, stopped) == {"h1"} for tid in frozen)

            await eventually(taken_over, timeout=10, interval=0.1)
            # A sleep on purpose: the hang (the fault) lasts on while h1 pings its share.
            await asyncio.sleep(1.0)
            hung.send_signal(signal.SIGCONT)
            # It wakes, learns h1 holds its shards, lets them go; then takes its share back.
            await fleet_settles(fleet_db, prefix, {"h1", "h2"})
            back = now_us()

            async def returned() -> bool:
                return all(pinged_by(tap, tid, back + 700_000) == {"h2"} for tid in frozen)

            await eventually(returned, timeout=5, interval=0.1)
            assert double_pings(tap, targets) == []
        finally:
            for process in processes.values():
                if process.process is not None and process.process.poll() is None:
                    process.process.send_signal(signal.SIGCONT)
                    process.stop()

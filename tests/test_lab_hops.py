"""Real hops and shaped answers: lab targets behind routers, stored through prober and writer."""

from __future__ import annotations

import statistics
import time

import asyncpg
import pytest

from tests.conftest import eventually
from tests.fleet_support import Stored, insert_targets, pipeline, stored
from tests.netlab import NetLab, needs_netlab
from tests.responder import Responder

pytestmark = [needs_netlab, pytest.mark.slow, pytest.mark.timeout(60)]

INTERVAL_MS = 100


async def until_stored_after(pool: asyncpg.Pool, target_id: int, after: float) -> list[Stored]:
    async def check() -> list[Stored] | None:
        rows = await stored(pool, target_id)
        return rows if rows and rows[-1].ts > after else None

    rows = await eventually(check, timeout=10, interval=0.2)
    assert isinstance(rows, list)
    return rows


async def test_targets_one_two_and_three_routers_away_show_those_hops() -> None:
    with NetLab() as lab:
        paths = [lab.chain(hops) for hops in (1, 2, 3)]
        async with pipeline() as (settings, pool):
            ids = await insert_targets(settings.database_url, [p.address for p in paths], 100)
            started = time.time()
            for path, tid in zip(paths, ids, strict=True):
                rows = await until_stored_after(pool, tid, started + 1.0)
                assert len(rows) >= 5
                assert {r.hops for r in rows} == {path.hops}, path
                assert {r.ttl for r in rows} == {64 - path.hops}
                assert all(r.rtt_ms is not None and r.rtt_ms < 20 for r in rows)


async def test_a_route_change_shows_as_a_hop_change_at_that_moment() -> None:
    with NetLab() as lab:
        path = lab.chain(2)
        shortcut = lab.shortcut(path, 1)  # root straight to the last router
        async with pipeline() as (settings, pool):
            [tid] = await insert_targets(settings.database_url, [path.address], INTERVAL_MS)
            await until_stored_after(pool, tid, time.time() + 1.0)
            before = time.time()
            lab.route_via(path.address, shortcut)
            after = time.time()
            rows = await until_stored_after(pool, tid, after + 1.0)
    assert {r.hops for r in rows if r.ts < before} == {2}
    assert {r.hops for r in rows if r.ts > after} == {1}
    # The change sits between the two moments, one ping at most unsure.
    last_two = max(r.ts for r in rows if r.hops == 2)
    first_one = min(r.ts for r in rows if r.hops == 1)
    assert before - INTERVAL_MS / 1000 < last_two < first_one < after + INTERVAL_MS / 1000


async def test_a_latency_step_a_loss_burst_and_a_ttl_change_are_recorded_when_played() -> None:
    with NetLab() as lab:
        path = lab.chain(1)
        start = time.time() + 1.5
        profile = {
            "start": start,
            "phases": [
                {"at": 0, "latency_ms": 0, "loss": 0, "ttl": 64},
                {"at": 1.5, "latency_ms": 40},
                {"at": 3.0, "loss": 1},
                {"at": 4.0, "loss": 0, "latency_ms": 0, "ttl": 50},
            ],
        }
        with Responder(path.target, profile):
            async with pipeline() as (settings, pool):
                [tid] = await insert_targets(settings.database_url, [path.address], INTERVAL_MS)
                rows = await until_stored_after(pool, tid, start + 5.0)
    # Scheduling error: a request arrives within a few ms of its send time.
    margin = 0.02

    def within(lo: float, hi: float) -> list[Stored]:
        return [r for r in rows if start + lo + margin < r.ts < start + hi - margin]

    quiet, slow, lost, back = within(0, 1.5), within(1.5, 3.0), within(3.0, 4.0), within(4.0, 5.0)
    assert len(quiet) >= 10 and len(slow) >= 12 and len(lost) >= 8 and len(back) >= 8
    assert all(r.rtt_ms is not None and r.rtt_ms < 35 and r.hops == 1 for r in quiet)
    assert statistics.median(r.rtt_ms or 0 for r in quiet) < 5
    # The responder answers late under load, never early: bound the typical value tightly.
    slow_rtts = sorted(r.rtt_ms for r in slow if r.rtt_ms is not None)
    assert len(slow_rtts) == len(slow) and slow_rtts[0] >= 40 and slow_rtts[-1] < 250
    assert 40 <= statistics.median(slow_rtts) < 45
    assert all(r.rtt_ms is None for r in lost)
    # TTL 50 from the target, one router on the way: 49, guessed 64 - 49 = 15 hops.
    assert all(r.rtt_ms is not None and r.rtt_ms < 35 and r.ttl == 49 for r in back)
    assert statistics.median(r.rtt_ms or 0 for r in back) < 5
    assert {r.hops for r in back} == {15}

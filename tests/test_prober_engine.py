"""The ICMP engine against real sockets: loopback, a silent lab host, datagram mode."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import pytest

from prober_service.engine import Pinger
from prober_service.icmp_socket import IcmpUnavailable, open_icmp_socket
from prober_service.scheduler import Scheduler
from shared.codec import TargetSpec
from tests.netlab import NetLab, needs_netlab

needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="raw ICMP sockets need root (or CAP_NET_RAW)"
)
pytestmark = pytest.mark.timeout(30)

MS = 1_000_000  # ns


@dataclass(frozen=True)
class Result:
    target_id: int
    ts_us: int
    rtt_us: int | None
    ttl: int | None
    hops: int | None
    seen_us: int  # wall time the sink got it


class Results(list[Result]):
    def __call__(
        self, target_id: int, ts_us: int, rtt: int | None, ttl: int | None, hops: int | None
    ) -> None:
        self.append(Result(target_id, ts_us, rtt, ttl, hops, time.time_ns() // 1000))

    def of(self, target_id: int) -> list[Result]:
        return [r for r in self if r.target_id == target_id]


@pytest.fixture
async def pinger() -> AsyncIterator[tuple[Pinger, Results]]:
    results = Results()
    engine = Pinger(results, mode="raw")
    engine.open()
    reaper = asyncio.create_task(engine.run())
    yield engine, results
    reaper.cancel()
    await asyncio.gather(reaper, return_exceptions=True)
    engine.close()


def target(target_id: int, address: str, interval_ms: int, timeout_ms: int) -> TargetSpec:
    return TargetSpec(target_id, address, interval_ms, timeout_ms, "active", 1)


async def run_schedule(engine: Pinger, specs: list[TargetSpec], seconds: float) -> None:
    scheduler = Scheduler(engine)
    for spec in specs:
        scheduler.apply(spec)
    task = asyncio.create_task(scheduler.run())
    await asyncio.sleep(seconds)
    scheduler.stop()
    await task
    await engine.drain(2.0)


@needs_root
@pytest.mark.parametrize(("address", "ipv6"), [("127.0.0.1", False), ("::1", True)])
async def test_loopback_answers_with_small_rtt_ttl_64_and_no_hops(
    pinger: tuple[Pinger, Results], address: str, ipv6: bool
) -> None:
    engine, results = pinger
    before_us = time.time_ns() // 1000
    for _ in range(5):
        engine.send(1, address, ipv6, 1000 * MS)
        await asyncio.sleep(0.02)
    await engine.drain(2.0)
    assert engine.modes == {"ipv4": "raw", "ipv6": "raw"}
    assert len(results) == 5
    for r in results:
        assert r.rtt_us is not None and 0 < r.rtt_us < 20_000
        assert (r.ttl, r.hops) == (64, 0)
        assert before_us <= r.ts_us <= time.time_ns() // 1000
    assert engine.sent[1] == engine.emitted[1] == 5
    assert engine.stats.lost == 0


@needs_root
async def test_pings_at_a_tenth_of_a_second_arrive_at_that_rate(
    pinger: tuple[Pinger, Results],
) -> None:
    engine, results = pinger
    await run_schedule(engine, [target(11, "127.0.0.11", 100, 500)], 2.0)
    mine = sorted(results.of(11), key=lambda r: r.ts_us)
    assert len(mine) in (19, 20, 21)
    assert engine.sent[11] == engine.emitted[11] == len(mine)
    assert all(r.rtt_us is not None for r in mine)
    gaps = [b.ts_us - a.ts_us for a, b in itertools.pairwise(mine)]
    # On the grid: every gap is one interval, give or take the loop's wake-up jitter.
    assert all(60_000 <= gap <= 140_000 for gap in gaps), gaps
    # No drift: N-1 intervals from first to last.
    assert abs(mine[-1].ts_us - mine[0].ts_us - 100_000 * (len(mine) - 1)) < 40_000


@needs_root
async def test_many_targets_each_get_their_own_results(pinger: tuple[Pinger, Results]) -> None:
    engine, results = pinger
    specs = [target(i, f"127.0.{i // 200}.{i % 200 + 1}", 200, 500) for i in range(1, 301)]
    specs += [target(1000 + i, "::1", 200, 500) for i in range(5)]
    await run_schedule(engine, specs, 1.0)
    assert engine.stats.lost == 0 and engine.stats.unmatched == 0
    for spec in specs:
        assert engine.emitted[spec.id] == engine.sent[spec.id] >= 4
    assert sum(engine.emitted.values()) == len(results)


@needs_root
async def test_a_raw_socket_ignores_replies_to_another_prober(
    pinger: tuple[Pinger, Results],
) -> None:
    engine, results = pinger
    other_results = Results()
    other = Pinger(other_results, mode="raw")
    other.open()
    try:
        for _ in range(5):
            engine.send(1, "127.0.0.1", False, 500 * MS)
            other.send(1, "127.0.0.1", False, 500 * MS)
            await asyncio.sleep(0.02)
        await engine.drain(2.0)
        await other.drain(2.0)
    finally:
        other.close()
    assert len(results) == len(other_results) == 5
    assert all(r.rtt_us is not None for r in [*results, *other_results])
    assert engine.stats.ignored >= 5 and other.stats.ignored >= 5


@pytest.fixture
def silent_host() -> Iterator[str]:
    with NetLab() as lab:
        yield lab.host(echo_replies=False).address


@needs_root
@needs_netlab
async def test_a_host_that_never_answers_gives_lost_results_at_the_interval(
    pinger: tuple[Pinger, Results], silent_host: str
) -> None:
    engine, results = pinger
    await run_schedule(engine, [target(21, silent_host, 200, 150)], 1.2)
    mine = results.of(21)
    assert len(mine) in (5, 6, 7)
    assert all((r.rtt_us, r.ttl, r.hops) == (None, None, None) for r in mine)
    gaps = [b.ts_us - a.ts_us for a, b in itertools.pairwise(mine)]
    assert all(150_000 <= gap <= 250_000 for gap in gaps), gaps
    # Each loss is reported as its timeout passes, not all at the end.
    assert all(150_000 <= r.seen_us - r.ts_us < 300_000 for r in mine)
    assert engine.stats.lost == len(mine)


DGRAM_SCRIPT = """
import asyncio, json
from prober_service.engine import Pinger

async def main():
    results = []
    engine = Pinger(lambda *r: results.append(r), mode="dgram")
    engine.open()
    engine.send(1, "127.0.0.1", False, 1_000_000_000)
    engine.send(2, "::1", True, 1_000_000_000)
    await engine.drain(3.0)
    modes = engine.modes
    engine.close()
    print(json.dumps({"modes": modes, "results": sorted(results)}))

asyncio.run(main())
"""


@needs_netlab
def test_datagram_mode_pings_where_ping_group_range_allows() -> None:
    with NetLab() as lab:
        ns = lab.namespace()  # its own sysctl, so the host's setting is left alone
        ns.sysctl("net.ipv4.ping_group_range", "0 2147483647")
        out = json.loads(ns.run(sys.executable, "-c", DGRAM_SCRIPT))
    assert out["modes"] == {"ipv4": "dgram", "ipv6": "dgram"}
    assert [r[0] for r in out["results"]] == [1, 2]
    for _, _, rtt, ttl, hops in out["results"]:
        assert rtt is not None and rtt > 0
        assert (ttl, hops) == (64, 0)


DENIED_SCRIPT = """
from prober_service.icmp_socket import IcmpUnavailable, open_icmp_socket
try:
    open_icmp_socket(ipv6=False, mode="dgram")
except IcmpUnavailable as exc:
    print(exc)
"""


@needs_netlab
def test_datagram_mode_fails_clearly_when_ping_group_range_forbids() -> None:
    with NetLab() as lab:
        ns = lab.namespace()
        ns.sysctl("net.ipv4.ping_group_range", "1 0")
        message = ns.run(sys.executable, "-c", DENIED_SCRIPT)
    assert "no IPv4 ICMP socket" in message and "ping_group_range" in message


def test_unknown_mode_is_refused() -> None:
    with pytest.raises(IcmpUnavailable, match="unknown ICMP mode"):
        open_icmp_socket(ipv6=False, mode="tcp")

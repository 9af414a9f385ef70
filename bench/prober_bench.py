"""Prober engine throughput: N loopback targets at 1 s, ours against fping, same run.

    .venv/bin/python bench/prober_bench.py --targets 1000 10000 30000 --seconds 25

For each N: the prober's Scheduler + Pinger (no broker; results go into a
ResultBatch as the publisher would hold them) ping 127.x.y.z targets at a 1 s
interval. After a warm-up of one interval it measures achieved pings/s, loss,
send lateness against each target's ideal slot (p50/p99/max) and CPU (this
process's user+sys over wall time). Then fping pings the same addresses for
the same time (`-c <seconds> -p 1000 -i <1000/N ms> -q`), as the reference.
Needs root (raw ICMP).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import resource
import subprocess
import sys
import time
from array import array
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _calibration import print_header

from prober_service.engine import Pinger
from prober_service.schedule import phase_us
from prober_service.scheduler import Scheduler
from shared.codec import ResultBatch, TargetSpec
from tests.egress_guard import ensure_guarded

INTERVAL_MS = 1000


def loopback(n: int) -> list[str]:
    """n distinct 127.x.y.z addresses (no .0 or .255 last octet)."""
    out = []
    i = 0
    while len(out) < n:
        a, b, c = 1 + i // (254 * 256), i // 254 % 256, i % 254 + 1
        out.append(f"127.{a}.{b}.{c}")
        i += 1
    return out


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def percentile(sorted_values: list[int], q: float) -> int:
    if not sorted_values:
        return 0
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


@dataclass
class Figures:
    tool: str
    targets: int
    sent: int
    received: int
    seconds: float
    cpu_s: float
    late_p50_us: int | None = None
    late_p99_us: int | None = None
    late_max_us: int | None = None

    def line(self) -> str:
        rate = self.sent / self.seconds
        loss = 100.0 * (1 - self.received / self.sent) if self.sent else 100.0
        cpu_pct = 100.0 * self.cpu_s / self.seconds
        per_ping = 1e6 * self.cpu_s / self.sent if self.sent else float("nan")
        late = ""
        if self.late_p50_us is not None:
            late = (
                f" late p50 {self.late_p50_us / 1000:.2f} ms p99 {self.late_p99_us / 1000:.2f} ms"
                f" max {self.late_max_us / 1000:.1f} ms"
            )
        return (
            f"{self.tool:7} N={self.targets:6} {rate:8.0f} pings/s (ideal {self.targets})"
            f" loss {loss:5.2f}% cpu {cpu_pct:5.1f}% {per_ping:5.1f} µs/ping{late}"
        )


async def ours(addresses: list[str], seconds: float) -> Figures:
    interval_us = INTERVAL_MS * 1000
    phases = [0] + [phase_us(tid, interval_us) for tid in range(1, len(addresses) + 1)]
    batch = ResultBatch()
    lateness = array("q")
    measuring = False
    start_us = 0
    stats = {"sent": 0, "received": 0}

    def sink(tid: int, ts_us: int, rtt: int | None, ttl: int | None, hops: int | None) -> None:
        batch.append(tid, ts_us, rtt, ttl, hops)
        if measuring and ts_us >= start_us:
            lateness.append((ts_us - phases[tid]) % interval_us)
            stats["sent"] += 1
            stats["received"] += rtt is not None

    pinger = Pinger(sink, mode="raw")
    pinger.open()
    scheduler = Scheduler(pinger)
    for tid, address in enumerate(addresses, 1):
        scheduler.apply(TargetSpec(tid, address, INTERVAL_MS, 1000, "active", 1))
    tasks = [asyncio.create_task(pinger.run()), asyncio.create_task(scheduler.run())]
    try:
        await asyncio.sleep(INTERVAL_MS / 1000 + 0.5)  # every target has started
        measuring, start_us = True, time.time_ns() // 1000
        batch.__init__()  # type: ignore[misc]
        cpu0, wall0 = cpu_s(), time.monotonic()
        await asyncio.sleep(seconds)
        measuring = False
        cpu, wall = cpu_s() - cpu0, time.monotonic() - wall0
        end_us = start_us + int(wall * 1e6)
        await asyncio.sleep(1.2)  # the last replies or timeouts
    finally:
        scheduler.stop()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        pinger.close()
    # Count only pings sent inside the window (replies may come just after it).
    in_window = [ts for ts in batch.ts if start_us <= ts < end_us]
    late = sorted(lateness)
    return Figures(
        "pinger",
        len(addresses),
        len(in_window),
        sum(
            1
            for ts, rtt in zip(batch.ts, batch.rtt, strict=True)
            if start_us <= ts < end_us and rtt is not None
        ),
        wall,
        cpu,
        percentile(late, 0.5),
        percentile(late, 0.99),
        late[-1] if late else 0,
    )


_FPING_LINE = re.compile(r"xmt/rcv/%loss = (\d+)/(\d+)/")


def fping(addresses: list[str], seconds: float) -> Figures:
    count = max(1, int(seconds))
    gap_ms = max(0.01, INTERVAL_MS / len(addresses))
    command = ["fping", "-q", "-c", str(count), "-p", str(INTERVAL_MS), "-i", f"{gap_ms:.3f}"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall0 = time.monotonic()
    done = subprocess.run(
        command, input="\n".join(addresses), capture_output=True, text=True, check=False
    )
    wall = time.monotonic() - wall0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    sent = received = 0
    for match in _FPING_LINE.finditer(done.stderr):
        sent += int(match.group(1))
        received += int(match.group(2))
    if done.returncode not in (0, 1) or not sent:  # 1: some targets unreachable
        tail = done.stderr.strip().splitlines()[-3:]
        print(f"fping exited {done.returncode}: {tail}", file=sys.stderr)
    return Figures("fping", len(addresses), sent, received, wall, cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=int, nargs="+", default=[1000, 10000, 30000])
    parser.add_argument("--seconds", type=float, default=25.0)
    parser.add_argument("--no-fping", action="store_true")
    args = parser.parse_args()
    print_header()
    for n in args.targets:
        addresses = loopback(n)
        print(asyncio.run(ours(addresses, args.seconds)).line(), flush=True)
        if not args.no_fping:
            print(fping(addresses, args.seconds).line(), flush=True)


if __name__ == "__main__":
    ensure_guarded()  # nothing a benchmark does may leave the machine
    main()

"""The machine a benchmark ran on, printed before its figures.

Machines of one kind differ up to 3x in per-core speed, so every script under
bench/ starts with this header: a figure means something only beside the
Python loop time, a syscall's cost, the load and the PostgreSQL settings of
the same run.
"""

from __future__ import annotations

import asyncio
import os
import platform
import time

import asyncpg

LOOP_STEPS = 10_000_000
SYSCALLS = 200_000
# Settings that move the benchmarks' figures.
PG_SETTINGS = (
    "shared_buffers",
    "work_mem",
    "maintenance_work_mem",
    "synchronous_commit",
    "wal_level",
    "max_wal_size",
    "jit",
    "max_parallel_workers_per_gather",
)


def python_loop_s(steps: int = LOOP_STEPS) -> float:
    """Seconds for a `for` loop of one addition per step (2.6 s on the slowest seen)."""
    started = time.perf_counter()
    total = 0
    for i in range(steps):
        total += i
    return time.perf_counter() - started


def syscall_us(calls: int = SYSCALLS) -> float:
    """Microseconds of one cheap syscall (getppid), the floor under sendto/recvmsg."""
    started = time.perf_counter()
    for _ in range(calls):
        os.getppid()
    return (time.perf_counter() - started) / calls * 1e6


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


async def postgres_facts(dsn: str) -> str:
    conn = await asyncpg.connect(dsn)
    try:
        version = await conn.fetchval("SHOW server_version")
        rows = await conn.fetch(
            "SELECT name, setting, unit FROM pg_settings WHERE name = ANY($1::text[])",
            list(PG_SETTINGS),
        )
    finally:
        await conn.close()
    values = {r["name"]: f"{r['setting']}{r['unit'] or ''}" for r in rows}
    return f"PostgreSQL {version}: " + ", ".join(f"{n}={values.get(n, '?')}" for n in PG_SETTINGS)


def _machine_lines() -> list[str]:
    load1, load5, _ = os.getloadavg()
    return [
        f"machine: {cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        f"load average before: {load1:.2f} (1 min) {load5:.2f} (5 min)",
        f"python loop of {LOOP_STEPS:,} additions: {python_loop_s():.2f} s",
        f"one syscall (getppid): {syscall_us():.2f} µs",
    ]


def _format(lines: list[str]) -> str:
    return "\n".join(f"# {line}" for line in lines)


def print_header(dsn: str | None = None) -> None:
    """The header, from outside an event loop (`dsn`: any database of the server used)."""
    lines = _machine_lines()
    if dsn is not None:
        lines.append(asyncio.run(postgres_facts(dsn)))
    print(_format(lines), flush=True)


async def print_header_async(dsn: str) -> None:
    """The same, from inside a running event loop."""
    lines = _machine_lines()
    lines.append(await postgres_facts(dsn))
    print(_format(lines), flush=True)

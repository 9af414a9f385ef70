"""Graph reads at scale: /series, /stats and /targets latency over seeded years of history.

    .venv/bin/python bench/series_bench.py --targets 300 --years 5 --raw-days 2

Creates a scratch database (migrated like production), loads it with
`pingtrack seed-history`'s generator (load time and database size are
reported), starts the real API (`pingtrack api`, uvicorn) on a free port
against it, and times requests over HTTP from one client, one at a time, each
for a random target. Ranges end where the seeded history ends. The scratch
database is dropped at the end unless --keep.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _calibration import print_header  # noqa: E402

from pingtrack.seed import SeedOptions, seed_history  # noqa: E402
from shared.migrate import drop_database, migrate_database  # noqa: E402
from shared.settings import Settings  # noqa: E402
from tests.egress_guard import ensure_guarded  # noqa: E402

RANGES = {
    "1h": timedelta(hours=1),
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
    "1y": timedelta(days=365),
    "5y": timedelta(days=5 * 365),
}
# Zoomed into older history: (span, how far back it ends).
OLD_RANGES = {
    "24h, 60 d back": (timedelta(hours=24), timedelta(days=60)),
    "24h, 1 y back": (timedelta(hours=24), timedelta(days=365)),
    "7d, 1 y back": (timedelta(days=7), timedelta(days=365)),
}
TIERS_SQL = """
    SELECT 'pings (row form)' AS tier, pg_total_relation_size('pings') + coalesce((
        SELECT sum(pg_total_relation_size(inhrelid)) FROM pg_inherits
        WHERE inhparent = 'pings'::regclass), 0) AS bytes
    UNION ALL SELECT 'pings_packed', pg_total_relation_size('pings_packed')
    UNION ALL SELECT 'segments_l' || level, pg_total_relation_size('segments_l' || level)
              FROM ladder_levels
    UNION ALL SELECT 'hourly_summaries', pg_total_relation_size('hourly_summaries')"""


def _dsn_for(base: str, database: str) -> str:
    return urlunsplit(urlsplit(base)._replace(path="/" + database))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _z(ts: datetime) -> str:
    return ts.isoformat().replace("+00:00", "Z")


async def load(dsn: str, args: argparse.Namespace) -> datetime:
    await migrate_database(dsn, Settings().migrations_dir)
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    done = 0
    began = time.perf_counter()

    def progress(n: int) -> None:
        nonlocal done
        done += n
        if done % max(1, args.targets // 20) == 0 or done == args.targets:
            rate = done / (time.perf_counter() - began)
            print(f"  seeded {done}/{args.targets} targets ({rate:.2f}/s)", flush=True)

    try:
        options = SeedOptions(
            args.targets, args.years, 1.0, timedelta(days=args.raw_days), end=end, seed=1
        )
        report = await seed_history(pool, options, progress)
        async with pool.acquire() as conn:
            await conn.execute("VACUUM ANALYZE")
            size = await conn.fetchval("SELECT pg_database_size(current_database())")
            tiers = await conn.fetch(TIERS_SQL)
    finally:
        await pool.close()
    rows = sum(report.rows.values())
    print(f"load: {args.targets} targets x {args.years:g} years (raw window {args.raw_days:g} d)")
    print(f"  {rows:,} rows in {report.seconds:.0f} s ({rows / report.seconds:,.0f} rows/s)")
    for table, n in report.rows.items():
        print(f"  {table:<18} {n:>14,} rows")
    for r in tiers:
        print(f"  {r['tier']:<18} {r['bytes'] / 2**20:>12,.0f} MiB")
    print(f"  database size: {size / 2**30:.2f} GiB")
    return end


async def _time(
    client: httpx.AsyncClient, n: int, make: Callable[[random.Random], tuple[str, dict[str, str]]]
) -> tuple[list[float], set[str]]:
    rng = random.Random(7)
    times, tiers = [], set()
    for _ in range(n):
        path, params = make(rng)
        t0 = time.perf_counter()
        r = await client.get(path, params=params)
        times.append((time.perf_counter() - t0) * 1000)
        r.raise_for_status()
        body = r.json()
        if isinstance(body, dict) and "tier" in body:
            tiers.add(str(body["tier"]))
    return times, tiers


def _line(name: str, times: list[float], tiers: set[str]) -> str:
    q = statistics.quantiles(times, n=20, method="inclusive")
    return (
        f"{name:<22} p50 {statistics.median(times):7.1f} ms   p95 {q[18]:7.1f} ms   "
        f"max {max(times):7.1f} ms   tier {','.join(sorted(tiers)) or '-'}"
    )


async def measure(base_url: str, end: datetime, args: argparse.Namespace, ids: list[int]) -> None:
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:
        for _ in range(100):  # the API is up once /targets answers
            try:
                if (await client.get("/targets")).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)
        print(f"requests: {args.requests} per line, sequential, random target of {len(ids)}")
        for name, span in RANGES.items():
            if span > timedelta(days=365.25 * args.years) + timedelta(days=1):
                continue

            def series(rng: random.Random, span: timedelta = span) -> tuple[str, dict[str, str]]:
                params = {"from": _z(end - span), "to": _z(end), "points": "1000"}
                return f"/targets/{rng.choice(ids)}/series", params

            await _time(client, 3, series)  # warm the connection pool
            print(_line(f"/series {name}", *await _time(client, args.requests, series)), flush=True)
        for name, (span, back) in OLD_RANGES.items():
            if back + span > timedelta(days=365.25 * args.years):
                continue

            def old(
                rng: random.Random, span: timedelta = span, back: timedelta = back
            ) -> tuple[str, dict[str, str]]:
                params = {"from": _z(end - back - span), "to": _z(end - back), "points": "1000"}
                return f"/targets/{rng.choice(ids)}/series", params

            print(_line(f"/series {name}", *await _time(client, args.requests, old)), flush=True)

        def stats(rng: random.Random) -> tuple[str, dict[str, str]]:
            params = {"from": _z(end - timedelta(days=30)), "to": _z(end)}
            return f"/targets/{rng.choice(ids)}/stats", params

        print(_line("/stats 30d", *await _time(client, args.requests, stats)), flush=True)
        targets = await _time(client, args.requests, lambda rng: ("/targets", {}))
        print(_line(f"/targets ({len(ids)})", *targets), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--targets", type=int, default=300)
    parser.add_argument("--years", type=float, default=5.0)
    parser.add_argument("--raw-days", type=float, default=2.0)
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    parser.add_argument("--reuse", help="time an existing database (name) instead of loading")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("PINGTRACK_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/"),
    )
    args = parser.parse_args()
    print_header(_dsn_for(args.database_url, "postgres"))
    name = args.reuse or f"pingtrack_bench_series_{os.getpid()}"
    dsn = _dsn_for(args.database_url, name)
    end = asyncio.run(_seeded_end(dsn) if args.reuse else load(dsn, args))
    port = _free_port()
    env = os.environ | {
        "PINGTRACK_DATABASE_URL": dsn,
        "PINGTRACK_API_PORT": str(port),
        "PINGTRACK_API_HOST": "127.0.0.1",
        "PINGTRACK_WEB_PORT": "0",
        "PINGTRACK_LOG_LEVEL": "WARNING",
    }
    api = subprocess.Popen([str(ROOT / ".venv/bin/pingtrack"), "api"], env=env)
    try:
        ids = asyncio.run(_ids(dsn))
        asyncio.run(measure(f"http://127.0.0.1:{port}", end, args, ids))
    finally:
        api.terminate()
        api.wait(timeout=30)
        if not args.keep and not args.reuse:
            asyncio.run(drop_database(dsn))


async def _ids(dsn: str) -> list[int]:
    conn = await asyncpg.connect(dsn)
    try:
        return [r[0] for r in await conn.fetch("SELECT id FROM targets ORDER BY id")]
    finally:
        await conn.close()


async def _seeded_end(dsn: str) -> datetime:
    """Where the seeded history of an existing database ends (seeded targets stop there)."""
    conn = await asyncpg.connect(dsn)
    try:
        end: datetime = await conn.fetchval("SELECT max(stopped_at) FROM targets")
        return end
    finally:
        await conn.close()


if __name__ == "__main__":
    ensure_guarded()  # nothing a benchmark does may leave the machine
    main()

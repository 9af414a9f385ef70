"""What holding the dirty marks costs writers: COPY throughput with the marking
trigger as shipped (existing marks locked until commit) against the same
trigger with ON CONFLICT DO NOTHING (no lock: the race of issue 14).

    .venv/bin/python bench/mark_bench.py --rows 300000 --writers 2

One scratch database (migrated like production), the trigger's function
swapped between trials and the two run alternately, so load from other work
falls on both alike. Each trial empties pings, keeps the marks (the usual
case: a writer finds its blocks marked) and writes every batch in a
transaction of its own, one COPY each, from `--writers` connections at once.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.writer_bench import make_batches
from shared.codec import ResultBatch
from shared.migrate import drop_database, migrate_database
from shared.settings import Settings
from tests.egress_guard import ensure_guarded
from writer_service.rows import COLUMNS, rows_of
from writer_service.store import prepare_connection

HOLD = "ON CONFLICT (target_id, hour) DO UPDATE SET hour = excluded.hour WHERE false;"
NO_LOCK = "ON CONFLICT DO NOTHING;"


def trigger_functions(migrations: Path) -> dict[str, str]:
    """The shipped ladder_mark_dirty() and its lock-free variant, as SQL to run."""
    text = (migrations / "functions" / "ladder.sql").read_text()
    start = text.index("CREATE OR REPLACE FUNCTION ladder_mark_dirty()")
    shipped = text[start : text.index("CREATE OR REPLACE TRIGGER pings_mark_dirty", start)]
    if HOLD not in shipped:
        raise SystemExit("ladder_mark_dirty() no longer has the statement this bench swaps")
    return {"marks held": shipped, "DO NOTHING": shipped.replace(HOLD, NO_LOCK)}


async def write_all(conns: list[asyncpg.Connection], batches: list[ResultBatch]) -> None:
    async def one(conn: asyncpg.Connection, share: list[ResultBatch]) -> None:
        for batch in share:
            async with conn.transaction():
                await conn.copy_records_to_table("pings", records=rows_of(batch), columns=COLUMNS)

    n = len(conns)
    await asyncio.gather(*(one(c, batches[i::n]) for i, c in enumerate(conns)))


async def bench(args: argparse.Namespace) -> None:
    settings = Settings()
    name = f"pingtrack_bench_marks_{os.getpid()}"
    base = urlsplit(args.database_url or settings.database_url)
    dsn = urlunsplit(base._replace(path="/" + name))
    variants = trigger_functions(settings.migrations_dir)
    batches = make_batches(args.rows, args.targets, args.batch, 0.01)
    print(
        f"{args.rows:,} rows: {args.targets} targets 1 s apart, {len(batches)} batches of"
        f" {args.batch}, {args.writers} writer(s), {args.trials} trials each"
    )
    await migrate_database(dsn, settings.migrations_dir)
    conns: list[asyncpg.Connection] = []
    try:
        conns = [await asyncpg.connect(dsn) for _ in range(args.writers)]
        for conn in conns:
            await prepare_connection(conn)
        admin = conns[0]
        await admin.execute("SELECT ensure_ping_partitions(current_date - 2, current_date)")
        rates: dict[str, list[float]] = {v: [] for v in variants}
        order = list(variants)
        for trial in range(args.trials):
            for variant in order if trial % 2 == 0 else order[::-1]:
                await admin.execute(variants[variant])
                await admin.execute("TRUNCATE pings")
                await admin.execute("VACUUM ANALYZE pings, ladder_dirty")
                began = time.perf_counter()
                await write_all(conns, batches)
                rates[variant].append(args.rows / (time.perf_counter() - began))
        for variant, values in rates.items():
            runs = ", ".join(f"{v:,.0f}" for v in values)
            print(f"{variant:<12} median {statistics.median(values):>10,.0f} rows/s  ({runs})")
        held, free = (statistics.median(rates[v]) for v in order)
        print(f"marks held / DO NOTHING: {held / free:.2f}")
    finally:
        for conn in conns:
            await conn.close()
        await drop_database(dsn)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--targets", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=5000, help="rows per transaction")
    parser.add_argument("--writers", type=int, default=1, help="connections writing at once")
    parser.add_argument("--trials", type=int, default=6, help="runs of each variant")
    parser.add_argument("--database-url", help="server to create the scratch database on")
    asyncio.run(bench(parser.parse_args()))


if __name__ == "__main__":
    ensure_guarded()  # nothing a benchmark does may leave the machine
    main()

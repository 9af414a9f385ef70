"""Writer throughput: rows/s from RabbitMQ into PostgreSQL vs a bare asyncpg COPY.

    .venv/bin/python bench/writer_bench.py --rows 1000000

Creates a scratch database (migrated like production) and broker names of its
own, and drops both at the end. Every case starts from an empty pings table.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import aiormq
import asyncpg
from pamqp import commands as spec

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _calibration import print_header

from shared.broker import BrokerLink, declare_results
from shared.codec import ResultBatch, encode_batch
from shared.constants import Topology
from shared.migrate import drop_database, migrate_database
from shared.settings import Settings
from tests.egress_guard import ensure_guarded
from writer_service.consumer import Writer
from writer_service.rows import COLUMNS, rows_of_all
from writer_service.store import PingStore, copy_via_staging, create_writer_pool

DAY_US = 86_400_000_000


def make_batches(rows: int, targets: int, batch_size: int, loss: float) -> list[ResultBatch]:
    """Pings of `targets` targets 1 s apart, in send order, cut into batches."""
    rng = random.Random(42)
    start = (int(time.time() * 1e6) // DAY_US - 1) * DAY_US  # yesterday 00:00 UTC
    batches = [ResultBatch(prober="bench")]
    for i in range(rows):
        if len(batches[-1]) == batch_size:
            batches.append(ResultBatch(prober="bench"))
        second, target = divmod(i, targets)
        ts = start + second * 1_000_000 + target * (1_000_000 // targets)
        if rng.random() < loss:
            batches[-1].append(target + 1, ts, None, None, None)
        else:
            batches[-1].append(target + 1, ts, rng.randint(200, 40_000), 61, 3)
    return batches


async def reset(conn: asyncpg.Connection) -> None:
    await conn.execute("TRUNCATE pings, ingested_batches")
    await conn.execute("VACUUM ANALYZE pings")  # no leftovers from the previous case


async def timed(what: str, rows: int, action: Callable[[], Awaitable[object]]) -> float:
    began = time.perf_counter()
    await action()
    rate = rows / (time.perf_counter() - began)
    print(f"{what:<58} {rate:>12,.0f} rows/s")
    return rate


async def publish_all(settings: Settings, bodies: list[bytes]) -> None:
    topology = Topology(settings.amqp_prefix)
    connection = await aiormq.connect(settings.amqp_url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        await declare_results(channel, topology)

        async def one(body: bytes) -> None:
            confirm = await channel.basic_publish(
                body,
                exchange=topology.results_exchange,
                routing_key=topology.results_queue,
                properties=spec.Basic.Properties(delivery_mode=2),
            )
            assert isinstance(confirm, spec.Basic.Ack)

        for start in range(0, len(bodies), 64):
            await asyncio.gather(*(one(b) for b in bodies[start : start + 64]))
    finally:
        await connection.close()


async def drain_with_writer(
    settings: Settings, pool: asyncpg.Pool, rows: int, max_group: int
) -> None:
    link = BrokerLink(settings.amqp_url, prefetch=settings.writer_prefetch)
    store = PingStore(pool, dedup_window=settings.dedup_window)
    writer = Writer(store, link, Topology(settings.amqp_prefix), max_group=max_group)
    stop = asyncio.Event()
    task = asyncio.create_task(writer.run(stop))
    try:
        while writer.stats.rows < rows:
            if task.done():
                task.result()
                raise RuntimeError("writer ended early")
            await asyncio.sleep(0.005)
    finally:
        stop.set()
        await task
        await link.close()


async def delete_broker_names(settings: Settings) -> None:
    topology = Topology(settings.amqp_prefix)
    connection = await aiormq.connect(settings.amqp_url)
    try:
        channel = await connection.channel()
        for queue in (topology.results_queue, topology.dead_queue):
            await channel.queue_delete(queue)
        for exchange in (topology.results_exchange, topology.dead_exchange):
            await channel.exchange_delete(exchange)
    finally:
        await connection.close()


async def bench(args: argparse.Namespace) -> None:
    base = Settings()
    name = f"pingtrack_bench_{os.getpid()}"
    dsn = urlunsplit(urlsplit(args.database_url or base.database_url)._replace(path="/" + name))
    settings = base.model_copy(
        update={"database_url": dsn, "amqp_prefix": f"pt-bench-{uuid.uuid4().hex[:8]}"}
    )
    batches = make_batches(args.rows, args.targets, args.batch, args.loss)
    rows = sum(map(len, batches))
    lost = sum(r is None for b in batches for r in b.rtt)
    print(
        f"{rows:,} rows: {args.targets} targets 1 s apart, {lost / rows:.1%} lost, "
        f"{len(batches)} batches of {args.batch}"
    )
    await migrate_database(dsn, settings.migrations_dir)
    pool: asyncpg.Pool | None = None
    try:
        admin = await asyncpg.connect(dsn)
        pool = await create_writer_pool(settings)
        async with pool.acquire() as conn:
            days = sorted({ts // DAY_US for b in batches for ts in b.ts})
            await conn.execute(
                "SELECT ensure_ping_partitions(to_timestamp($1 * 86400)::date,"
                " to_timestamp($2 * 86400)::date)",
                days[0],
                days[-1],
            )
        records = list(rows_of_all(batches))

        async def bare_copy() -> None:
            async with pool.acquire() as conn:
                await conn.copy_records_to_table("pings", records=records, columns=COLUMNS)

        async def per_batch(
            write: Callable[[asyncpg.Connection, ResultBatch], Awaitable[object]],
        ) -> None:
            async with pool.acquire() as conn:
                for batch in batches:
                    async with conn.transaction():
                        await write(conn, batch)

        async def staging(conn: asyncpg.Connection, batch: ResultBatch) -> None:
            await copy_via_staging(conn, rows_of_all([batch]))

        store = PingStore(pool, dedup_window=settings.dedup_window)

        async def batch_ids() -> None:
            for batch in batches:
                await store.write([batch])

        await reset(admin)
        reference = await timed("(a) bare COPY, one statement (reference)", rows, bare_copy)
        await reset(admin)
        await timed("(c1) batch-id dedup: claim id + COPY, 1 txn/batch", rows, batch_ids)
        await reset(admin)
        await timed(
            "(c2) staging + ON CONFLICT DO NOTHING, 1 txn/batch", rows, lambda: per_batch(staging)
        )

        bodies = [encode_batch(b) for b in batches]
        results = {}
        for group in (1, 4, 8, 16):
            await reset(admin)
            await timed(
                f"    publish {len(bodies)} messages (confirms, 64 in flight)",
                rows,
                lambda: publish_all(settings, bodies),
            )
            results[group] = await timed(
                f"(b) ours: writer drains the queue, ≤{group} msg/txn",
                rows,
                lambda g=group: drain_with_writer(settings, pool, rows, g),
            )
        best = max(results.values())
        print(f"ratio ours/reference: {best / reference:.2f}")
        await admin.close()
    finally:
        if pool is not None:
            await pool.close()
        await delete_broker_names(settings)
        await drop_database(dsn)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--targets", type=int, default=1000, help="300..3000 is realistic")
    parser.add_argument("--batch", type=int, default=5000, help="results per message")
    parser.add_argument("--loss", type=float, default=0.01, help="share of lost pings")
    parser.add_argument("--database-url", help="server to create the scratch database on")
    args = parser.parse_args()
    print_header(args.database_url or Settings().database_url)
    asyncio.run(bench(args))


if __name__ == "__main__":
    ensure_guarded()  # nothing a benchmark does may leave the machine
    main()

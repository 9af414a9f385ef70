"""Helpers for prober fleet and lab tests: an own database, a results tap, probers as processes.

Fleet tests get a database of their own: a prober pings every active target
of its database, so targets left by other tests must not be in it.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiormq
import aiormq.abc
import asyncpg

from prober_service.main import run as run_prober
from shared.broker import declare_results
from shared.codec import decode_batch
from shared.constants import Topology
from shared.migrate import drop_database, migrate_database
from shared.settings import Settings
from tests.conftest import ADMIN_TOKEN, AMQP_URL, _delete_broker_names, _dsn_for
from tests.stack import ServiceProcess
from writer_service.main import run as run_writer


@asynccontextmanager
async def fresh_database() -> AsyncIterator[str]:
    name = f"pingtrack_fleet_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    dsn = _dsn_for(name)
    await migrate_database(dsn, Settings().migrations_dir)
    try:
        yield dsn
    finally:
        await drop_database(dsn)


async def insert_targets(
    dsn: str, addresses: Iterable[str], interval_ms: int, timeout_ms: int = 1000
) -> list[int]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "INSERT INTO targets (address, interval_ms, timeout_ms)"
            " SELECT a::inet, $2, $3 FROM unnest($1::text[]) a RETURNING id",
            list(addresses),
            interval_ms,
            timeout_ms,
        )
    finally:
        await conn.close()
    return [row["id"] for row in rows]


@dataclass(frozen=True, slots=True)
class Result:
    ts_us: int
    prober: str
    rtt_us: int | None
    ttl: int | None
    hops: int | None


@dataclass
class ResultTap:
    """Consumes the results queue like a writer would, keeping every result in memory.

    Like the writer it keeps a batch once: delivery is at least once (a batch
    whose confirm was lost is published again from the prober's spool).
    """

    channel: aiormq.abc.AbstractChannel
    rows: dict[int, list[Result]] = field(default_factory=dict)
    batches: set[bytes] = field(default_factory=set)

    async def on_message(self, message: aiormq.abc.DeliveredMessage) -> None:
        batch = decode_batch(message.body)
        if batch.batch_id not in self.batches:
            self.batches.add(batch.batch_id)
            for i, target_id in enumerate(batch.target_ids):
                result = Result(
                    batch.ts[i], batch.prober, batch.rtt[i], batch.ttl[i], batch.hops[i]
                )
                self.rows.setdefault(target_id, []).append(result)
        assert message.delivery_tag is not None
        await self.channel.basic_ack(message.delivery_tag)

    def of(self, target_id: int, after_us: int = 0) -> list[Result]:
        found = (r for r in self.rows.get(target_id, []) if r.ts_us > after_us)
        return sorted(found, key=lambda r: r.ts_us)


@asynccontextmanager
async def result_tap(prefix: str) -> AsyncIterator[ResultTap]:
    topology = Topology(prefix)
    connection = await aiormq.connect(AMQP_URL)
    try:
        channel = await connection.channel()
        await declare_results(channel, topology)
        tap = ResultTap(channel)
        await channel.basic_consume(topology.results_queue, tap.on_message)
        yield tap
    finally:
        await connection.close()
        await _delete_broker_names(topology)


def prober_process(dsn: str, prefix: str, prober_id: str, log_dir: Path) -> ServiceProcess:
    process = ServiceProcess(
        "prober",
        {
            "PINGTRACK_DATABASE_URL": dsn,
            "PINGTRACK_AMQP_URL": AMQP_URL,
            "PINGTRACK_AMQP_PREFIX": prefix,
            "PINGTRACK_PROBER_ID": prober_id,
            "PINGTRACK_BATCH_MAX_DELAY_S": "0.2",
            "PINGTRACK_LOG_LEVEL": "INFO",
        },
        log_dir / f"{prober_id}.log",
    )
    process.start()
    return process


async def live_shards(dsn: str, prefix: str) -> dict[str, frozenset[int]]:
    """The shards each live member of the fleet lists."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT id, shards FROM probers WHERE fleet = $1"
            " AND last_seen > now() - interval '5 seconds'",
            prefix,
        )
    finally:
        await conn.close()
    return {row["id"]: frozenset(row["shards"]) for row in rows}


@dataclass(frozen=True, slots=True)
class Stored:
    ts: float  # epoch seconds
    rtt_ms: float | None
    ttl: int | None
    hops: int | None


@asynccontextmanager
async def pipeline() -> AsyncIterator[tuple[Settings, asyncpg.Pool]]:
    """A prober and a writer in this process over a database of their own.

    Used inside a lab's `with`, so the prober stops before the lab's routes go.
    """
    async with fresh_database() as dsn:
        settings = Settings(
            database_url=dsn,
            amqp_url=AMQP_URL,
            amqp_prefix=f"pt-lab-{uuid.uuid4().hex[:8]}",
            admin_token=ADMIN_TOKEN,  # type: ignore[arg-type]
            prober_id="lab-prober",
            batch_max_delay_s=0.2,
            reconcile_interval_s=0.3,  # targets are inserted directly, without commands
        )
        stop = asyncio.Event()
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
        tasks = [
            asyncio.create_task(run_writer(settings, stop)),
            asyncio.create_task(run_prober(settings, stop)),
        ]
        try:
            yield settings, pool
        finally:
            stop.set()
            await asyncio.gather(*tasks)
            await pool.close()
            await _delete_broker_names(Topology(settings.amqp_prefix))


async def stored(pool: asyncpg.Pool, target_id: int) -> list[Stored]:
    rows = await pool.fetch(
        "SELECT extract(epoch FROM ts)::float8 AS ts, rtt_us, ttl, hops FROM pings"
        " WHERE target_id = $1 ORDER BY ts",
        target_id,
    )
    return [
        Stored(r["ts"], None if r["rtt_us"] is None else r["rtt_us"] / 1000, r["ttl"], r["hops"])
        for r in rows
    ]

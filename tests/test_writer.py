"""The writer against real RabbitMQ and PostgreSQL: every ping stored exactly once."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiormq
import aiormq.abc
import asyncpg
import msgpack
import pytest
from pamqp import commands as spec

from shared.broker import BrokerLink, declare_results
from shared.codec import ResultBatch, encode_batch
from shared.constants import REASON_HEADER, Topology
from shared.settings import Settings
from tests.conftest import eventually
from tests.tcp_proxy import TcpProxy
from writer_service.consumer import Writer
from writer_service.main import run
from writer_service.store import PingStore, create_writer_pool

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
NOW_US = int(datetime.now(UTC).timestamp()) * 1_000_000


def fresh_target_id() -> int:
    # The database is shared by the session; distinct ids keep tests apart.
    return random.randrange(1, 2**40)


def make_batch(target_id: int, start_us: int, n: int, *, lost_every: int = 0) -> ResultBatch:
    batch = ResultBatch(prober="test")
    for i in range(n):
        lost = lost_every and i % lost_every == 0
        batch.append(
            target_id,
            start_us + i * 1_000_000 + 17,
            None if lost else 250 + i,
            None if lost else 64 - i % 3,
            None if lost else i % 3,
        )
    return batch


@asynccontextmanager
async def broker_channel(settings: Settings) -> AsyncIterator[aiormq.abc.AbstractChannel]:
    connection = await aiormq.connect(settings.amqp_url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        await declare_results(channel, Topology(settings.amqp_prefix))
        yield channel
    finally:
        await connection.close()


async def publish(channel: aiormq.abc.AbstractChannel, settings: Settings, *bodies: bytes) -> None:
    topology = Topology(settings.amqp_prefix)
    for body in bodies:
        confirm = await channel.basic_publish(
            body,
            exchange=topology.results_exchange,
            routing_key=topology.results_queue,
            properties=spec.Basic.Properties(delivery_mode=2, headers={"x-origin": "test"}),
        )
        assert isinstance(confirm, spec.Basic.Ack)


async def queue_depth(channel: aiormq.abc.AbstractChannel, queue: str) -> int:
    ok = await channel.queue_declare(queue, passive=True)
    assert ok.message_count is not None
    return ok.message_count


async def stored(pool: asyncpg.Pool, target_id: int) -> list[asyncpg.Record]:
    return await pool.fetch(
        "SELECT ts, rtt_us, ttl, hops FROM pings WHERE target_id = $1 ORDER BY ts", target_id
    )


async def count(pool: asyncpg.Pool, *target_ids: int) -> int:
    return int(
        await pool.fetchval(
            "SELECT count(*) FROM pings WHERE target_id = ANY($1::bigint[])", list(target_ids)
        )
    )


def reached(writer: Writer, counter: str, at_least: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return bool(getattr(writer.stats, counter) >= at_least)

    return check


@asynccontextmanager
async def running_writer(settings: Settings, **options: Any) -> AsyncIterator[Writer]:
    pool = await create_writer_pool(settings, timeout=5)
    link = BrokerLink(settings.amqp_url, prefetch=settings.writer_prefetch)
    store = PingStore(pool, dedup_window=settings.dedup_window)
    writer = Writer(store, link, Topology(settings.amqp_prefix), **options)
    stop = asyncio.Event()
    task = asyncio.create_task(writer.run(stop))
    try:
        yield writer
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
        await link.close()
        await pool.close()


async def test_batch_is_stored_with_exact_values(settings: Settings, pool: asyncpg.Pool) -> None:
    target = fresh_target_id()
    batch = make_batch(target, NOW_US, 50, lost_every=7)
    async with broker_channel(settings) as channel, running_writer(settings) as writer:
        await publish(channel, settings, encode_batch(batch))
        await eventually(lambda: count(pool, target), timeout=10)
        rows = await stored(pool, target)
    assert [(r["ts"], r["rtt_us"], r["ttl"], r["hops"]) for r in rows] == [
        (EPOCH + timedelta(microseconds=ts), rtt, ttl, hops)
        for ts, rtt, ttl, hops in zip(batch.ts, batch.rtt, batch.ttl, batch.hops, strict=True)
    ]
    assert sum(r["rtt_us"] is None for r in rows) == 8
    assert (writer.stats.batches, writer.stats.rows, writer.stats.duplicates) == (1, 50, 0)


async def test_batch_delivered_twice_is_stored_once(settings: Settings, pool: asyncpg.Pool) -> None:
    target = fresh_target_id()
    body = encode_batch(make_batch(target, NOW_US, 20))
    marker = fresh_target_id()
    async with broker_channel(settings) as channel, running_writer(settings) as writer:
        await publish(channel, settings, body, body)
        await publish(channel, settings, encode_batch(make_batch(marker, NOW_US, 1)))
        await eventually(lambda: count(pool, marker))
        await publish(channel, settings, body)  # and once more, after it was committed
        await eventually(reached(writer, "duplicates", 2))
        assert await queue_depth(channel, Topology(settings.amqp_prefix).results_queue) == 0
    assert await count(pool, target) == 20
    assert (writer.stats.batches, writer.stats.rows) == (2, 21)


async def test_ping_in_two_different_batches_is_stored_once(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    target = fresh_target_id()
    first = make_batch(target, NOW_US, 30)
    overlapping = make_batch(target, NOW_US + 20_000_000, 30)  # 10 pings in common
    async with broker_channel(settings) as channel, running_writer(settings) as writer:
        await publish(channel, settings, encode_batch(first))
        await eventually(lambda: count(pool, target))
        await publish(channel, settings, encode_batch(overlapping))
        await eventually(reached(writer, "batches", 2))
    rows = await stored(pool, target)
    assert len(rows) == 50
    assert rows[-1]["ts"] == EPOCH + timedelta(microseconds=overlapping.ts[-1])
    assert writer.stats.rows == 50


async def test_overlapping_batches_in_one_transaction_are_stored_once(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    target = fresh_target_id()
    batches = [make_batch(target, NOW_US + i * 5_000_000, 10) for i in range(6)]
    writer_pool = await create_writer_pool(settings)
    try:
        outcome = await PingStore(writer_pool, dedup_window=settings.dedup_window).write(batches)
    finally:
        await writer_pool.close()
    assert outcome.rows == 35
    assert outcome.fresh == {b.batch_id for b in batches}
    assert await count(pool, target) == 35


def wrong_version(batch: ResultBatch) -> bytes:
    data = msgpack.unpackb(encode_batch(batch))
    data["v"] = 99
    return msgpack.packb(data, use_bin_type=True)


async def test_malformed_messages_are_dead_lettered_and_the_stream_goes_on(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    topology = Topology(settings.amqp_prefix)
    good_body = encode_batch(make_batch(fresh_target_id(), NOW_US, 3))
    bad = {
        b"\xc1 garbage \xff": "not msgpack",
        wrong_version(make_batch(1, NOW_US, 3)): "unsupported message version 99",
        good_body[: len(good_body) // 2]: "not msgpack",
        encode_batch(make_batch(1, NOW_US, 400)): "exceeds 4000",
    }
    target = fresh_target_id()
    async with (
        broker_channel(settings) as channel,
        running_writer(settings, max_message_bytes=4000) as writer,
    ):
        await publish(channel, settings, *bad)
        await publish(channel, settings, encode_batch(make_batch(target, NOW_US, 5)))
        await eventually(lambda: count(pool, target))
        await eventually(reached(writer, "dead_lettered", 4))
        dead = [await channel.basic_get(topology.dead_queue, no_ack=True) for _ in bad]
        assert await queue_depth(channel, topology.results_queue) == 0
    assert [m.body for m in dead] == list(bad)
    for message, reason in zip(dead, bad.values(), strict=True):
        headers = message.header.properties.headers or {}
        assert reason in str(headers[REASON_HEADER])
        assert headers["x-origin"] == "test"
        assert message.header.properties.delivery_mode == 2
        assert message.header.properties.message_id
    assert await count(pool, target) == 5


@pytest.mark.parametrize("days_off", [30, -5])  # -5: late, within the 7-day dedup window
async def test_batch_for_a_day_without_partition_is_stored(
    settings: Settings, pool: asyncpg.Pool, days_off: int
) -> None:
    target = fresh_target_id()
    start = NOW_US + days_off * 86_400_000_000
    day = (EPOCH + timedelta(microseconds=start)).strftime("%Y%m%d")
    async with broker_channel(settings) as channel, running_writer(settings):
        await publish(channel, settings, encode_batch(make_batch(target, start, 10)))
        await eventually(lambda: count(pool, target))
    assert await count(pool, target) == 10
    assert await pool.fetchval("SELECT to_regclass($1)", f"pings_{day}") is not None


async def test_run_stops_cleanly_with_nothing_unacked(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    topology = Topology(settings.amqp_prefix)
    targets = [fresh_target_id() for _ in range(20)]
    stop = asyncio.Event()
    async with broker_channel(settings) as channel:
        service = asyncio.create_task(run(settings, stop))
        await publish(
            channel, settings, *(encode_batch(make_batch(t, NOW_US, 500)) for t in targets)
        )
        await eventually(lambda: count(pool, *targets))
        stop.set()
        await asyncio.wait_for(service, 15)
        left = await queue_depth(channel, topology.results_queue)
    per_target = dict(
        await pool.fetch(
            "SELECT target_id, count(*) FROM pings WHERE target_id = ANY($1) GROUP BY 1", targets
        )
    )
    # Whole batches only, and every batch either stored or still queued.
    assert set(per_target.values()) == {500}
    assert len(per_target) + left == len(targets)
    assert left == 0 or len(per_target) < len(targets)


async def test_database_outage_loses_and_doubles_nothing(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    db = urlsplit(settings.database_url)
    proxy = TcpProxy(db.hostname or "127.0.0.1", db.port or 5432)
    await proxy.start()
    proxied = settings.model_copy(
        update={"database_url": urlunsplit(db._replace(netloc=f"postgres@127.0.0.1:{proxy.port}"))}
    )
    topology = Topology(settings.amqp_prefix)
    targets = [fresh_target_id() for _ in range(30)]
    bodies = [encode_batch(make_batch(t, NOW_US, 200)) for t in targets]
    try:
        async with broker_channel(settings) as channel, running_writer(proxied) as writer:
            await publish(channel, settings, *bodies[:10])
            await eventually(lambda: count(pool, *targets[:10]), timeout=10)
            streaming = asyncio.create_task(publish(channel, settings, *bodies[10:20]))
            await proxy.cut()  # mid-stream
            await streaming
            await publish(channel, settings, *bodies[20:])
            await eventually(reached(writer, "write_failures", 1))
            await eventually(lambda: queue_depth(channel, topology.results_queue))
            await proxy.resume()
            await eventually(reached(writer, "batches", 30), timeout=20)
            assert await queue_depth(channel, topology.results_queue) == 0
    finally:
        await proxy.stop()
    assert await count(pool, *targets) == 30 * 200
    batch_rows = await pool.fetchval(
        "SELECT sum(rows) FROM ingested_batches WHERE batch_id = ANY($1::uuid[])",
        [uuid.UUID(bytes=msgpack.unpackb(b)["id"]) for b in bodies],
    )
    assert batch_rows == 30 * 200


async def test_writer_resumes_consuming_after_broker_connection_is_cut(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    amqp = urlsplit(settings.amqp_url)
    proxy = TcpProxy(amqp.hostname or "127.0.0.1", amqp.port or 5672)
    await proxy.start()
    proxied = settings.model_copy(
        update={"amqp_url": urlunsplit(amqp._replace(netloc=f"guest:guest@127.0.0.1:{proxy.port}"))}
    )
    targets = [fresh_target_id() for _ in range(6)]
    bodies = [encode_batch(make_batch(t, NOW_US, 100)) for t in targets]
    try:
        async with broker_channel(settings) as channel, running_writer(proxied) as writer:
            await publish(channel, settings, *bodies[:3])
            await eventually(lambda: count(pool, *targets[:3]))
            await proxy.cut()
            await publish(channel, settings, *bodies[3:])
            await proxy.resume()
            await eventually(reached(writer, "batches", 6), timeout=15)
            assert proxy.connections >= 2
    finally:
        await proxy.stop()
    assert await count(pool, *targets) == 600


async def test_pruning_forgets_only_batch_ids_older_than_a_week(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    old, recent = uuid.uuid4(), uuid.uuid4()
    await pool.execute(
        "INSERT INTO ingested_batches (batch_id, rows, received_at)"
        " VALUES ($1, 1, now() - interval '8 days'), ($2, 1, now() - interval '6 days')",
        old,
        recent,
    )
    writer_pool = await create_writer_pool(settings)
    try:
        store = PingStore(writer_pool, dedup_window=settings.dedup_window)
        assert await store.prune_batch_ids() >= 1
    finally:
        await writer_pool.close()
    left = await pool.fetch(
        "SELECT batch_id FROM ingested_batches WHERE batch_id = ANY($1::uuid[])", [old, recent]
    )
    assert [r["batch_id"] for r in left] == [recent]

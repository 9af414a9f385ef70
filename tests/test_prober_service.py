"""The prober service end to end: PostgreSQL targets in, RabbitMQ batches out, commands live."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import aiormq
import aiormq.abc
import asyncpg
import msgpack
import pytest
from aiormq import spec

from prober_service.main import run
from prober_service.publisher import Publisher
from shared.broker import BrokerLink, declare_commands, declare_results
from shared.codec import TargetSpec, decode_batch, encode_command
from shared.constants import CONTENT_TYPE, MESSAGE_VERSION, Topology
from shared.settings import Settings
from tests.conftest import eventually
from tests.tcp_proxy import TcpProxy

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="the prober's raw ICMP sockets need root"),
    pytest.mark.timeout(40),
]


@pytest.fixture
def database_url(own_database_url: str) -> str:
    """A prober runs here: a database of this test's own, holding only its targets."""
    return own_database_url


PROBER_ID = "test-prober"


@dataclass
class Row:
    ts_us: int
    rtt_us: int | None
    ttl: int | None
    hops: int | None


@dataclass
class ResultTap:
    """Consumes the results queue the way a writer would, decoding every batch."""

    channel: aiormq.abc.AbstractChannel
    rows: dict[int, list[Row]] = field(default_factory=dict)
    probers: set[str] = field(default_factory=set)
    properties: list[spec.Basic.Properties] = field(default_factory=list)

    async def on_message(self, message: aiormq.abc.DeliveredMessage) -> None:
        batch = decode_batch(message.body)
        self.probers.add(batch.prober)
        self.properties.append(message.header.properties)
        for i, target_id in enumerate(batch.target_ids):
            row = Row(batch.ts[i], batch.rtt[i], batch.ttl[i], batch.hops[i])
            self.rows.setdefault(target_id, []).append(row)
        assert message.delivery_tag is not None
        await self.channel.basic_ack(message.delivery_tag)

    def of(self, target_id: int, after_us: int = 0) -> list[Row]:
        return sorted(
            (r for r in self.rows.get(target_id, []) if r.ts_us > after_us), key=lambda r: r.ts_us
        )


@pytest.fixture
async def broker(settings: Settings) -> AsyncIterator[aiormq.abc.AbstractChannel]:
    connection = await aiormq.connect(settings.amqp_url)
    channel = await connection.channel()
    yield channel
    await connection.close()


@pytest.fixture
async def tap(broker: aiormq.abc.AbstractChannel, settings: Settings) -> ResultTap:
    topology = Topology(settings.amqp_prefix)
    await declare_results(broker, topology)
    await declare_commands(broker, topology)
    tap = ResultTap(broker)
    await broker.basic_consume(topology.results_queue, tap.on_message)
    return tap


Insert = Callable[..., Awaitable[TargetSpec]]


@pytest.fixture
async def insert_target(pool: asyncpg.Pool) -> AsyncIterator[Insert]:
    """Adds a target on a loopback address of its own; ends it after the test."""
    made: list[int] = []

    async def insert(interval_ms: int = 200, timeout_ms: int = 500, rev: int = 1) -> TargetSpec:
        address = (
            f"127.{random.randrange(1, 255)}.{random.randrange(256)}.{random.randrange(1, 255)}"
        )
        row = await pool.fetchrow(
            "INSERT INTO targets (address, interval_ms, timeout_ms, rev) VALUES ($1, $2, $3, $4)"
            " RETURNING id",
            address,
            interval_ms,
            timeout_ms,
            rev,
        )
        assert row is not None
        made.append(row["id"])
        return TargetSpec(row["id"], address, interval_ms, timeout_ms, "active", rev)

    yield insert
    await pool.execute("UPDATE targets SET state = 'deleted' WHERE id = ANY($1)", made)


@pytest.fixture
async def start_prober(settings: Settings) -> AsyncIterator[Callable[..., Awaitable[None]]]:
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []

    async def start(**overrides: object) -> None:
        tuned = settings.model_copy(update={"prober_id": PROBER_ID, **overrides})
        tasks.append(asyncio.create_task(run(tuned, stop)))

    yield start
    stop.set()
    for task in tasks:
        await asyncio.wait_for(task, 15)


async def change(
    pool: asyncpg.Pool,
    channel: aiormq.abc.AbstractChannel,
    settings: Settings,
    target: TargetSpec,
    **fields: object,
) -> TargetSpec:
    """What the API does: commit the change, then publish it as a command."""
    new = TargetSpec(
        id=target.id,
        address=target.address,
        interval_ms=int(str(fields.get("interval_ms", target.interval_ms))),
        timeout_ms=target.timeout_ms,
        state=str(fields.get("state", target.state)),
        rev=target.rev + 1,
    )
    await pool.execute(
        "UPDATE targets SET state = $2, interval_ms = $3, rev = $4 WHERE id = $1",
        new.id,
        new.state,
        new.interval_ms,
        new.rev,
    )
    await publish(channel, settings, new.id, encode_command(new))
    return new


async def publish(
    channel: aiormq.abc.AbstractChannel, settings: Settings, target_id: int, body: bytes
) -> None:
    topology = Topology(settings.amqp_prefix)
    await channel.basic_publish(
        body, exchange=topology.commands_exchange, routing_key=topology.target_key(target_id)
    )


def now_us() -> int:
    return time.time_ns() // 1000


async def count_of(tap: ResultTap, target_id: int, at_least: int, after_us: int = 0) -> None:
    async def enough() -> bool:
        return len(tap.of(target_id, after_us)) >= at_least

    await eventually(enough, timeout=5)


async def test_target_in_the_database_before_start_is_pinged_and_published(
    tap: ResultTap, insert_target: Insert, start_prober: Callable[..., Awaitable[None]]
) -> None:
    target = await insert_target(interval_ms=200)
    started = now_us()
    await start_prober()
    await count_of(tap, target.id, 6)
    rows = tap.of(target.id)
    assert rows[0].ts_us - started < 1_500_000
    for row in rows:
        assert row.rtt_us is not None and 0 < row.rtt_us < 20_000
        assert (row.ttl, row.hops) == (64, 0)
    gaps = [b.ts_us - a.ts_us for a, b in itertools.pairwise(rows)]
    assert all(150_000 <= gap <= 250_000 for gap in gaps), gaps
    assert tap.probers == {PROBER_ID}
    props = tap.properties[0]
    assert (props.delivery_mode, props.content_type) == (2, CONTENT_TYPE)


async def test_commands_pause_resume_and_change_the_interval_live(
    tap: ResultTap,
    broker: aiormq.abc.AbstractChannel,
    pool: asyncpg.Pool,
    settings: Settings,
    insert_target: Insert,
    start_prober: Callable[..., Awaitable[None]],
) -> None:
    target = await insert_target(interval_ms=200, timeout_ms=300)
    witness = await insert_target(interval_ms=100)
    await start_prober()
    await count_of(tap, target.id, 2)

    target = await change(pool, broker, settings, target, state="paused")
    paused_at = now_us()
    # Several intervals, and the last timeout. Results come in order, so once a later
    # ping of the witness is in, so is every ping sent until then.
    await count_of(tap, witness.id, 1, after_us=paused_at + 800_000)
    # Stopped within one interval of the command.
    assert tap.of(target.id, after_us=paused_at + 200_000) == []

    target = await change(pool, broker, settings, target, state="active")
    resumed_at = now_us()
    await count_of(tap, target.id, 3, after_us=resumed_at)

    target = await change(pool, broker, settings, target, interval_ms=100)
    changed_at = now_us()
    await count_of(tap, target.id, 8, after_us=changed_at + 100_000)
    rows = tap.of(target.id, after_us=changed_at + 100_000)
    gaps = [b.ts_us - a.ts_us for a, b in itertools.pairwise(rows)]
    assert all(60_000 <= gap <= 140_000 for gap in gaps), gaps


async def test_stale_and_malformed_commands_change_nothing(
    tap: ResultTap,
    broker: aiormq.abc.AbstractChannel,
    pool: asyncpg.Pool,
    settings: Settings,
    insert_target: Insert,
    start_prober: Callable[..., Awaitable[None]],
) -> None:
    target = await insert_target(interval_ms=200, rev=5)
    witness = await insert_target(interval_ms=100)
    await start_prober()
    await count_of(tap, target.id, 2)

    stale = TargetSpec(target.id, target.address, 200, 500, "paused", rev=4)
    await publish(broker, settings, target.id, encode_command(stale))
    await publish(broker, settings, target.id, b"\xc1 not msgpack")
    await publish(
        broker,
        settings,
        target.id,
        msgpack.packb({"v": MESSAGE_VERSION, "target": {"id": target.id, "state": "paused"}}),
    )
    sent_at = now_us()
    # Still pinged at its interval.
    await count_of(tap, target.id, 4, after_us=sent_at + 100_000)

    # And still listening: a good command after the bad ones applies.
    await change(pool, broker, settings, target, state="paused")
    paused_at = now_us()
    await count_of(tap, witness.id, 1, after_us=paused_at + 800_000)  # all until then is in
    assert tap.of(target.id, after_us=paused_at + 200_000) == []


async def test_a_change_never_published_is_caught_by_reconciling(
    tap: ResultTap,
    pool: asyncpg.Pool,
    insert_target: Insert,
    start_prober: Callable[..., Awaitable[None]],
) -> None:
    target = await insert_target(interval_ms=200)
    await start_prober(reconcile_interval_s=0.5)
    await count_of(tap, target.id, 2)
    await pool.execute("UPDATE targets SET state = 'paused', rev = 2 WHERE id = $1", target.id)
    later = await insert_target(interval_ms=200)
    changed_at = now_us()
    await count_of(tap, later.id, 2)
    # The reconcile that found `later` paused the target. Results come in order, so once
    # a later ping of `later` is in, so is every ping sent until then.
    await count_of(tap, later.id, 1, after_us=changed_at + 1_300_000)
    assert tap.of(target.id, after_us=changed_at + 800_000) == []


async def test_stopping_flushes_every_result(
    tap: ResultTap,
    pool: asyncpg.Pool,
    settings: Settings,
    insert_target: Insert,
) -> None:
    target = await insert_target(interval_ms=100, timeout_ms=500)
    stop = asyncio.Event()
    service = asyncio.create_task(
        run(settings.model_copy(update={"prober_id": PROBER_ID, "batch_max_delay_s": 30}), stop)
    )

    async def holding_eight() -> bool:
        # What its last heartbeat reported: results it holds, none published yet.
        held = await pool.fetchval(
            "SELECT (stats->>'buffered_results')::int FROM probers WHERE id = $1", PROBER_ID
        )
        return held is not None and held >= 8

    await eventually(holding_eight, timeout=10, interval=0.1)
    assert tap.of(target.id) == []
    stopped_at = now_us()
    stop.set()
    await asyncio.wait_for(service, 15)
    # Nothing was flushed on the 30 s timer: all of it went out on the way down.
    await count_of(tap, target.id, 8)
    rows = tap.of(target.id)
    assert stopped_at - rows[-1].ts_us < 150_000
    assert all(r.rtt_us is not None for r in rows)


async def test_broker_outage_loses_no_result_and_commands_follow_after_reconnect(
    tap: ResultTap,
    broker: aiormq.abc.AbstractChannel,
    pool: asyncpg.Pool,
    settings: Settings,
    insert_target: Insert,
    start_prober: Callable[..., Awaitable[None]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    target = await insert_target(interval_ms=100, timeout_ms=300)
    witness = await insert_target(interval_ms=1000)
    caplog.set_level(logging.INFO, logger="prober_service.commands")

    def subscribed(at_least: int) -> Callable[[], Awaitable[bool]]:
        async def check() -> bool:  # bound: a command published now reaches the prober
            return caplog.messages.count("following target commands") >= at_least

        return check

    async with TcpProxy("127.0.0.1", 5672) as proxy:
        url = settings.amqp_url.replace("127.0.0.1:5672", f"127.0.0.1:{proxy.port}")
        assert url != settings.amqp_url
        await start_prober(amqp_url=url)
        await count_of(tap, target.id, 3)
        # Targets load at the join; the cut comes once the commands are followed too.
        await eventually(subscribed(1), timeout=10)
        links = proxy.connections  # the prober's broker connections (results, commands)
        await proxy.cut()
        # A sleep on purpose: the outage under test, through which nothing gets out.
        await asyncio.sleep(1.5)
        assert len(tap.of(target.id, after_us=now_us() - 1_000_000)) == 0
        await proxy.resume()
        # Back: buffered results arrive, and every link has reconnected, so the
        # command queue is declared and bound again.
        await count_of(tap, target.id, 20)

        async def all_links_back() -> bool:
            return proxy.connections >= 2 * links

        await eventually(all_links_back, timeout=15)
        await eventually(subscribed(2), timeout=15)
        target = await change(pool, broker, settings, target, state="paused")
        paused_at = now_us()
        # Results come in order: once a later ping of the witness is in, so is every
        # ping sent until then. Pausing it before its next slot leaves nothing unpublished.
        await count_of(tap, witness.id, 1, after_us=paused_at + 600_000)
        await change(pool, broker, settings, witness, state="paused")
        rows = tap.of(target.id)
        assert tap.of(target.id, after_us=paused_at + 100_000) == []
        # No gap anywhere: every slot from first to last has its result.
        gaps = [b.ts_us - a.ts_us for a, b in itertools.pairwise(rows)]
        assert all(50_000 <= gap <= 150_000 for gap in gaps), gaps
        assert all(r.rtt_us is not None for r in rows)


async def test_full_buffer_drops_the_oldest_results_counted_and_logged(
    tap: ResultTap, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    tuned = settings.model_copy(update={"buffer_max_results": 1000, "batch_max_results": 100})
    async with TcpProxy("127.0.0.1", 5672) as proxy:
        await proxy.cut()
        url = settings.amqp_url.replace("127.0.0.1:5672", f"127.0.0.1:{proxy.port}")
        link = BrokerLink(url)
        publisher = Publisher(link, Topology(settings.amqp_prefix), tuned, PROBER_ID)
        publishing = asyncio.create_task(publisher.run())
        try:
            base = now_us()
            with caplog.at_level(logging.WARNING, logger="prober_service.publisher"):
                for i in range(1500):
                    publisher.add(424242, base + i, 100 + i, 64, 0)
            assert publisher.dropped_results == 500
            assert publisher.buffered == 1000
            assert "oldest results dropped" in caplog.text
            await proxy.resume()
            await count_of(tap, 424242, 1000)
        finally:
            publishing.cancel()
            await asyncio.gather(publishing, return_exceptions=True)
            await link.close()
    # The newest results were kept, each once.
    assert [r.ts_us for r in tap.of(424242)] == [base + i for i in range(500, 1500)]

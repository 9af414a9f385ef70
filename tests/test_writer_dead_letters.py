"""Every answer the broker can give on the dead-letter path, for real: the writer
survives each, loses nothing and stores every good ping once.

A full dead-letter queue (a policy with max-length and reject-publish makes
RabbitMQ nack the publish), a deleted dead-letter queue (the mandatory publish
is returned), a deleted dead-letter exchange (the channel is closed, 404), a
broker that stops answering after the publish (tests/tcp_proxy.py
`freeze_on`: no confirm in time) and connections cut amid dead letters.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit, urlunsplit

import aiormq
import aiormq.abc
import asyncpg
import msgpack
import pytest
from pamqp import commands as spec

from shared.codec import encode_batch
from shared.constants import REASON_CODE_HEADER, REASON_HEADER, Topology
from shared.settings import Settings
from tests.conftest import eventually
from tests.tcp_proxy import TcpProxy
from tests.test_writer import (
    NOW_US,
    broker_channel,
    count,
    fresh_target_id,
    make_batch,
    publish,
    queue_depth,
    reached,
    running_writer,
)

pytestmark = pytest.mark.timeout(60)
GARBAGE = b"\xc1 not a batch"


def partly_bad(target: int) -> bytes:
    """Three pings of `target`, the second with a ttl no table holds."""
    data = msgpack.unpackb(encode_batch(make_batch(target, NOW_US, 3)))
    data["ttl"][1] = 300
    packed: bytes = msgpack.packb(data, use_bin_type=True)
    return packed


async def rabbitmqctl(*args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run, ["rabbitmqctl", "-q", *args], capture_output=True, text=True, timeout=30
    )


def cap_name(topology: Topology) -> str:
    return f"{topology.prefix}-dead-cap"


async def lift_cap(topology: Topology) -> None:
    done = await rabbitmqctl("clear_policy", cap_name(topology))
    assert done.returncode == 0 or "does not exist" in done.stderr, done.stderr


async def _publish_dead(channel: aiormq.abc.AbstractChannel, topology: Topology) -> bool:
    """Publish a filler to the dead-letter exchange; False when the broker nacked it."""
    try:
        await channel.basic_publish(
            b"filler", exchange=topology.dead_exchange, routing_key="", mandatory=True
        )
    except aiormq.exceptions.DeliveryError:
        return False
    return True


@asynccontextmanager
async def full_dead_letter_queue(
    channel: aiormq.abc.AbstractChannel, topology: Topology
) -> AsyncIterator[None]:
    """The dead-letter queue capped at one message by a policy (RabbitMQ's way to
    bound a queue that exists already), filled: the broker nacks the next publish."""
    definition = json.dumps({"max-length": 1, "overflow": "reject-publish"})
    done = await rabbitmqctl(
        "set_policy", "--apply-to", "queues", "--priority", "100",
        cap_name(topology), f"^{re.escape(topology.dead_queue)}$", definition,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    try:
        assert await _publish_dead(channel, topology)

        async def refused() -> bool:  # the policy applies within a moment
            return not await _publish_dead(channel, topology)

        await eventually(refused)
        yield
    finally:
        await lift_cap(topology)


async def writer_consuming(channel: aiormq.abc.AbstractChannel, topology: Topology) -> None:
    """Once the writer consumes, it has declared its topology: deleting a part now sticks."""

    async def consuming() -> bool:
        ok = await channel.queue_declare(topology.results_queue, passive=True)
        return bool(ok.consumer_count)

    await eventually(consuming)


async def dead_letters(channel: aiormq.abc.AbstractChannel, queue: str) -> list[tuple[bytes, str]]:
    """Every message of the dead-letter queue (taken): body and reason code."""
    found = []
    while True:
        message = await channel.basic_get(queue, no_ack=True)
        if message.delivery_tag is None:
            return found
        headers = message.header.properties.headers or {}
        found.append((message.body, str(headers.get(REASON_CODE_HEADER, ""))))


async def test_a_full_dead_letter_queue_holds_the_bad_message_while_the_rest_flows(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    topology = Topology(settings.amqp_prefix)
    mixed, goods = fresh_target_id(), [fresh_target_id() for _ in range(5)]
    async with (
        broker_channel(settings) as channel,
        full_dead_letter_queue(channel, topology),
        running_writer(settings) as writer,
    ):
        await publish(channel, settings, GARBAGE, partly_bad(mixed))
        await publish(channel, settings, *(encode_batch(make_batch(t, NOW_US, 4)) for t in goods))
        # The broker nacks both dead letters: their messages are held, the rest is stored.
        await eventually(lambda: count(pool, *goods))
        await eventually(reached(writer, "dead_letter_refused", 3))
        assert await count(pool, *goods) == 20
        assert await count(pool, mixed) == 0  # its good pings wait with its bad one
        assert writer.stats.dead_lettered == 0
        assert await queue_depth(channel, topology.results_queue) == 0  # held, not ready

        # Room again (a quorum queue takes publishes again once drained): both are
        # dead-lettered on their next try, nothing was lost.
        assert {body for body, _ in await dead_letters(channel, topology.dead_queue)} == {b"filler"}
        await eventually(reached(writer, "dead_lettered", 2), timeout=20)
        await eventually(lambda: count(pool, mixed))
        found = await dead_letters(channel, topology.dead_queue)
    assert sorted(code for _, code in found) == ["invalid_values", "not_msgpack"]
    assert GARBAGE in [body for body, _ in found]
    assert await count(pool, mixed) == 2
    assert (writer.stats.batches, writer.stats.write_failures) == (6, 0)


async def test_a_rejected_message_would_pass_the_cap_and_say_nothing_of_why(
    settings: Settings,
) -> None:
    """Why the writer holds a message whose dead letter was refused instead of
    rejecting it: the results queue's own dead-lettering puts it past the bound
    the operator set, and without the reason."""
    topology = Topology(settings.amqp_prefix)
    async with broker_channel(settings) as channel, full_dead_letter_queue(channel, topology):
        full = await queue_depth(channel, topology.dead_queue)
        await publish(channel, settings, GARBAGE)
        message = await channel.basic_get(topology.results_queue, no_ack=False)
        assert message.body == GARBAGE and message.delivery_tag is not None
        await channel.basic_reject(message.delivery_tag, requeue=False)

        async def passed() -> bool:
            return await queue_depth(channel, topology.dead_queue) == full + 1

        await eventually(passed)
        taken = [await channel.basic_get(topology.dead_queue, no_ack=True) for _ in range(full + 1)]
    rejected = taken[-1]
    headers = rejected.header.properties.headers or {}
    assert rejected.body == GARBAGE
    assert REASON_HEADER not in headers and REASON_CODE_HEADER not in headers
    assert headers["x-death"][0]["reason"] == "rejected"


@pytest.mark.parametrize(
    ("deleted", "counter"),
    [
        # The mandatory publish finds no queue: returned, and the message is held
        # until the topology, declared again before the next try, has one.
        ("queue", "dead_letter_refused"),
        # The publish closes the writer's channel (404): it connects and declares again.
        ("exchange", "sessions_lost"),
    ],
)
async def test_a_deleted_part_of_the_dead_letter_path_comes_back_and_gets_the_letter(
    settings: Settings, pool: asyncpg.Pool, deleted: str, counter: str
) -> None:
    topology = Topology(settings.amqp_prefix)
    good = fresh_target_id()
    async with broker_channel(settings) as channel, running_writer(settings) as writer:
        await writer_consuming(channel, topology)
        if deleted == "queue":
            await channel.queue_delete(topology.dead_queue)
        else:
            await channel.exchange_delete(topology.dead_exchange)
        await publish(channel, settings, GARBAGE, encode_batch(make_batch(good, NOW_US, 3)))
        await eventually(reached(writer, "dead_lettered", 1), timeout=20)
        await eventually(lambda: count(pool, good))
        found = await dead_letters(channel, topology.dead_queue)
    assert getattr(writer.stats, counter) >= 1
    assert found == [(GARBAGE, "not_msgpack")]
    assert await count(pool, good) == 3


def _through(settings: Settings, proxy: TcpProxy) -> Settings:
    amqp = urlsplit(settings.amqp_url)
    netloc = f"guest:guest@127.0.0.1:{proxy.port}"
    return settings.model_copy(update={"amqp_url": urlunsplit(amqp._replace(netloc=netloc))})


def _publish_frame_to(exchange: str) -> bytes:
    """The start of an AMQP basic.publish method frame to `exchange`: class 60,
    method 40, reserved short, the exchange as a short string."""
    name = exchange.encode()
    return b"\x00\x3c\x00\x28\x00\x00" + bytes([len(name)]) + name


async def test_a_dead_letter_never_confirmed_ends_the_session_and_is_sent_again(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    topology = Topology(settings.amqp_prefix)
    amqp = urlsplit(settings.amqp_url)
    good = fresh_target_id()
    async with TcpProxy(amqp.hostname or "127.0.0.1", amqp.port or 5672) as proxy:
        # The broker gets the dead letter, the writer never hears of it again.
        proxy.freeze_on(_publish_frame_to(topology.dead_exchange))
        async with (
            broker_channel(settings) as channel,
            running_writer(_through(settings, proxy), dead_letter_timeout=1.0) as writer,
        ):
            await publish(channel, settings, GARBAGE, encode_batch(make_batch(good, NOW_US, 3)))
            await eventually(reached(writer, "sessions_lost", 1))
            assert proxy.frozen == 1 and writer.stats.dead_lettered == 0
            # The frozen connection still holds the deliveries: end it, as the
            # broker would once heartbeats stop.
            await proxy.cut()
            await proxy.resume()
            await eventually(reached(writer, "dead_lettered", 1), timeout=20)
            await eventually(lambda: count(pool, good))
            assert await queue_depth(channel, topology.results_queue) == 0
            found = await dead_letters(channel, topology.dead_queue)
    # At least once: the letter the broker took before going silent, and again.
    assert found == [(GARBAGE, "not_msgpack")] * 2
    assert await count(pool, good) == 3


async def test_connections_cut_amid_dead_letters_lose_and_double_nothing(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    topology = Topology(settings.amqp_prefix)
    amqp = urlsplit(settings.amqp_url)
    goods = [fresh_target_id() for _ in range(30)]
    mixed = [fresh_target_id() for _ in range(30)]
    garbage = [GARBAGE + bytes([i]) for i in range(30)]
    stream = [encode_batch(make_batch(t, NOW_US, 5)) for t in goods]
    stream += [partly_bad(t) for t in mixed] + garbage
    stream = [stream[i] for i in sorted(range(90), key=lambda i: (i * 37) % 90)]
    proxy = TcpProxy(amqp.hostname or "127.0.0.1", amqp.port or 5672)
    await proxy.start()
    try:
        async with (
            broker_channel(settings) as channel,
            running_writer(_through(settings, proxy), max_group=2) as writer,
        ):
            sending = asyncio.create_task(publish(channel, settings, *stream))
            for cut_at in (10, 30):
                await eventually(reached(writer, "dead_lettered", cut_at), timeout=20)
                await proxy.cut()
                await proxy.resume()
            await sending
            await eventually(lambda: count(pool, *goods, *mixed), timeout=20)

            async def settled() -> bool:
                stored = await count(pool, *goods, *mixed)
                return stored == 30 * 5 + 30 * 2 and not await queue_depth(
                    channel, topology.results_queue
                )

            await eventually(settled, timeout=30)
            found = await dead_letters(channel, topology.dead_queue)
    finally:
        await proxy.stop()
    assert writer.stats.sessions_lost >= 2
    # Every bad message at least once in the dead-letter queue, every good ping once.
    assert {body for body, code in found if code == "not_msgpack"} == set(garbage)
    parts = [msgpack.unpackb(body) for body, code in found if code == "invalid_values"]
    assert {part["t"][0] for part in parts} == set(mixed)
    assert all(part["ttl"] == [300] for part in parts)
    assert await count(pool, *goods) == 150
    assert await count(pool, *mixed) == 60


def test_the_publish_frame_pattern_matches_what_aiormq_sends() -> None:
    frame = spec.Basic.Publish(exchange="x.dead", routing_key="")
    assert _publish_frame_to("x.dead")[4:] in frame.marshal()


async def test_dead_letters_are_counted_by_reason_code_in_the_database(
    settings: Settings, own_database_url: str
) -> None:
    own = settings.model_copy(update={"database_url": own_database_url})
    mixed = fresh_target_id()
    async with broker_channel(own) as channel, running_writer(own) as writer:
        await publish(channel, own, GARBAGE, GARBAGE + b"!", partly_bad(mixed))
        await eventually(reached(writer, "dead_lettered", 3))
        conn = await asyncpg.connect(own_database_url)
        try:

            async def counted() -> list[tuple[str, int, int]]:
                rows = await conn.fetch(
                    "SELECT code, messages, pings FROM dead_letter_reasons ORDER BY code"
                )
                return [tuple(row) for row in rows] if len(rows) == 2 else []

            assert await eventually(counted) == [("invalid_values", 1, 1), ("not_msgpack", 2, 0)]
            last = await conn.fetchval(
                "SELECT last_reason FROM dead_letter_reasons WHERE code = 'invalid_values'"
            )
        finally:
            await conn.close()
    assert last == "invalid_values: 1 of 3 pings refused: column 'ttl' has an invalid value 300 (1)"

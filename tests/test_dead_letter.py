"""Bad messages on the results queue end in the dead-letter queue; the stream never stops.

tests/test_writer.py covers garbage, truncated, oversized and wrong-version
bodies one each; here: messages that decode as msgpack but are not a valid
batch, values the table cannot hold, and a long interleaved run of bad and
good messages through one writer.
"""

from __future__ import annotations

import random

import asyncpg
import msgpack
import pytest

from shared.codec import encode_batch
from shared.constants import REASON_HEADER, Topology
from shared.settings import Settings
from tests.conftest import eventually
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


def with_fields(**changes: object) -> bytes:
    data = msgpack.unpackb(encode_batch(make_batch(fresh_target_id(), NOW_US, 3)))
    for key, value in changes.items():
        if value is None:
            data.pop(key)
        else:
            data[key] = value
    return msgpack.packb(data, use_bin_type=True)


BAD = {
    "empty body": (b"", "not msgpack"),
    "a list, not a map": (msgpack.packb([1, 2, 3]), "expected a map"),
    "no version": (with_fields(v=None), "unsupported message version None"),
    "version as text": (with_fields(v="1"), "unsupported message version '1'"),
    "short batch id": (with_fields(id=b"\x01\x02"), "batch id must be 16 bytes"),
    "no target column": (with_fields(t=None), "column 't' missing"),
    "columns of unequal length": (with_fields(ts=[NOW_US]), "not of length 3"),
    "timestamp in 1970": (with_fields(ts=[1, 2, 3]), "column 'ts' has an invalid value"),
    "target id zero": (with_fields(t=[0, 0, 0]), "column 't' has an invalid value"),
    "ttl beyond 255": (with_fields(ttl=[1, 300, 1]), "column 'ttl' has an invalid value"),
    "float rtt": (with_fields(rtt=[1.5, 2.0, 3.0]), "column 'rtt' has an invalid value"),
    "rtt too big for the table": (with_fields(rtt=[1, 2**31, 3]), "2147483648"),
    "null timestamp": (with_fields(ts=[None, NOW_US, NOW_US]), "column 'ts' has a null"),
}


@pytest.mark.parametrize("case", list(BAD))
async def test_a_message_that_is_not_a_valid_batch_is_dead_lettered_with_its_reason(
    settings: Settings, pool: asyncpg.Pool, case: str
) -> None:
    body, reason = BAD[case]
    topology = Topology(settings.amqp_prefix)
    after = fresh_target_id()
    async with broker_channel(settings) as channel, running_writer(settings) as writer:
        await publish(channel, settings, body, encode_batch(make_batch(after, NOW_US, 4)))
        await eventually(lambda: count(pool, after))
        await eventually(reached(writer, "dead_lettered", 1))
        dead = await channel.basic_get(topology.dead_queue, no_ack=True)
        assert await queue_depth(channel, topology.results_queue) == 0
    assert dead.body == body
    assert reason in str((dead.header.properties.headers or {})[REASON_HEADER])
    assert (writer.stats.dead_lettered, writer.stats.batches) == (1, 1)
    assert await count(pool, after) == 4


async def test_a_long_run_of_bad_messages_among_good_ones_never_stops_the_writer(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    topology = Topology(settings.amqp_prefix)
    rng = random.Random(7)
    good_targets = [fresh_target_id() for _ in range(40)]
    bad_bodies = [BAD[case][0] for case in BAD] * 4
    stream = [encode_batch(make_batch(t, NOW_US, 10)) for t in good_targets] + bad_bodies
    rng.shuffle(stream)
    async with broker_channel(settings) as channel, running_writer(settings) as writer:
        await publish(channel, settings, *stream)
        await eventually(reached(writer, "batches", len(good_targets)), timeout=20)
        await eventually(reached(writer, "dead_lettered", len(bad_bodies)), timeout=20)
        assert await queue_depth(channel, topology.results_queue) == 0
        assert await queue_depth(channel, topology.dead_queue) == len(bad_bodies)
        # Still consuming: a good batch published now is stored.
        last = fresh_target_id()
        await publish(channel, settings, encode_batch(make_batch(last, NOW_US, 2)))
        await eventually(lambda: count(pool, last))
    assert await count(pool, *good_targets) == 400
    assert writer.stats.write_failures == 0

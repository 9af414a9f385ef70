"""Bad messages on the results queue end in the dead-letter queue; the stream never stops.

tests/test_writer.py covers garbage, truncated, oversized and wrong-version
bodies one each; here: messages that decode as msgpack but are not a valid
batch (dead-lettered whole), values the tables cannot hold (only the pings
holding them dead-lettered, the rest stored, exactly once), and a long
interleaved run of bad and good messages through one writer.
"""

from __future__ import annotations

import random
import uuid

import asyncpg
import msgpack
import pytest

from shared.codec import derived_batch_id, encode_batch
from shared.constants import BATCH_ID_HEADER, REASON_CODE_HEADER, REASON_HEADER, Topology
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


# Dead-lettered whole, as they came: (body, reason, reason code). The last three
# are valid messages every ping of which holds a bad value.
BAD = {
    "empty body": (b"", "not msgpack", "not_msgpack"),
    "a list, not a map": (msgpack.packb([1, 2, 3]), "expected a map", "bad_shape"),
    "no version": (with_fields(v=None), "unsupported message version None", "bad_version"),
    "version as text": (with_fields(v="1"), "unsupported message version '1'", "bad_version"),
    "short batch id": (with_fields(id=b"\x01\x02"), "batch id must be 16 bytes", "bad_shape"),
    "no target column": (with_fields(t=None), "column 't' missing", "bad_shape"),
    "columns of unequal length": (with_fields(ts=[NOW_US]), "not of length 3", "bad_shape"),
    "timestamp in 1970": (
        with_fields(ts=[1, 2, 3]),
        "column 'ts' has an invalid value",
        "invalid_values",
    ),
    "target id zero": (
        with_fields(t=[0, 0, 0]),
        "column 't' has an invalid value",
        "invalid_values",
    ),
    "float rtt": (
        with_fields(rtt=[1.5, 2.0, 3.0]),
        "column 'rtt' has an invalid value",
        "invalid_values",
    ),
}
# One ping of three holds a bad value: (body, the bad ping's position, its reason).
PARTLY_BAD = {
    "ttl beyond 255": (with_fields(ttl=[1, 300, 1]), 1, "column 'ttl' has an invalid value 300"),
    "rtt too big for the table": (
        with_fields(rtt=[1, 2**31, 3]),
        1,
        "column 'rtt' has an invalid value 2147483648",
    ),
    "null timestamp": (with_fields(ts=[None, NOW_US, NOW_US + 1]), 0, "column 'ts' has a null"),
}


@pytest.mark.parametrize("case", list(BAD))
async def test_a_message_that_is_not_a_valid_batch_is_dead_lettered_with_its_reason(
    settings: Settings, pool: asyncpg.Pool, case: str
) -> None:
    body, reason, code = BAD[case]
    topology = Topology(settings.amqp_prefix)
    after = fresh_target_id()
    async with broker_channel(settings) as channel, running_writer(settings) as writer:
        await publish(channel, settings, body, encode_batch(make_batch(after, NOW_US, 4)))
        await eventually(lambda: count(pool, after))
        await eventually(reached(writer, "dead_lettered", 1))
        dead = await channel.basic_get(topology.dead_queue, no_ack=True)
        assert await queue_depth(channel, topology.results_queue) == 0
    assert dead.body == body
    headers = dead.header.properties.headers or {}
    assert reason in str(headers[REASON_HEADER])
    assert headers[REASON_CODE_HEADER] == code
    assert (writer.stats.dead_lettered, writer.stats.batches) == (1, 1)
    assert await count(pool, after) == 4


@pytest.mark.parametrize("case", list(PARTLY_BAD))
async def test_only_the_pings_holding_a_bad_value_are_dead_lettered_and_once_stored(
    settings: Settings, pool: asyncpg.Pool, case: str
) -> None:
    body, bad, reason = PARTLY_BAD[case]
    topology = Topology(settings.amqp_prefix)
    sent = msgpack.unpackb(body)
    target = sent["t"][0]
    async with broker_channel(settings) as channel, running_writer(settings) as writer:
        await publish(channel, settings, body)
        await eventually(reached(writer, "batches", 1))
        # Delivered again: the good pings are a duplicate, the bad one is
        # dead-lettered again under the same id.
        await publish(channel, settings, body)
        await eventually(reached(writer, "duplicates", 1))
        dead = [await channel.basic_get(topology.dead_queue, no_ack=True) for _ in range(2)]
        assert await queue_depth(channel, topology.results_queue) == 0
        assert await queue_depth(channel, topology.dead_queue) == 0
    assert await count(pool, target) == 2
    part = msgpack.unpackb(dead[0].body)
    columns = ("t", "ts", "rtt", "ttl", "hops")
    assert [part[c] for c in columns] == [[sent[c][bad]] for c in columns]  # as it came
    assert part["id"] == derived_batch_id(sent["id"], "invalid_values")
    assert part["why"] == {"t": [reason]}
    props = dead[0].header.properties
    headers = props.headers or {}
    assert str(headers[REASON_HEADER]) == f"invalid_values: 1 of 3 pings refused: {reason} (1)"
    assert headers[REASON_CODE_HEADER] == "invalid_values"
    assert headers[BATCH_ID_HEADER] == str(uuid.UUID(bytes=sent["id"]))
    assert headers["x-origin"] == "test"
    assert props.message_id == str(uuid.UUID(bytes=part["id"]))
    assert (dead[1].body, dead[1].header.properties.message_id) == (dead[0].body, props.message_id)
    stored = await pool.fetchval(
        "SELECT rows FROM ingested_batches WHERE batch_id = $1", uuid.UUID(bytes=sent["id"])
    )
    assert stored == 2
    assert (writer.stats.invalid, writer.stats.rows, writer.stats.dead_lettered) == (2, 2, 2)


async def test_one_bad_value_in_a_batch_of_5000_refuses_one_ping(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    topology = Topology(settings.amqp_prefix)
    target = fresh_target_id()
    batch = make_batch(target, NOW_US - 6000 * 1_000_000, 5000)
    data = msgpack.unpackb(encode_batch(batch))
    data["rtt"][2345] = -1
    async with broker_channel(settings) as channel, running_writer(settings) as writer:
        await publish(channel, settings, msgpack.packb(data, use_bin_type=True))
        await eventually(reached(writer, "dead_lettered", 1))
        await eventually(reached(writer, "batches", 1))
        dead = await channel.basic_get(topology.dead_queue, no_ack=True)
    assert await count(pool, target) == 4999
    part = msgpack.unpackb(dead.body)
    assert (part["ts"], part["rtt"]) == ([batch.ts[2345]], [-1])
    assert part["why"] == {"t": ["column 'rtt' has an invalid value -1"]}


async def test_a_long_run_of_bad_messages_among_good_ones_never_stops_the_writer(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    topology = Topology(settings.amqp_prefix)
    rng = random.Random(7)
    good_targets = [fresh_target_id() for _ in range(40)]
    bad_bodies = [BAD[case][0] for case in BAD] * 4
    partly_bad = [PARTLY_BAD[case][0] for case in PARTLY_BAD] * 4
    stream = [encode_batch(make_batch(t, NOW_US, 10)) for t in good_targets]
    stream += bad_bodies + partly_bad
    rng.shuffle(stream)
    async with broker_channel(settings) as channel, running_writer(settings) as writer:
        await publish(channel, settings, *stream)
        await eventually(reached(writer, "batches", len(good_targets)), timeout=20)
        # Each partly bad message is stored once and its bad ping dead-lettered
        # every time it comes (the same dead letter, under one id).
        dead = len(bad_bodies) + len(partly_bad)
        await eventually(reached(writer, "dead_lettered", dead), timeout=20)
        await eventually(reached(writer, "duplicates", len(partly_bad) - len(PARTLY_BAD)))
        assert await queue_depth(channel, topology.results_queue) == 0
        assert await queue_depth(channel, topology.dead_queue) == dead
        # Still consuming: a good batch published now is stored.
        last = fresh_target_id()
        await publish(channel, settings, encode_batch(make_batch(last, NOW_US, 2)))
        await eventually(lambda: count(pool, last))
    assert await count(pool, *good_targets) == 400
    partly_targets = [msgpack.unpackb(body)["t"][0] for body, _, _ in PARTLY_BAD.values()]
    assert await count(pool, *partly_targets) == 2 * len(PARTLY_BAD)
    assert writer.stats.write_failures == 0

"""`pingtrack dead-letters list|show|replay` against the real broker, writer and database.

Replay re-ingests exactly once: each dead letter keeps the batch id it
carries (a refused part's is derived from its batch's and never claimed), so
a letter replayed twice, or with its twin from a redelivery, is stored once.
"""

from __future__ import annotations

import re
import uuid

import aiormq.abc
import asyncpg
import msgpack
import pytest
from pamqp import commands as spec

from shared.codec import derived_batch_id, encode_batch
from shared.constants import Topology
from shared.settings import Settings
from tests.conftest import eventually
from tests.test_cli_targets import pingtrack
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

MINUTE_US = 60_000_000


@pytest.fixture
def cli_env(settings: Settings) -> dict[str, str]:
    return {
        "PINGTRACK_DATABASE_URL": settings.database_url,
        "PINGTRACK_AMQP_URL": settings.amqp_url,
        "PINGTRACK_AMQP_PREFIX": settings.amqp_prefix,
        # The CLI logs to the runner's stream, closed after each call; the
        # writer running beside it logs its dead letters at WARNING.
        "PINGTRACK_LOG_LEVEL": "ERROR",
        "COLUMNS": "200",
    }


def with_bad_ttl(target: int, n: int, bad: int) -> bytes:
    data = msgpack.unpackb(encode_batch(make_batch(target, NOW_US, n)))
    data["ttl"][bad] = 300
    packed: bytes = msgpack.packb(data, use_bin_type=True)
    return packed


def ids_listed(output: str) -> list[str]:
    return re.findall(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", output)


async def test_list_and_show_leave_every_dead_letter_where_it_was(
    settings: Settings, cli_env: dict[str, str]
) -> None:
    topology = Topology(settings.amqp_prefix)
    target = fresh_target_id()
    body = with_bad_ttl(target, 3, 1)
    part_id = str(uuid.UUID(bytes=derived_batch_id(msgpack.unpackb(body)["id"], "invalid_values")))
    async with broker_channel(settings) as channel, running_writer(settings) as writer:
        await publish(channel, settings, b"\xc1 garbage", body)
        await eventually(reached(writer, "dead_lettered", 2))
        first = await pingtrack(cli_env, "dead-letters", "list")
        again = await pingtrack(cli_env, "dead-letters", "list", "--limit", "1")
        shown = await pingtrack(cli_env, "dead-letters", "show", part_id)
        missing = await pingtrack(cli_env, "dead-letters", "show", str(uuid.uuid4()))
        # Every letter looked at is back (a quorum queue counts it a moment later).
        await eventually(lambda: _depth_is(channel, topology.dead_queue, 2))
    assert first.exit_code == 0, first.output
    assert f"{topology.dead_queue}: 2 dead letters, the first 2" in first.output
    assert "by reason code (of these 2): not_msgpack 1, invalid_values 1" in first.output
    assert part_id in ids_listed(first.output)
    assert "the first 1" in again.output and "not_msgpack 1" in again.output
    assert shown.exit_code == 0, shown.output
    assert "reason code: invalid_values" in shown.output
    assert "invalid_values: 1 of 3 pings refused: column 'ttl' has an invalid value 300" in (
        shown.output
    )
    assert "now: 0 pings storable now, 1 still refused" in shown.output
    assert "column 'ttl' has an invalid value 300" in shown.output.split("pings (the first")[1]
    assert missing.exit_code == 1 and "no dead letter matches" in missing.output


async def test_replay_after_the_window_was_raised_stores_each_ping_once(
    settings: Settings, cli_env: dict[str, str], pool: asyncpg.Pool
) -> None:
    """Refused as too late by a writer with a 2 h dedup window; the operator raises
    the window and replays: every ping stored once, though the refused part came
    twice (a redelivery) and one letter is replayed twice."""
    short = settings.model_copy(update={"dedup_window_h": 2})
    topology = Topology(settings.amqp_prefix)
    old, mixed, bad = fresh_target_id(), fresh_target_id(), fresh_target_id()
    whole = encode_batch(make_batch(old, NOW_US - 90 * MINUTE_US, 5))
    split = make_batch(mixed, NOW_US - 90 * MINUTE_US, 4)
    for ts in make_batch(mixed, NOW_US - 10 * MINUTE_US, 3).ts:
        split.append(mixed, ts, 300, 61, 3)
    async with broker_channel(settings) as channel:
        async with running_writer(short) as writer:
            await publish(channel, short, whole, encode_batch(split), encode_batch(split))
            await publish(channel, short, with_bad_ttl(bad, 2, 0))
            await eventually(reached(writer, "dead_lettered", 4))
        assert await count(pool, old, mixed, bad) == 3 + 1  # split's fresh part, bad's good ping
        assert await queue_depth(channel, topology.dead_queue) == 4
        # A copy of the first dead letter (the old batch), as if a replay of it
        # had published it and then lost its ack.
        copy = await channel.basic_get(topology.dead_queue, no_ack=False)
        assert copy.delivery_tag is not None
        await channel.basic_nack(copy.delivery_tag, requeue=True)

        async with running_writer(settings) as writer:  # the default window: a week
            replayed = await pingtrack(cli_env, "dead-letters", "replay", "--reason", "too_late")
            await eventually(reached(writer, "duplicates", 1))
            await eventually(reached(writer, "batches", 2))
            again = await pingtrack(cli_env, "dead-letters", "replay", "--reason", "too_late")
            await channel.basic_publish(
                copy.body,
                exchange=topology.dead_exchange,
                routing_key="",
                properties=spec.Basic.Properties(
                    headers=copy.header.properties.headers,
                    message_id=copy.header.properties.message_id,
                ),
            )
            twice = await pingtrack(
                cli_env, "dead-letters", "replay", str(copy.header.properties.message_id)
            )
            await eventually(reached(writer, "duplicates", 2))
            # Not fixed: the bad ttl comes back to the queue, nothing of it is stored.
            unfixed = await pingtrack(
                cli_env, "dead-letters", "replay", "--reason", "invalid_values"
            )
            await eventually(reached(writer, "dead_lettered", 1))
            assert await queue_depth(channel, topology.results_queue) == 0
            assert await queue_depth(channel, topology.dead_queue) == 1
        nothing = await pingtrack(cli_env, "dead-letters", "replay")
    assert replayed.exit_code == 0, replayed.output
    assert "replayed 3 dead letters (13 pings)" in replayed.output
    assert "replayed 0 dead letters" in again.output
    assert twice.exit_code == 0 and "replayed 1 dead letters (5 pings)" in twice.output
    assert "replayed 1 dead letters (1 pings)" in unfixed.output
    assert nothing.exit_code == 2 and "say which" in nothing.output
    assert await count(pool, old) == 5
    assert await count(pool, mixed) == 7
    assert await count(pool, bad) == 1
    late_part = derived_batch_id(split.batch_id, "too_late")
    claimed = await pool.fetch(
        "SELECT batch_id, rows FROM ingested_batches WHERE batch_id = ANY($1::uuid[])",
        [uuid.UUID(bytes=b) for b in (msgpack.unpackb(whole)["id"], split.batch_id, late_part)],
    )
    assert sorted(row["rows"] for row in claimed) == [3, 4, 5]
    assert (writer.stats.batches, writer.stats.duplicates) == (2, 2)


async def _depth_is(channel: aiormq.abc.AbstractChannel, queue: str, depth: int) -> bool:
    return await queue_depth(channel, queue) == depth

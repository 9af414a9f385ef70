"""Results older than the dedup window are refused as too_late, never written twice
(real RabbitMQ and PostgreSQL; the rule is in writer_service/store.py)."""

from __future__ import annotations

import uuid
from datetime import timedelta

import asyncpg
import pytest

from shared.codec import ProbeDetail, decode_batch, encode_batch
from shared.constants import BATCH_ID_HEADER, REASON_HEADER, Topology
from shared.errors import ConfigError
from shared.settings import Settings, load_settings
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
from writer_service.rows import late_batch_id
from writer_service.store import PingStore, create_writer_pool

MINUTE_US = 60_000_000
DAY_US = 86_400_000_000


async def claimed_rows(pool: asyncpg.Pool, batch_id: bytes) -> int | None:
    rows: int | None = await pool.fetchval(
        "SELECT rows FROM ingested_batches WHERE batch_id = $1", uuid.UUID(bytes=batch_id)
    )
    return rows


async def test_a_batch_older_than_the_window_goes_whole_to_the_dead_letter_queue(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    topology = Topology(settings.amqp_prefix)
    old, after = fresh_target_id(), fresh_target_id()
    stale = make_batch(old, NOW_US - 8 * DAY_US, 3)  # default window: 7 days
    body = encode_batch(stale)
    async with broker_channel(settings) as channel, running_writer(settings) as writer:
        await publish(channel, settings, body, encode_batch(make_batch(after, NOW_US, 4)))
        await eventually(lambda: count(pool, after))
        await eventually(reached(writer, "dead_lettered", 1))
        dead = await channel.basic_get(topology.dead_queue, no_ack=True)
        assert await queue_depth(channel, topology.results_queue) == 0
    assert dead.body == body  # as it came
    reason = str((dead.header.properties.headers or {})[REASON_HEADER])
    assert reason.startswith("too_late: 3 of 3 pings")
    assert "past the 168 h dedup window less 1 h: a replay of them could not be" in reason
    assert (writer.stats.too_late, writer.stats.batches) == (3, 1)
    assert await count(pool, old) == 0
    assert await claimed_rows(pool, stale.batch_id) is None


async def test_only_the_too_late_results_of_a_batch_are_refused(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    short = settings.model_copy(update={"dedup_window_h": 2})  # refused: over 1 h old
    topology = Topology(short.amqp_prefix)
    target = fresh_target_id()
    batch = make_batch(target, NOW_US - 90 * MINUTE_US, 4)
    for ping in make_batch(target, NOW_US - 10 * MINUTE_US, 6).ts:
        batch.append(target, ping, 300, 61, 3)
    for ts in (batch.ts[0], batch.ts[-1]):
        batch.details.append(ProbeDetail(target, ts, 200, 1500, None, None))
    body = encode_batch(batch)
    async with broker_channel(short) as channel, running_writer(short) as writer:
        await publish(channel, short, body)
        await eventually(reached(writer, "batches", 1))
        dead = await channel.basic_get(topology.dead_queue, no_ack=True)

        # Delivered again: the stored part is a duplicate; the refused part is
        # dead-lettered again, under the same message id.
        await publish(channel, short, body)
        await eventually(reached(writer, "duplicates", 1))
        again = await channel.basic_get(topology.dead_queue, no_ack=True)
        assert await queue_depth(channel, topology.results_queue) == 0

    stored = await pool.fetch(
        "SELECT (extract(epoch FROM ts) * 1e6)::bigint AS us FROM pings"
        " WHERE target_id = $1 ORDER BY ts",
        target,
    )
    assert [row["us"] for row in stored] == batch.ts[4:]
    assert await claimed_rows(pool, batch.batch_id) == 6
    assert (
        await pool.fetchval("SELECT count(*) FROM probe_details WHERE target_id = $1", target) == 1
    )

    late = decode_batch(dead.body)
    assert (late.ts, late.batch_id) == (batch.ts[:4], late_batch_id(batch.batch_id))
    assert [d.ts for d in late.details] == [batch.ts[0]]
    props = dead.header.properties
    headers = props.headers or {}
    assert str(headers[REASON_HEADER]).startswith(
        "too_late: 4 of 10 pings (with 1 probe details) from before "
    )
    assert headers[BATCH_ID_HEADER] == str(uuid.UUID(bytes=batch.batch_id))
    assert headers["x-origin"] == "test"
    assert props.message_id == str(uuid.UUID(bytes=late.batch_id))
    assert props.delivery_mode == 2
    assert (again.body, again.header.properties.message_id) == (dead.body, props.message_id)
    assert (writer.stats.too_late, writer.stats.rows, writer.stats.dead_lettered) == (8, 6, 2)


async def test_a_batch_replayed_after_its_id_was_pruned_is_refused_not_written_twice(
    settings: Settings, own_database_url: str
) -> None:
    """Stored 2.5 h ago, its day packed, its id pruned by a 2 h window: a replay now
    is what neither the batch ids nor the primary key can recognise."""
    short = settings.model_copy(update={"database_url": own_database_url, "dedup_window_h": 2})
    topology = Topology(short.amqp_prefix)
    target = fresh_target_id()
    batch = make_batch(target, NOW_US - 150 * MINUTE_US, 10)
    body = encode_batch(batch)
    pool = await create_writer_pool(short)
    try:
        back_then = PingStore(pool, dedup_window=timedelta(days=7))
        assert (await back_then.write([batch])).rows == 10
        async with pool.acquire() as conn:
            await conn.execute(
                "UPDATE ingested_batches SET received_at = now() - interval '150 minutes'"
            )
            await conn.execute("SELECT ladder_pack_partition(part) FROM ladder_ping_partitions()")
        assert await PingStore(pool, dedup_window=short.dedup_window).prune_batch_ids() == 1

        async with broker_channel(short) as channel, running_writer(short) as writer:
            await publish(channel, short, body)
            await eventually(reached(writer, "dead_lettered", 1))
            dead = await channel.basic_get(topology.dead_queue, no_ack=True)
        assert dead.body == body
        assert str((dead.header.properties.headers or {})[REASON_HEADER]).startswith("too_late")

        async with pool.acquire() as conn:
            stored = "SELECT count(*) FROM raw_pings($1, '-infinity', 'infinity')"
            assert await conn.fetchval(stored, target) == 10
            assert await conn.fetchval("SELECT count(*) FROM ingested_batches") == 0
            # What the rule prevents: the store alone takes the replay a second time.
            assert (await back_then.write([batch])).rows == 10
            assert await conn.fetchval(stored, target) == 20
    finally:
        await pool.close()


def test_the_window_must_be_longer_than_the_margin() -> None:
    with pytest.raises(ConfigError, match="PINGTRACK_DEDUP_WINDOW_H"):
        load_settings(dedup_window_h=1)

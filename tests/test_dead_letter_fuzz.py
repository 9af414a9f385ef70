"""Hypothesis over the results codec and the writer's handling of a message.

Arbitrary bytes and mutated valid batches (a cell, a column or a key
replaced by any msgpack value, keys dropped or added, bytes flipped or cut):
no exception but MalformedMessage (with a reason and a reason code) escapes
the decoder; what it keeps is storable; what it refuses carries a reason per
result and is refused again, whole and for the same reasons, when replayed;
the writer's split loses no ping. The bulk is pure; a sample goes through a
real writer, broker and database: every message is stored or dead-lettered
with a reason, and the writer never stops.

PINGTRACK_FUZZ_EXAMPLES sets the number of pure examples per test (default
300); PINGTRACK_FUZZ_WRITER_EXAMPLES the writer's sample (default 30). The
counts of the last long run are in RELIABILITY.md ("Bad input").
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import asyncpg
import msgpack
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from shared.codec import ResultBatch, decode_batch, decode_results, encode_batch
from shared.constants import REASON_CODE_HEADER, REASON_HEADER, DeadReason, Topology
from shared.errors import MalformedMessage
from shared.settings import Settings
from shared.validation import TS_MAX, TS_MIN
from tests.conftest import eventually
from tests.test_writer import (
    NOW_US,
    broker_channel,
    count,
    fresh_target_id,
    make_batch,
    publish,
    queue_depth,
    running_writer,
)
from writer_service.triage import triage

EXAMPLES = int(os.environ.get("PINGTRACK_FUZZ_EXAMPLES", "300"))
WRITER_EXAMPLES = int(os.environ.get("PINGTRACK_FUZZ_WRITER_EXAMPLES", "30"))
PURE = settings(max_examples=EXAMPLES, deadline=None)
CODES = {code.value for code in DeadReason}

# Any value msgpack carries (integers within its 64-bit range).
scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=True)
    | st.text(max_size=20)
    | st.binary(max_size=20)
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=12,
)
PING_KEYS = ("t", "ts", "rtt", "ttl", "hops")
SECTION_KEYS = {
    "addr": ("target_id", "ts", "address", "error"),
    "detail": ("target_id", "ts", "status", "ttfb", "cert_expires", "error"),
}


@st.composite
def valid_messages(draw: st.DrawFn) -> dict[str, Any]:
    """A valid results message as its map: pings, maybe address records and details."""
    n = draw(st.integers(0, 6))
    batch = make_batch(draw(st.integers(1, 2**40)), NOW_US - draw(st.integers(0, 10**10)), n)
    data: dict[str, Any] = msgpack.unpackb(encode_batch(batch))
    if n and draw(st.booleans()):
        data["detail"] = {
            "target_id": data["t"][:1],
            "ts": data["ts"][:1],
            "status": [200],
            "ttfb": [1000],
            "cert_expires": [None],
            "error": [None],
        }
    if draw(st.booleans()):
        data["addr"] = {
            "target_id": [7, 7],
            "ts": [NOW_US, NOW_US + 1],
            "address": ["127.0.0.1", None],
            "error": [None, "no such name"],
        }
    return data


@st.composite
def mutated_messages(draw: st.DrawFn) -> bytes:
    data = draw(valid_messages())
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["cell", "column", "key", "drop", "section cell"]))
        if kind == "cell":
            column = data.get(draw(st.sampled_from(PING_KEYS)))
            if isinstance(column, list) and column:
                column[draw(st.integers(0, len(column) - 1))] = draw(values)
        elif kind == "column":
            data[draw(st.sampled_from(PING_KEYS))] = draw(values)
        elif kind == "key":
            data[draw(st.sampled_from(["v", "id", "prober", "addr", "detail", "extra"]))] = draw(
                values
            )
        elif kind == "drop":
            data.pop(draw(st.sampled_from(sorted(data))), None)
        elif kind == "section cell":
            name = draw(st.sampled_from(sorted(SECTION_KEYS)))
            section = data.get(name)
            if isinstance(section, dict) and section.get("target_id"):
                column = section[draw(st.sampled_from(SECTION_KEYS[name]))]
                if isinstance(column, list) and column:
                    column[draw(st.integers(0, len(column) - 1))] = draw(values)
    body: bytes = msgpack.packb(data, use_bin_type=True)
    if draw(st.integers(0, 9)) == 0:  # now and then, damage the bytes themselves
        cut = draw(st.integers(0, len(body)))
        body = body[:cut] + draw(st.binary(max_size=4)) + body[cut + 1 :]
    return body


def check(body: bytes) -> tuple[ResultBatch, Any] | None:
    """Decode `body`; assert the codec's promises. None when refused whole."""
    try:
        batch, invalid = decode_results(body)
    except MalformedMessage as exc:
        assert str(exc) and exc.code in CODES
        event(f"refused whole: {exc.code}")
        return None
    # What is kept is storable: it round-trips through the strict decoder.
    again = decode_batch(encode_batch(batch))
    assert (again.target_ids, again.ts, again.rtt, again.ttl, again.hops) == (
        batch.target_ids,
        batch.ts,
        batch.rtt,
        batch.ttl,
        batch.hops,
    )
    assert all(TS_MIN <= ts <= TS_MAX for ts in batch.ts)
    event("some results refused" if invalid is not None else "all results storable")
    if invalid is not None:
        reasons = invalid.reasons()
        assert reasons and all(isinstance(r, str) and r for r in reasons)
        assert len(batch) + len(invalid) == invalid.total
        assert invalid.summary().startswith("invalid_values: ")
        # A refused part, replayed unchanged, is refused whole for the same reasons.
        kept, still = decode_results(invalid.encode())
        assert kept.empty and still is not None and still.reasons() == reasons
    return batch, invalid


@PURE
@given(st.binary(max_size=300))
def test_arbitrary_bytes_are_decoded_or_refused_with_a_reason(body: bytes) -> None:
    check(body)


@PURE
@given(mutated_messages())
def test_mutated_batches_keep_what_is_storable_and_give_a_reason_for_the_rest(
    body: bytes,
) -> None:
    check(body)


@PURE
@given(mutated_messages(), st.integers(NOW_US - 10**11, NOW_US), st.integers(2, 500))
def test_the_writer_split_loses_no_ping(body: bytes, oldest: int, window_h: int) -> None:
    decoded = check(body)
    if decoded is None:
        return
    batch, invalid = decoded
    plan = triage(batch, invalid, oldest, timedelta(hours=window_h))
    kept = 0 if plan.keep is None else len(plan.keep)
    total = len(batch) + (0 if invalid is None else len(invalid))
    assert kept + sum(part.pings for part in plan.dead) == total
    assert all(part.reason and part.code in CODES for part in plan.dead)
    assert plan.keep is not None or plan.dead


@pytest.mark.timeout(300)
@settings(
    max_examples=WRITER_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=st.binary(max_size=200) | mutated_messages())
async def test_a_real_writer_stores_or_dead_letters_every_message_and_goes_on(
    own_writer: tuple[Settings, Any, asyncpg.Pool], body: bytes
) -> None:
    own, channel, pool = own_writer
    topology = Topology(own.amqp_prefix)
    marker = fresh_target_id()
    # Handled in order: once the marker batch behind it is stored, the body had its fate.
    await publish(channel, own, body, encode_batch(make_batch(marker, NOW_US, 1)))
    await eventually(lambda: count(pool, marker), timeout=20)

    async def drained() -> bool:  # a quorum queue's count follows the acks a moment later
        return await queue_depth(channel, topology.results_queue) == 0

    await eventually(drained)
    while True:
        dead = await channel.basic_get(topology.dead_queue, no_ack=True)
        if dead.delivery_tag is None:
            break
        headers = dead.header.properties.headers or {}
        assert str(headers[REASON_HEADER]) and headers[REASON_CODE_HEADER] in CODES
        # The codec refuses whatever the database would: it never gets to say no.
        assert headers[REASON_CODE_HEADER] != DeadReason.DATABASE_REJECTED
        event(f"dead-lettered: {headers[REASON_CODE_HEADER]}")


@pytest.fixture
async def own_writer(
    settings: Settings, own_database_url: str
) -> Any:  # an async generator fixture: (settings, channel, pool)
    own = settings.model_copy(update={"database_url": own_database_url})
    pool = await asyncpg.create_pool(own_database_url, min_size=1, max_size=2)
    try:
        async with broker_channel(own) as channel, running_writer(own) as writer:
            yield own, channel, pool
            assert (writer.stats.write_failures, writer.stats.dead_letter_refused) == (0, 0)
            assert writer.stats.batches >= 1
    finally:
        await pool.close()

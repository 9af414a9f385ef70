"""Result batches with resolution records and probe details: codec and writer.

Old messages (no sections) still decode and store; unknown keys are ignored;
a malformed section is dead-lettered with its reason (a bad value: only its
result, a ping with its probe detail); sections are written once with their
batch, however often it is delivered.
"""

from __future__ import annotations

import uuid

import asyncpg
import msgpack
import pytest

from shared.codec import (
    AddressRecord,
    ProbeDetail,
    ResultBatch,
    decode_batch,
    encode_batch,
)
from shared.errors import MalformedMessage
from shared.settings import Settings
from tests.conftest import eventually
from tests.test_writer import (
    NOW_US,
    broker_channel,
    fresh_target_id,
    publish,
    reached,
    running_writer,
)

pytestmark = pytest.mark.timeout(30)
EXPIRES = 1_900_000_000_000_000


def probe_batch(target_id: int) -> ResultBatch:
    batch = ResultBatch(prober="p")
    batch.addresses.append(AddressRecord(target_id, NOW_US, "127.0.3.4", None))
    batch.addresses.append(AddressRecord(target_id, NOW_US + 5, None, "name not found"))
    batch.append(target_id, NOW_US + 10, 1500, None, None)
    batch.details.append(ProbeDetail(target_id, NOW_US + 10, 200, 700, EXPIRES, None))
    batch.append(target_id, NOW_US + 20, None, None, None)
    batch.details.append(ProbeDetail(target_id, NOW_US + 20, None, None, None, "timeout"))
    return batch


def test_sections_round_trip() -> None:
    batch = probe_batch(9)
    decoded = decode_batch(encode_batch(batch))
    assert decoded.addresses == batch.addresses
    assert decoded.details == batch.details
    assert decoded.rtt == [1500, None]


def test_an_icmp_batch_carries_no_sections_on_the_wire() -> None:
    batch = ResultBatch(prober="p")
    batch.append(1, NOW_US, 100, 64, 0)
    assert set(msgpack.unpackb(encode_batch(batch))) == {
        "v", "id", "prober", "t", "ts", "rtt", "ttl", "hops",
    }  # fmt: skip


def _with(**changes: object) -> bytes:
    data = msgpack.unpackb(encode_batch(probe_batch(3)))
    for key, value in changes.items():
        section, _, column = key.partition("__")
        if column:
            data[section][column] = value
        else:
            data[section] = value
    return msgpack.packb(data, use_bin_type=True)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (_with(addr=[1, 2]), "section 'addr' must be a map"),
        (_with(addr__address=["127.0.0.1"]), "column 'address' missing or not of length 2"),
        (_with(addr__address=["300.1.1.1", None]), "not an IP address"),
        (_with(addr__error=["x", "name not found"]), "needs an address or an error"),
        (_with(detail__status=[42, None]), "column 'status' has an invalid value 42"),
        (_with(detail__error=[None, 7]), "column 'error' has an invalid value 7"),
        (_with(detail__ttfb=[-1, None]), "column 'ttfb' has an invalid value -1"),
    ],
)
def test_malformed_sections_are_rejected_with_the_reason(body: bytes, reason: str) -> None:
    with pytest.raises(MalformedMessage, match=reason):
        decode_batch(body)


def test_unknown_keys_are_ignored() -> None:
    decoded = decode_batch(_with(future={"anything": [1]}))
    assert len(decoded.details) == 2


async def test_writer_stores_old_and_new_batches_and_dead_letters_a_bad_probe_result(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    old_target, new_target, bad_target = fresh_target_id(), fresh_target_id(), fresh_target_id()
    # A message as the first probers wrote it: no optional section at all.
    old = msgpack.packb(
        {
            "v": 1, "id": uuid.uuid4().bytes, "prober": "old", "t": [old_target],
            "ts": [NOW_US], "rtt": [321], "ttl": [64], "hops": [0],
        },
        use_bin_type=True,
    )  # fmt: skip
    new = encode_batch(probe_batch(new_target))
    bad = probe_batch(bad_target)
    bad.details[0] = ProbeDetail(bad_target, NOW_US + 10, 999, None, None, None)
    async with broker_channel(settings) as channel, running_writer(settings) as writer:
        await publish(channel, settings, old, new, new, encode_batch(bad))
        await eventually(reached(writer, "dead_lettered", 1))
        await eventually(reached(writer, "duplicates", 1))
        await eventually(reached(writer, "batches", 3))
    # The bad batch's good results are stored: its two address records, its
    # second ping and that ping's detail.
    assert writer.stats.addresses == 4 and writer.stats.details == 3
    assert await pool.fetchval("SELECT rtt_us FROM pings WHERE target_id = $1", old_target) == 321
    addresses = await pool.fetch(
        "SELECT host(address) AS address, error FROM target_addresses"
        " WHERE target_id = $1 ORDER BY ts",
        new_target,
    )
    assert [tuple(r) for r in addresses] == [("127.0.3.4", None), (None, "name not found")]
    details = await pool.fetch(
        "SELECT d.status, d.ttfb_us, d.error, p.rtt_us,"
        " (extract(epoch FROM d.cert_expires_at) * 1e6)::bigint AS expires"
        " FROM probe_details d JOIN pings p USING (target_id, ts)"
        " WHERE target_id = $1 ORDER BY ts",
        new_target,
    )
    assert [tuple(r) for r in details] == [
        (200, 700, None, 1500, EXPIRES),
        (None, None, "timeout", None, None),
    ]
    # Its first ping went to the dead-letter queue with its detail (status 999).
    for table, left in (("pings", 1), ("target_addresses", 2), ("probe_details", 1)):
        n = await pool.fetchval(f"SELECT count(*) FROM {table} WHERE target_id = $1", bad_target)
        assert n == left, table
    assert (
        await pool.fetchval("SELECT error FROM probe_details WHERE target_id = $1", bad_target)
        == "timeout"
    )

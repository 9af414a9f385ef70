import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.codec import (
    AddressRecord,
    ProbeDetail,
    ResultBatch,
    TargetSpec,
    decode_batch,
    decode_command,
    decode_results,
    derived_batch_id,
    encode_batch,
    encode_command,
)
from shared.errors import MalformedMessage

TS = 1_764_000_000_000_000

rows = st.lists(
    st.tuples(
        st.integers(1, 2**40),
        st.integers(TS, TS + 10**12),
        st.none() | st.integers(0, 2_147_483_647),
        st.none() | st.integers(0, 255),
        st.none() | st.integers(0, 255),
    ),
    max_size=50,
)


@given(rows)
def test_batch_round_trips(values: list[tuple]) -> None:
    batch = ResultBatch(prober="p1")
    for row in values:
        batch.append(*row)
    decoded = decode_batch(encode_batch(batch))
    assert decoded.batch_id == batch.batch_id
    assert decoded.prober == "p1"
    assert (
        list(
            zip(decoded.target_ids, decoded.ts, decoded.rtt, decoded.ttl, decoded.hops, strict=True)
        )
        == values
    )


def _body(**changes: object) -> bytes:
    batch = ResultBatch(prober="p")
    batch.append(1, TS, 250, 64, 0)
    data = msgpack.unpackb(encode_batch(batch))
    data.update(changes)
    return msgpack.packb({k: v for k, v in data.items() if v is not ...}, use_bin_type=True)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"\xc1garbage", "not msgpack"),
        (msgpack.packb([1, 2, 3]), "expected a map"),
        (_body(v=2), "unsupported message version"),
        (_body(v=...), "unsupported message version"),
        (_body(id=b"short"), "batch id"),
        (_body(t=[1, 2]), "not of length"),
        (_body(ts=[1]), "invalid value"),
        (_body(rtt=["fast"]), "invalid value"),
        # rtt_us is an integer column: anything larger could never be stored.
        (_body(rtt=[2**31]), "invalid value"),
        (_body(ttl=[300]), "invalid value"),
        (_body(t=[None]), "has a null"),
        (_body(t=[0]), "invalid value"),
        (_body(hops=...), "missing"),
        (_body()[:-3], "not msgpack"),
    ],
)
def test_malformed_batches_are_rejected_with_a_reason(body: bytes, reason: str) -> None:
    with pytest.raises(MalformedMessage, match=reason):
        decode_batch(body)


def test_oversized_batch_is_rejected_before_decoding() -> None:
    with pytest.raises(MalformedMessage, match="exceeds"):
        decode_batch(_body(), max_bytes=10)


def test_command_round_trips() -> None:
    spec = TargetSpec(id=7, address="::1", interval_ms=1000, timeout_ms=800, state="paused", rev=3)
    assert decode_command(encode_command(spec)) == spec


def test_command_with_unknown_state_is_rejected() -> None:
    spec = TargetSpec(id=7, address="::1", interval_ms=1000, timeout_ms=800, state="odd", rev=3)
    with pytest.raises(MalformedMessage, match="unknown target state"):
        decode_command(encode_command(spec))


def test_each_bad_value_refuses_its_own_ping_and_keeps_the_others() -> None:
    body = _body(t=[1, 0, 3], ts=[TS, TS + 1, None], rtt=[5, 6, 7], ttl=[64, 64, 64], hops=[0] * 3)
    batch, invalid = decode_results(body)
    assert (batch.target_ids, batch.ts, batch.rtt) == ([1], [TS], [5])
    assert invalid is not None and len(invalid) == 2 and invalid.total == 3
    assert invalid.reasons() == ["column 't' has an invalid value 0", "column 'ts' has a null"]
    assert invalid.batch_id == derived_batch_id(batch.batch_id, "invalid_values")
    assert invalid.summary() == (
        "invalid_values: 2 of 3 pings refused: column 't' has an invalid value 0 (1);"
        " column 'ts' has a null (1)"
    )
    part = msgpack.unpackb(invalid.encode())
    assert (part["t"], part["ts"], part["rtt"]) == ([0, 3], [TS + 1, None], [6, 7])
    assert part["why"] == {"t": invalid.reasons()}
    # The refused part is a results message again: replayed, refused the same way.
    again, still = decode_results(invalid.encode())
    assert len(again) == 0 and still is not None and still.reasons() == invalid.reasons()
    with pytest.raises(MalformedMessage, match="column 't' has an invalid value 0") as raised:
        decode_batch(body)
    assert raised.value.code == "invalid_values"


def _probe_body(**detail: list[object]) -> bytes:
    batch = ResultBatch(prober="p")
    batch.append(1, TS, 250, None, None)
    batch.append(1, TS + 1, 260, None, None)
    batch.details.append(ProbeDetail(1, TS, 200, 100, None, None))
    batch.details.append(ProbeDetail(1, TS + 1, 200, 100, None, None))
    data = msgpack.unpackb(encode_batch(batch))
    data["detail"].update(detail)
    return msgpack.packb(data, use_bin_type=True)


def test_a_ping_and_its_probe_detail_are_refused_together() -> None:
    batch, invalid = decode_results(_probe_body(status=[700, 200]))
    assert (batch.ts, [d.ts for d in batch.details]) == ([TS + 1], [TS + 1])
    assert invalid is not None
    assert invalid.reasons() == [
        "with its probe detail: column 'status' has an invalid value 700",
        "column 'status' has an invalid value 700",
    ]
    assert invalid.summary().startswith("invalid_values: 1 of 2 pings (with 1 probe details)")


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        # PostgreSQL text holds no NUL; inet takes no zone: both refused before the database.
        ({"error": [None, "time\x00out"]}, "column 'error' has an invalid value 'time\\x00out'"),
        ({"ttfb": [[[[1]]], None]}, "column 'ttfb' has an invalid value <list of 1>"),
    ],
)
def test_values_no_table_takes_are_refused_with_a_readable_reason(
    changes: dict[str, list[object]], reason: str
) -> None:
    _, invalid = decode_results(_probe_body(**changes))
    assert invalid is not None and reason in invalid.reasons()


def test_an_address_with_a_zone_is_refused_since_inet_would_not_take_it() -> None:
    batch = ResultBatch(prober="p")
    batch.addresses.append(AddressRecord(1, TS, "fe80::1%eth0", None))
    batch.addresses.append(AddressRecord(1, TS, "fe80::1", None))
    good, invalid = decode_results(encode_batch(batch))
    assert [a.address for a in good.addresses] == ["fe80::1"]
    assert invalid is not None and invalid.reasons() == ["not an IP address: 'fe80::1%eth0'"]


@pytest.mark.parametrize(
    ("body", "max_bytes", "code"),
    [
        (b"\xc1", 1000, "not_msgpack"),
        (_body(), 10, "too_big"),
        (_body(v=2), 1000, "bad_version"),
        (_body(id=b"short"), 1000, "bad_shape"),
        (_body(hops=...), 1000, "bad_shape"),
    ],
)
def test_a_message_refused_whole_says_why_in_one_word(
    body: bytes, max_bytes: int, code: str
) -> None:
    with pytest.raises(MalformedMessage) as raised:
        decode_results(body, max_bytes)
    assert raised.value.code == code

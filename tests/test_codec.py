import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.codec import (
    ResultBatch,
    TargetSpec,
    decode_batch,
    decode_command,
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

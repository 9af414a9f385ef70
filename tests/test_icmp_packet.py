"""Pure ICMP logic: packets, checksum, hops from TTL, key allocation, RTT choice."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from prober_service.hops import hops_from_ttl
from prober_service.icmp_packet import (
    ECHO_REPLY_V4,
    ECHO_REPLY_V6,
    ECHO_REQUEST_V4,
    ECHO_REQUEST_V6,
    EchoReply,
    build_echo_request,
    checksum,
    parse_echo_reply,
)
from prober_service.idents import KeyAllocator, KeysExhausted
from prober_service.rtt import rtt_ns

NONCE = b"\x01\x02\x03\x04\x05\x06\x07\x08"


def as_reply(request: bytes, reply_type: int, *, fix_checksum: bool = True) -> bytes:
    """What a host answers to `request`: same id, sequence and payload."""
    body = bytes([reply_type]) + request[1:2] + b"\0\0" + request[4:]
    if fix_checksum:
        body = body[:2] + struct.pack("!H", checksum(body)) + body[4:]
    return body


def ipv4_header(ttl: int = 64, ihl: int = 5) -> bytes:
    return bytes([0x40 | ihl]) + bytes(7) + bytes([ttl, 1]) + bytes(ihl * 4 - 10)


def test_checksum_matches_rfc1071_example() -> None:
    # RFC 1071 section 3: the one's complement sum of these words is 0xddf2.
    assert checksum(bytes.fromhex("0001f203f4f5f6f7")) == 0xFFFF - 0xDDF2


def test_checksum_pads_odd_length() -> None:
    assert checksum(b"\xab") == checksum(b"\xab\x00")


@given(
    ident=st.integers(0, 0xFFFF),
    seq=st.integers(0, 0xFFFF),
    payload=st.binary(max_size=64),
)
def test_ipv4_request_carries_a_valid_checksum(ident: int, seq: int, payload: bytes) -> None:
    packet = build_echo_request(False, ident, seq, payload)
    assert packet[0] == ECHO_REQUEST_V4
    assert struct.unpack("!HH", packet[4:8]) == (ident, seq)
    assert packet[8:] == payload
    assert checksum(packet) == 0


def test_ipv6_request_leaves_the_checksum_to_the_kernel() -> None:
    packet = build_echo_request(True, 7, 9, NONCE)
    assert packet[0] == ECHO_REQUEST_V6
    assert packet[2:4] == b"\0\0"


@given(ident=st.integers(0, 0xFFFF), seq=st.integers(0, 0xFFFF), extra=st.binary(max_size=32))
def test_reply_round_trips_through_parse(ident: int, seq: int, extra: bytes) -> None:
    request = build_echo_request(False, ident, seq, NONCE + extra)
    reply = as_reply(request, ECHO_REPLY_V4)
    parsed = parse_echo_reply(reply, ipv6=False, has_ip_header=False, nonce=NONCE)
    assert parsed == EchoReply(ident, seq, NONCE + extra)


def test_raw_ipv4_reply_is_parsed_past_its_ip_header_of_any_length() -> None:
    reply = as_reply(build_echo_request(False, 1, 2, NONCE), ECHO_REPLY_V4)
    for ihl in (5, 6, 15):
        parsed = parse_echo_reply(
            ipv4_header(ihl=ihl) + reply, ipv6=False, has_ip_header=True, nonce=NONCE
        )
        assert parsed == EchoReply(1, 2, NONCE)


def test_ipv6_reply_is_parsed() -> None:
    reply = as_reply(build_echo_request(True, 3, 4, NONCE + b"x"), ECHO_REPLY_V6)
    parsed = parse_echo_reply(reply, ipv6=True, has_ip_header=False, nonce=NONCE)
    assert parsed == EchoReply(3, 4, NONCE + b"x")


@pytest.mark.parametrize(
    ("data", "ipv6"),
    [
        # Another program's reply: right type, other nonce.
        (as_reply(build_echo_request(False, 1, 2, b"otherpro"), ECHO_REPLY_V4), False),
        # Our own request, looped back to a raw socket.
        (build_echo_request(False, 1, 2, NONCE), False),
        # An IPv4 reply type on the IPv6 socket and the other way round.
        (as_reply(build_echo_request(True, 1, 2, NONCE), ECHO_REPLY_V4), True),
        (as_reply(build_echo_request(False, 1, 2, NONCE), ECHO_REPLY_V6), False),
        # Corrupted in transit: the checksum does not add up.
        (
            as_reply(build_echo_request(False, 1, 2, NONCE), ECHO_REPLY_V4, fix_checksum=False),
            False,
        ),
        # Truncated before the nonce ends.
        (as_reply(build_echo_request(False, 1, 2, NONCE), ECHO_REPLY_V4)[:12], False),
        (b"", False),
    ],
    ids=[
        "wrong-nonce",
        "request",
        "v4-type-on-v6",
        "v6-type-on-v4",
        "bad-checksum",
        "short",
        "empty",
    ],
)
def test_anything_but_our_echo_reply_is_ignored(data: bytes, ipv6: bool) -> None:
    assert parse_echo_reply(data, ipv6=ipv6, has_ip_header=False, nonce=NONCE) is None


def test_short_ip_header_is_ignored() -> None:
    assert parse_echo_reply(b"\x45" * 10, ipv6=False, has_ip_header=True, nonce=NONCE) is None


@pytest.mark.parametrize(
    ("ttl", "hops"),
    [
        (64, 0),  # loopback, Linux
        (63, 1),
        (33, 31),
        (32, 0),
        (1, 31),
        (0, 32),
        (65, 63),
        (128, 0),  # Windows next door
        (116, 12),
        (129, 126),
        (255, 0),  # routers, Solaris
        (250, 5),
    ],
)
def test_hops_count_down_from_the_nearest_initial_ttl(ttl: int, hops: int) -> None:
    assert hops_from_ttl(ttl) == hops


@pytest.mark.parametrize("ttl", [-1, 256])
def test_impossible_ttl_is_rejected(ttl: int) -> None:
    with pytest.raises(ValueError):
        hops_from_ttl(ttl)


def test_allocator_spreads_keys_over_identifiers() -> None:
    allocator = KeyAllocator([10, 20, 30])
    keys = [allocator.allocate(set()) for _ in range(6)]
    assert keys == [(10, 0), (20, 0), (30, 0), (10, 1), (20, 1), (30, 1)]


def test_allocator_skips_pending_keys_after_wrapping() -> None:
    allocator = KeyAllocator([5])
    pending = {allocator.allocate(set()) for _ in range(3)}  # (5,0) (5,1) (5,2)
    pending.discard((5, 1))
    for _ in range(65536 - 3):
        allocator.allocate(pending)
    # Wrapped: (5,0) and (5,2) are still pending, (5,1) is free again.
    assert allocator.allocate(pending) == (5, 1)
    assert allocator.allocate(pending) == (5, 3)


@given(
    idents=st.lists(st.integers(0, 0xFFFF), min_size=1, max_size=4, unique=True),
    pending_seqs=st.sets(st.integers(0, 20), max_size=40),
    draws=st.integers(1, 60),
)
def test_allocator_never_returns_a_pending_key(
    idents: list[int], pending_seqs: set[int], draws: int
) -> None:
    pending = {(i, s) for i in idents for s in pending_seqs}
    allocator = KeyAllocator(idents)
    for _ in range(draws):
        key = allocator.allocate(pending)
        assert key not in pending
        pending.add(key)


def test_allocator_reports_exhaustion() -> None:
    allocator = KeyAllocator([1])
    pending = {(1, s) for s in range(65536)}
    with pytest.raises(KeysExhausted):
        allocator.allocate(pending)


@pytest.mark.parametrize("idents", [[], [1, 1], [70000]])
def test_allocator_rejects_bad_identifiers(idents: list[int]) -> None:
    with pytest.raises(ValueError):
        KeyAllocator(idents)


def test_rtt_comes_from_the_kernel_timestamp() -> None:
    # Sent at wall 1_000, received by the kernel at 1_300, seen by Python 900 ns later.
    assert rtt_ns(1_000, 1_300, 50, 50 + 1_200) == 300


@pytest.mark.parametrize(
    ("rx_wall", "expected"),
    [
        (None, 1_200),  # no kernel timestamp
        (500, 1_200),  # wall clock stepped back: negative
        (1_000 + 10_000, 1_200),  # wall clock stepped forward: longer than possible
    ],
)
def test_rtt_falls_back_to_the_monotonic_clock(rx_wall: int | None, expected: int) -> None:
    assert rtt_ns(1_000, rx_wall, 50, 50 + 1_200) == expected

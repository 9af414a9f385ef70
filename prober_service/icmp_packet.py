"""ICMP echo request building and echo reply parsing, IPv4 and IPv6.

Pure functions over bytes. icmplib keeps its packet code private to its socket
classes, so the few lines needed live here.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

ECHO_REQUEST_V4 = 8
ECHO_REPLY_V4 = 0
ECHO_REQUEST_V6 = 128
ECHO_REPLY_V6 = 129

_HEADER = struct.Struct("!BBHHH")  # type, code, checksum, identifier, sequence
HEADER_LEN = _HEADER.size


@dataclass(frozen=True, slots=True)
class EchoReply:
    ident: int
    seq: int
    payload: bytes


def checksum(data: bytes) -> int:
    """RFC 1071 Internet checksum: one's complement of the one's complement sum."""
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def build_echo_request(ipv6: bool, ident: int, seq: int, payload: bytes) -> bytes:
    """An echo request; for IPv6 the kernel fills in the checksum (it covers a pseudo-header)."""
    if ipv6:
        return _HEADER.pack(ECHO_REQUEST_V6, 0, 0, ident, seq) + payload
    unsummed = _HEADER.pack(ECHO_REQUEST_V4, 0, 0, ident, seq) + payload
    return _HEADER.pack(ECHO_REQUEST_V4, 0, checksum(unsummed), ident, seq) + payload


def parse_echo_reply(
    data: bytes, *, ipv6: bool, has_ip_header: bool, nonce: bytes
) -> EchoReply | None:
    """The echo reply in `data`, or None for anything else.

    A raw IPv4 socket hands over the IP header too, and sees every ICMP packet
    on the host: other types, other programs' replies (wrong nonce) and
    corrupted ones (IPv4 checksum; the kernel has checked IPv6's).
    """
    if has_ip_header:
        if len(data) < 20:
            return None
        data = data[(data[0] & 0x0F) * 4 :]
    if len(data) < HEADER_LEN + len(nonce):
        return None
    kind, code, _, ident, seq = _HEADER.unpack_from(data)
    if kind != (ECHO_REPLY_V6 if ipv6 else ECHO_REPLY_V4) or code != 0:
        return None
    payload = data[HEADER_LEN:]
    if not payload.startswith(nonce):
        return None
    if not ipv6 and checksum(data) != 0:
        return None
    return EchoReply(ident, seq, payload)

"""One ICMP socket per address family: raw when permitted, else unprivileged datagram.

A raw socket needs root or CAP_NET_RAW. A datagram ("ping") socket needs the
process's group inside net.ipv4.ping_group_range; with it the kernel owns the
ICMP identifier (the socket's local port) and delivers only this socket's
replies.
"""

from __future__ import annotations

import logging
import socket
import struct
from dataclasses import dataclass

from shared.errors import PingtrackError

from .icmp_packet import ECHO_REPLY_V4, ECHO_REPLY_V6

log = logging.getLogger(__name__)

# Linux values the socket module does not export.
IP_RECVTTL = 12
SO_TIMESTAMPNS = 35  # SO_TIMESTAMPNS_OLD: a native struct timespec on 64-bit
SOL_RAW = 255
ICMP_FILTER = 1
ICMP6_FILTER = 1

_INT = struct.Struct("@i")
_TIMESPEC = struct.Struct("@qq")
_ANC_SIZE = socket.CMSG_SPACE(_INT.size) * 2 + socket.CMSG_SPACE(_TIMESPEC.size)
_RECV_SIZE = 2048
_RCVBUF = 4 * 1024 * 1024

MODES = ("auto", "raw", "dgram")


class IcmpUnavailable(PingtrackError):
    """No ICMP socket could be opened in the requested mode."""


@dataclass(frozen=True, slots=True)
class Received:
    source: str
    data: bytes
    ttl: int | None  # TTL / hop limit of the reply
    rx_ns: int | None  # kernel receive time, ns since the epoch


class IcmpSocket:
    """A non-blocking ICMP socket of one family that reads replies with recvmsg."""

    def __init__(self, sock: socket.socket, *, ipv6: bool, mode: str) -> None:
        self.sock = sock
        self.ipv6 = ipv6
        self.mode = mode
        # A raw IPv4 socket returns the IP header before the ICMP message.
        self.has_ip_header = mode == "raw" and not ipv6
        # The identifier the kernel stamps on our requests (dgram), else None.
        self.kernel_ident: int | None = sock.getsockname()[1] if mode == "dgram" else None

    def fileno(self) -> int:
        return self.sock.fileno()

    def send(self, address: str, packet: bytes) -> None:
        self.sock.sendto(packet, (address, 0))

    def receive(self) -> tuple[list[Received], int]:
        """Everything queued, until the socket would block; also how many errors it reported."""
        out: list[Received] = []
        errors = 0
        ttl_level = socket.IPPROTO_IPV6 if self.ipv6 else socket.IPPROTO_IP
        ttl_type = socket.IPV6_HOPLIMIT if self.ipv6 else socket.IP_TTL
        while True:
            try:
                data, ancdata, _, address = self.sock.recvmsg(_RECV_SIZE, _ANC_SIZE)
            except BlockingIOError:
                return out, errors
            except OSError as exc:
                # An ICMP error for an earlier send (e.g. host unreachable) is
                # reported once on the socket; the ping it concerns times out.
                errors += 1
                log.debug("ICMP socket error", extra={"error": repr(exc)})
                continue
            ttl = rx_ns = None
            for level, kind, value in ancdata:
                if level == ttl_level and kind == ttl_type and len(value) >= _INT.size:
                    ttl = _INT.unpack_from(value)[0]
                elif level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                    sec, nsec = _TIMESPEC.unpack_from(value)
                    rx_ns = sec * 1_000_000_000 + nsec
            out.append(Received(address[0], data, ttl, rx_ns))

    def close(self) -> None:
        self.sock.close()


def _configure(sock: socket.socket, ipv6: bool, mode: str) -> None:
    sock.setblocking(False)
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RCVBUF)
    except OSError as exc:  # capped by net.core.rmem_max anyway
        log.debug("cannot enlarge ICMP receive buffer", extra={"error": repr(exc)})
    if ipv6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVHOPLIMIT, 1)
    else:
        sock.setsockopt(socket.IPPROTO_IP, IP_RECVTTL, 1)
    if mode == "raw":
        # Let the kernel drop what is not an echo reply before it wakes us.
        if ipv6:
            words = [0xFFFFFFFF] * 8
            words[ECHO_REPLY_V6 >> 5] &= ~(1 << (ECHO_REPLY_V6 & 31)) & 0xFFFFFFFF
            sock.setsockopt(socket.IPPROTO_ICMPV6, ICMP6_FILTER, struct.pack("@8I", *words))
        else:
            mask = ~(1 << ECHO_REPLY_V4) & 0xFFFFFFFF
            sock.setsockopt(SOL_RAW, ICMP_FILTER, struct.pack("@I", mask))
    else:
        # Binding assigns the identifier now rather than at the first send.
        sock.bind(("::", 0) if ipv6 else ("0.0.0.0", 0))


def open_icmp_socket(*, ipv6: bool, mode: str = "auto") -> IcmpSocket:
    """Open the socket of one family; `auto` tries raw first, then datagram."""
    if mode not in MODES:
        raise IcmpUnavailable(f"unknown ICMP mode {mode!r}; expected one of {MODES}")
    family = socket.AF_INET6 if ipv6 else socket.AF_INET
    proto = socket.IPPROTO_ICMPV6 if ipv6 else socket.IPPROTO_ICMP
    name = "IPv6" if ipv6 else "IPv4"
    tried = ("raw", "dgram") if mode == "auto" else (mode,)
    failures: list[str] = []
    for candidate in tried:
        kind = socket.SOCK_RAW if candidate == "raw" else socket.SOCK_DGRAM
        try:
            sock = socket.socket(family, kind, proto)
        except PermissionError as exc:
            failures.append(f"{candidate}: {exc.strerror}")
            continue
        except OSError as exc:
            raise IcmpUnavailable(f"cannot open an {name} ICMP socket: {exc}") from exc
        try:
            _configure(sock, ipv6, candidate)
        except OSError as exc:
            sock.close()
            raise IcmpUnavailable(f"cannot configure the {name} ICMP socket: {exc}") from exc
        if failures:
            log.info(
                "raw ICMP not permitted, using unprivileged datagram ICMP",
                extra={"family": name, "mode": candidate},
            )
        return IcmpSocket(sock, ipv6=ipv6, mode=candidate)
    raise IcmpUnavailable(
        f"no {name} ICMP socket ({'; '.join(failures)}): run as root, grant CAP_NET_RAW, "
        "or widen net.ipv4.ping_group_range to include this process's group"
    )

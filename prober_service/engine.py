"""The ICMP engine: sends echo requests, matches replies, times out the rest.

One socket per address family serves every target. Each ping waits in a
pending map under its (identifier, sequence) key, with its deadline in a heap;
a reply or the deadline, whichever comes first, produces exactly one result.
A ping that cannot leave this host (no socket of its family, no free key, a
local send error) produces none: the slot is counted in `local`, not lost.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import os
import random
import struct
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from .hops import hops_from_ttl
from .icmp_packet import build_echo_request, parse_echo_reply
from .icmp_socket import IcmpSocket, IcmpUnavailable, open_icmp_socket
from .idents import Key, KeyAllocator, KeysExhausted
from .local_failures import NO_IDENTIFIER, NO_SOCKET, LocalFailures, errno_reason
from .rtt import rtt_ns
from .waker import Waker

log = logging.getLogger(__name__)

# (target_id, send time µs since the epoch, rtt µs | None, ttl | None, hops | None)
ResultSink = Callable[[int, int, int | None, int | None, int | None], None]

RAW_IDENTIFIERS = 16
_TARGET = struct.Struct("!Q")


@dataclass(slots=True)
class Pending:
    target_id: int
    address: str
    tx_wall_ns: int
    tx_mono_ns: int


@dataclass(slots=True)
class _Family:
    socket: IcmpSocket
    keys: KeyAllocator
    pending: dict[Key, Pending]


@dataclass(slots=True)
class EngineStats:
    replies: int = 0
    lost: int = 0
    ignored: int = 0  # not an echo reply of ours (other programs, wrong nonce)
    unmatched: int = 0  # ours, but late (already timed out) or from the wrong source
    send_errors: int = 0
    socket_errors: int = 0


class Pinger:
    """Owns the ICMP sockets, the pending pings and their deadlines."""

    def __init__(self, sink: ResultSink, *, mode: str = "auto") -> None:
        self._sink = sink
        self._mode = mode
        # Replies must carry this; a raw socket sees every echo reply on the host.
        self._nonce = os.urandom(8)
        self._families: dict[bool, _Family] = {}
        self._deadlines: list[tuple[int, int, bool, Key, Pending]] = []
        self._tiebreak = 0
        self._waker = Waker()
        self.sent: Counter[int] = Counter()
        self.emitted: Counter[int] = Counter()
        self.local = LocalFailures()  # slots not sent: no result, not a loss
        self.stats = EngineStats()

    @property
    def modes(self) -> dict[str, str]:
        return {("ipv6" if v6 else "ipv4"): f.socket.mode for v6, f in self._families.items()}

    @property
    def pending_count(self) -> int:
        return sum(len(f.pending) for f in self._families.values())

    def open(self) -> None:
        """Open both sockets and start reading; IPv6 may be missing, IPv4 may not."""
        loop = asyncio.get_running_loop()
        for ipv6 in (False, True):
            try:
                sock = open_icmp_socket(ipv6=ipv6, mode=self._mode)
            except IcmpUnavailable:
                if not ipv6:
                    self.close()
                    raise
                log.warning(
                    "no IPv6 ICMP socket; IPv6 slots are counted as not sent (no_socket)",
                    exc_info=True,
                )
                continue
            if sock.kernel_ident is not None:
                idents = [sock.kernel_ident]
            else:
                idents = random.sample(range(1, 1 << 16), RAW_IDENTIFIERS)
            self._families[ipv6] = _Family(sock, KeyAllocator(idents), {})
            loop.add_reader(sock.fileno(), self._on_readable, ipv6)
        log.info("ICMP sockets open", extra={"modes": self.modes})

    def close(self) -> None:
        loop = asyncio.get_running_loop()
        for family in self._families.values():
            loop.remove_reader(family.socket.fileno())
            family.socket.close()
        self._families.clear()

    def send(self, target_id: int, address: str, ipv6: bool, timeout_ns: int) -> None:
        """Ping `address` once; its result reaches the sink within `timeout_ns`.

        A ping that cannot be sent from here gives no result; `local` counts it.
        """
        tx_mono = time.monotonic_ns()
        tx_wall = time.time_ns()
        family = self._families.get(ipv6)
        if family is None:
            self.local.add(target_id, NO_SOCKET)
            return
        try:
            key = family.keys.allocate(family.pending)
        except KeysExhausted:
            self.local.add(target_id, NO_IDENTIFIER)
            return
        packet = build_echo_request(ipv6, key[0], key[1], self._nonce + _TARGET.pack(target_id))
        try:
            family.socket.send(address, packet)
        except OSError as exc:
            # A local rule, a full buffer, no route from here: the ping did
            # not leave, the network was never asked. Not a loss.
            self.stats.send_errors += 1
            log.debug("ICMP send failed", extra={"target_id": target_id, "error": repr(exc)})
            self.local.add(target_id, errno_reason(exc))
            return
        self.sent[target_id] += 1
        pending = Pending(target_id, address, tx_wall, tx_mono)
        family.pending[key] = pending
        deadline = tx_mono + timeout_ns
        if not self._deadlines or deadline < self._deadlines[0][0]:
            self._waker.wake()
        self._tiebreak += 1
        heapq.heappush(self._deadlines, (deadline, self._tiebreak, ipv6, key, pending))

    def _on_readable(self, ipv6: bool) -> None:
        family = self._families.get(ipv6)
        if family is None:
            return
        sock = family.socket
        received, errors = sock.receive()
        self.stats.socket_errors += errors
        now_mono = time.monotonic_ns()
        for item in received:
            reply = parse_echo_reply(
                item.data, ipv6=ipv6, has_ip_header=sock.has_ip_header, nonce=self._nonce
            )
            if reply is None:
                self.stats.ignored += 1
                continue
            key = (reply.ident, reply.seq)
            pending = family.pending.get(key)
            if (
                pending is None
                or pending.address != item.source
                or reply.payload[8:16] != _TARGET.pack(pending.target_id)
            ):
                self.stats.unmatched += 1
                continue
            del family.pending[key]
            rtt = rtt_ns(pending.tx_wall_ns, item.rx_ns, pending.tx_mono_ns, now_mono)
            ttl = item.ttl
            self.stats.replies += 1
            self._emit(
                pending.target_id,
                pending.tx_wall_ns // 1000,
                (rtt + 500) // 1000,
                ttl,
                None if ttl is None else hops_from_ttl(ttl),
            )

    def _emit(
        self, target_id: int, ts_us: int, rtt: int | None, ttl: int | None, hops: int | None
    ) -> None:
        self.emitted[target_id] += 1
        self._sink(target_id, ts_us, rtt, ttl, hops)

    def _emit_lost(self, target_id: int, tx_wall_ns: int) -> None:
        self.stats.lost += 1
        self._emit(target_id, tx_wall_ns // 1000, None, None, None)

    def expire(self, now_mono_ns: int) -> None:
        """Report every ping whose deadline has passed as lost."""
        heap = self._deadlines
        while heap and heap[0][0] <= now_mono_ns:
            _, _, ipv6, key, pending = heapq.heappop(heap)
            family = self._families.get(ipv6)
            if family is not None and family.pending.get(key) is pending:
                del family.pending[key]
                self._emit_lost(pending.target_id, pending.tx_wall_ns)

    async def run(self) -> None:
        """Time out pings at their deadlines, until cancelled."""
        while True:
            now = time.monotonic_ns()
            self.expire(now)
            delay = (self._deadlines[0][0] - now) / 1e9 if self._deadlines else None
            await self._waker.sleep(delay)

    async def drain(self, timeout: float) -> None:
        """Wait for the pending pings (up to `timeout` s); report what is left as lost."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.pending_count and loop.time() < deadline:
            self.expire(time.monotonic_ns())
            await asyncio.sleep(0.01)
        self.expire(1 << 62)

"""A user-space ICMP echo responder that plays a latency / loss / TTL profile.

The kernel here has no netem, so a lab target shapes its answers itself: it
runs this inside its namespace with the kernel's echo replies switched off,
reads echo requests from a raw socket and answers each after the latency of
the profile phase the request arrived in, or not at all during a loss phase,
with the phase's TTL.

    python tests/responder.py '{"start": 1700000000.0, "phases": [
        {"at": 0, "latency_ms": 0, "loss": 0, "ttl": 64},
        {"at": 3, "latency_ms": 50}, {"at": 6, "loss": 1}, {"at": 8, "loss": 0}]}'

`at` is seconds after `start` (epoch seconds); a phase keeps the values of the
one before for keys it leaves out. Prints "ready" once listening; stops on
SIGTERM. From tests, `Responder(namespace, profile)` runs it and cleans up.
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
import socket
import struct
import subprocess
import sys
import time
from bisect import bisect_right
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.netlab import Namespace

_HEADER = struct.Struct("!BBHHH")
ECHO_REQUEST, ECHO_REPLY = 8, 0


@dataclass(frozen=True, slots=True)
class Phase:
    at_s: float
    latency_ms: float
    loss: float  # probability of no answer
    ttl: int


def phases_of(profile: dict[str, Any]) -> list[Phase]:
    """The profile's phases with every value filled in from the phase before."""
    current = {"latency_ms": 0.0, "loss": 0.0, "ttl": 64}
    phases = []
    for raw in sorted(profile["phases"], key=lambda p: p["at"]):
        current = {**current, **{k: raw[k] for k in current if k in raw}}
        phases.append(
            Phase(
                float(raw["at"]),
                float(current["latency_ms"]),
                float(current["loss"]),
                int(current["ttl"]),
            )
        )
    return phases


def phase_at(phases: list[Phase], elapsed_s: float) -> Phase:
    index = bisect_right([p.at_s for p in phases], elapsed_s) - 1
    return phases[max(index, 0)]


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def reply_for(request: bytes) -> bytes | None:
    """The echo reply to an IPv4 packet (IP header included), or None if not a request."""
    if len(request) < 20:
        return None
    icmp = request[(request[0] & 0x0F) * 4 :]
    if len(icmp) < _HEADER.size:
        return None
    kind, code, _, ident, seq = _HEADER.unpack_from(icmp)
    if kind != ECHO_REQUEST or code != 0:
        return None
    payload = icmp[_HEADER.size :]
    unsummed = _HEADER.pack(ECHO_REPLY, 0, 0, ident, seq) + payload
    return _HEADER.pack(ECHO_REPLY, 0, checksum(unsummed), ident, seq) + payload


async def serve(profile: dict[str, Any]) -> None:
    phases = phases_of(profile)
    start = float(profile["start"])
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    sock.setblocking(False)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    pending: set[asyncio.TimerHandle] = set()

    def answer(packet: bytes, source: str, ttl: int) -> None:
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
        sock.sendto(packet, (source, 0))

    def readable() -> None:
        while True:
            try:
                data, (source, _) = sock.recvfrom(4096)
            except BlockingIOError:
                return
            packet = reply_for(data)
            if packet is None:
                continue
            phase = phase_at(phases, time.time() - start)
            if phase.loss and random.random() < phase.loss:
                continue
            handle = loop.call_later(phase.latency_ms / 1000, answer, packet, source, phase.ttl)
            pending.add(handle)
            if len(pending) > 10_000:
                pending.difference_update({h for h in pending if h.when() < loop.time()})

    loop.add_reader(sock.fileno(), readable)
    print("ready", flush=True)
    await stop.wait()
    loop.remove_reader(sock.fileno())
    for handle in pending:
        handle.cancel()
    sock.close()


class Responder:
    """Runs the responder in `namespace` with the kernel's echo replies off there."""

    def __init__(self, namespace: Namespace, profile: dict[str, Any]) -> None:
        self._namespace = namespace
        self._profile = profile

    def __enter__(self) -> Responder:
        self._namespace.sysctl("net.ipv4.icmp_echo_ignore_all", "1")
        script = str(Path(__file__).resolve())
        self._process = self._namespace.popen(sys.executable, script, json.dumps(self._profile))
        assert self._process.stdout is not None
        line = self._process.stdout.readline().strip()
        if line != "ready":
            self._process.kill()
            _, err = self._process.communicate()
            raise RuntimeError(f"responder did not start: {line!r} {err}")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._process.terminate()
        try:
            self._process.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.communicate()


if __name__ == "__main__":
    asyncio.run(serve(json.loads(sys.argv[1])))

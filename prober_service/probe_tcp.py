"""TCP connect probes: the RTT is the time the three-way handshake took."""

from __future__ import annotations

import asyncio
import errno
import socket
import time
from dataclasses import dataclass

# Failure reasons as stored; an OSError not named here keeps its errno name.
TIMEOUT = "timeout"
REFUSED = "refused"
UNREACHABLE = "unreachable"
_ERRNO_REASONS = {
    errno.ECONNREFUSED: REFUSED,
    errno.ENETUNREACH: UNREACHABLE,
    errno.EHOSTUNREACH: UNREACHABLE,
    errno.ETIMEDOUT: TIMEOUT,
}


@dataclass(frozen=True, slots=True)
class ProbeOutcome:
    """One tcp/http probe: rtt_us None when it failed, then `error` says why."""

    rtt_us: int | None
    error: str | None = None
    status: int | None = None
    ttfb_us: int | None = None
    cert_expires_us: int | None = None


def os_error_reason(exc: OSError) -> str:
    if isinstance(exc, TimeoutError):
        return TIMEOUT
    if exc.errno in _ERRNO_REASONS:
        return _ERRNO_REASONS[exc.errno]
    return errno.errorcode.get(exc.errno or 0, "error").lower()


async def tcp_connect(address: str, port: int, ipv6: bool, timeout_s: float) -> ProbeOutcome:
    """Connect to address:port and close at once; a refusal or timeout is a failure."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET6 if ipv6 else socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        start = time.monotonic_ns()
        try:
            async with asyncio.timeout(timeout_s):
                await loop.sock_connect(sock, (address, port))
        except TimeoutError:
            return ProbeOutcome(None, TIMEOUT)
        except OSError as exc:
            return ProbeOutcome(None, os_error_reason(exc))
        return ProbeOutcome(max(1, (time.monotonic_ns() - start + 500) // 1000))
    finally:
        sock.close()

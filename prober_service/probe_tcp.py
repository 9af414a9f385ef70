"""TCP connect probes: the RTT is the time the three-way handshake took."""

from __future__ import annotations

import asyncio
import socket
import time

from .probe_outcome import TIMEOUT, ProbeOutcome, os_error_reason


async def tcp_connect(address: str, port: int, ipv6: bool, timeout_s: float) -> ProbeOutcome:
    """Connect to address:port and close at once; a refusal or timeout is a failure.

    Making the socket can fail too (no descriptors left, family not supported):
    its errno name is the outcome, a local failure that Probes counts, not stores.
    """
    loop = asyncio.get_running_loop()
    sock: socket.socket | None = None
    try:
        sock = socket.socket(socket.AF_INET6 if ipv6 else socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        start = time.monotonic_ns()
        async with asyncio.timeout(timeout_s):
            await loop.sock_connect(sock, (address, port))
        return ProbeOutcome(max(1, (time.monotonic_ns() - start + 500) // 1000))
    except TimeoutError:
        return ProbeOutcome(None, TIMEOUT)
    except OSError as exc:
        return ProbeOutcome(None, os_error_reason(exc))
    finally:
        if sock is not None:
            sock.close()

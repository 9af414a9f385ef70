"""HTTP(S) probes: one GET or HEAD on a fresh connection, timed phase by phase.

aiohttp does the HTTP (its C parser, with limits on line length and header
count); this module only decides where it connects and what the answer means.
A resolver that knows one address makes the client connect to the address the
prober resolved itself (so the address probed is the one recorded) while the
URL's host stays the Host header and TLS server name. Trace hooks time the
connection (TCP plus TLS); TTFB runs from the connection's start to the
answer's head, RTT to the last body byte read (at most `body_max` bytes are
read, so an endless body ends the probe as soon as the cap is reached).
Redirects are not followed and no proxy from the environment is used: the
one connection goes to the one address checked.

Whatever the target sends, the probe returns an outcome (probe_outcome.py
says which reasons there are); only cancellation leaves by an exception.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.connector import Connection
from yarl import URL

from shared.codec import TargetSpec

from .probe_outcome import ERROR, ProbeOutcome, classify, judge, settle

log = logging.getLogger(__name__)

USER_AGENT = "pingtrack-probe/1"
HEADERS = {
    "User-Agent": USER_AGENT,
    "Accept": "*/*",
    # The body is matched as sent: nothing compressed is asked for or unpacked.
    "Accept-Encoding": "identity",
    "Connection": "close",
}
# The client's own time limits stay off: the probe's timeout bounds it all.
NO_CLIENT_TIMEOUT = aiohttp.ClientTimeout(total=None, connect=None, sock_read=None)


def ssl_context(ca_file: Path | None) -> ssl.SSLContext:
    """System trust plus the operator's own CAs; verification stays on."""
    context = ssl.create_default_context()
    if ca_file is not None:
        context.load_verify_locations(cafile=str(ca_file))
    return context


class PinnedResolver(AbstractResolver):
    """Answers every name with the one address the prober resolved."""

    def __init__(self, address: str) -> None:
        self._address = address
        self._family = socket.AF_INET6 if ":" in address else socket.AF_INET

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            ResolveResult(
                hostname=host,
                host=self._address,
                port=port,
                family=self._family,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
        ]

    async def close(self) -> None:
        pass


class Clock:
    """Monotonic marks of one probe, set by the trace hooks and the probe."""

    def __init__(self) -> None:
        self.start: int | None = None
        self.connected: int | None = None

    def since_start_us(self, mark: int | None = None) -> int | None:
        if self.start is None:
            return None
        return max(1, ((mark or time.monotonic_ns()) - self.start) // 1000)

    def trace(self) -> aiohttp.TraceConfig:
        config = aiohttp.TraceConfig()

        async def started(*_: Any) -> None:
            self.start = time.monotonic_ns()

        async def connected(*_: Any) -> None:
            self.connected = time.monotonic_ns()

        config.on_connection_create_start.append(started)
        config.on_connection_create_end.append(connected)
        return config


def cert_expiry_us(ssl_object: ssl.SSLObject | None) -> int | None:
    cert = None if ssl_object is None else ssl_object.getpeercert()
    not_after = cert.get("notAfter") if cert else None
    if not isinstance(not_after, str):
        return None
    return int(ssl.cert_time_to_seconds(not_after)) * 1_000_000


class TimedResponse(aiohttp.ClientResponse):
    """A response that notes when its head arrived and the peer's certificate.

    The head is marked as soon as the parser has it, before the session's own
    work on the response. aiohttp hands the connection back as soon as a small
    body has arrived, before the caller sees the response (aio-libs/aiohttp#2205):
    the TLS object is taken while the connection is live.
    """

    head_at: int | None = None
    cert_expires_us: int | None = None

    async def start(self, connection: Connection) -> aiohttp.ClientResponse:
        transport = connection.transport
        ssl_object = None if transport is None else transport.get_extra_info("ssl_object")
        started = await super().start(connection)
        self.head_at = time.monotonic_ns()
        self.cert_expires_us = cert_expiry_us(ssl_object)
        return started


async def read_capped(response: aiohttp.ClientResponse, cap: int) -> bytes:
    """At most `cap` bytes of the body, as fast as they come; the rest is never read."""
    body = bytearray()
    while len(body) < cap:
        chunk = await response.content.read(cap - len(body))
        if not chunk:
            break
        body += chunk
    return bytes(body)


def _session(address: str, context: ssl.SSLContext, clock: Clock) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(
        resolver=PinnedResolver(address),
        use_dns_cache=False,
        force_close=True,
        ssl=context,
        limit=1,
    )
    return aiohttp.ClientSession(
        connector=connector,
        timeout=NO_CLIENT_TIMEOUT,
        headers=HEADERS,
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,
        trust_env=False,
        trace_configs=[clock.trace()],
        response_class=TimedResponse,
    )


@dataclass(slots=True)
class _Seen:
    """What the answer showed before the probe ended, in success or failure."""

    clock: Clock
    status: int | None = None
    ttfb_us: int | None = None
    expires_us: int | None = None
    lost: BaseException | None = None  # how the connection ended, when a read failed

    async def read(self, response: aiohttp.ClientResponse, cap: int) -> bytes:
        connection = response.connection
        protocol = None if connection is None else connection.protocol
        try:
            return await read_capped(response, cap)
        except Exception:
            # A reset under an incomplete body shows only here, and only until release.
            self.lost = None if protocol is None else protocol.exception()
            raise

    def outcome(self, rtt_us: int | None, error: str | None) -> ProbeOutcome:
        connected = self.clock.connected
        return settle(
            ProbeOutcome(
                rtt_us,
                error,
                self.status,
                self.ttfb_us,
                self.expires_us,
                None if connected is None else self.clock.since_start_us(connected),
            )
        )


async def http_probe(
    spec: TargetSpec,
    address: str,
    timeout_s: float,
    context: ssl.SSLContext,
    body_max: int,
) -> ProbeOutcome:
    seen = _Seen(Clock())
    async with _session(address, context, seen.clock) as session:
        try:
            async with (
                asyncio.timeout(timeout_s),
                session.request(
                    spec.http_method, URL(spec.url or "", encoded=True), allow_redirects=False
                ) as response,
            ):
                timed = cast(TimedResponse, response)
                seen.ttfb_us = seen.clock.since_start_us(timed.head_at)
                seen.status = response.status
                seen.expires_us = timed.cert_expires_us
                body = await seen.read(response, body_max)
                total = seen.clock.since_start_us()  # before the connection's close
        except Exception as exc:  # whatever the target sent, the slot gets an outcome
            reason = classify(exc, seen.lost)
            if reason.startswith(ERROR):
                log.warning("http probe failed unexpectedly", exc_info=exc)
            return seen.outcome(None, reason)
    error = judge(response.status, body, spec.expect_status, spec.expect_body)
    return seen.outcome(None if error else total, error)

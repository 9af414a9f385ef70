"""HTTP(S) probes: one GET or HEAD on a fresh connection, timed phase by phase.

A small HTTP/1.1 client on asyncio streams rather than a library: the prober
connects to the address it resolved itself (so the address probed is the one
recorded), sends the URL's host as Host and TLS server name, and times the
first byte of the answer. RTT is the total time, connect to last byte read
(the body is read up to a cap). Reasons a probe fails: timeout, refused,
unreachable, tls (handshake or certificate), protocol (not an HTTP answer),
status (not the expected one; default any 2xx/3xx), body (substring absent).
"""

from __future__ import annotations

import asyncio
import ssl
import time
from pathlib import Path
from urllib.parse import urlsplit

from shared.codec import TargetSpec

from .probe_tcp import TIMEOUT, ProbeOutcome, os_error_reason

TLS = "tls"
PROTOCOL = "protocol"
STATUS = "status"
BODY = "body"
MAX_HEADERS = 100
USER_AGENT = "pingtrack-probe/1"


class ProtocolError(Exception):
    """The peer's answer is not HTTP/1.x as we read it."""


def ssl_context(ca_file: Path | None) -> ssl.SSLContext:
    """System trust plus the operator's own CAs; verification stays on."""
    context = ssl.create_default_context()
    if ca_file is not None:
        context.load_verify_locations(cafile=str(ca_file))
    return context


def build_request(method: str, url: str) -> bytes:
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    lines = [
        f"{method} {target} HTTP/1.1",
        f"Host: {host}",
        f"User-Agent: {USER_AGENT}",
        "Accept: */*",
        "Connection: close",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def parse_status_line(line: bytes) -> int:
    parts = line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise ProtocolError(f"not an HTTP status line: {line[:60]!r}")
    status = int(parts[1])
    if not 100 <= status <= 599:
        raise ProtocolError(f"status {status} out of range")
    return status


def judge(
    status: int, body: bytes, expect_status: int | None, expect_body: str | None
) -> str | None:
    """Why the answer fails the target's expectations, or None when it passes."""
    if expect_status is None:
        if not 200 <= status < 400:
            return STATUS
    elif status != expect_status:
        return STATUS
    if expect_body is not None and expect_body.encode() not in body:
        return BODY
    return None


def cert_expiry_us(writer: asyncio.StreamWriter) -> int | None:
    ssl_object = writer.get_extra_info("ssl_object")
    cert = None if ssl_object is None else ssl_object.getpeercert()
    not_after = cert.get("notAfter") if cert else None
    if not isinstance(not_after, str):
        return None
    return int(ssl.cert_time_to_seconds(not_after)) * 1_000_000


async def _headers(reader: asyncio.StreamReader) -> dict[str, str]:
    headers: dict[str, str] = {}
    for _ in range(MAX_HEADERS):
        line = await reader.readline()
        if line in (b"\r\n", b"\n"):
            return headers
        if not line:
            raise ProtocolError("connection closed in the headers")
        name, sep, value = line.decode("latin-1").partition(":")
        if not sep:
            raise ProtocolError(f"bad header line {line[:60]!r}")
        headers[name.strip().lower()] = value.strip()
    raise ProtocolError("too many headers")


async def _body(reader: asyncio.StreamReader, headers: dict[str, str], cap: int) -> bytes:
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = bytearray()
        while len(body) < cap:
            size_line = await reader.readline()
            try:
                size = int(size_line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise ProtocolError(f"bad chunk size {size_line[:40]!r}") from None
            if size == 0:
                break
            body += await reader.readexactly(size)
            await reader.readline()
        return bytes(body[:cap])
    length = headers.get("content-length")
    if length is not None:
        if not length.isdigit():
            raise ProtocolError(f"bad content-length {length[:40]!r}")
        return await reader.readexactly(min(int(length), cap))
    return await reader.read(cap) if cap else b""


async def http_probe(
    spec: TargetSpec,
    address: str,
    timeout_s: float,
    context: ssl.SSLContext,
    body_max: int,
) -> ProbeOutcome:
    url = spec.url or ""
    parts = urlsplit(url)
    https = parts.scheme == "https"
    port = parts.port or (443 if https else 80)
    status: int | None = None
    ttfb: int | None = None
    expires: int | None = None
    start = time.monotonic_ns()
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout_s):
            reader, writer = await asyncio.open_connection(
                address,
                port,
                ssl=context if https else None,
                server_hostname=parts.hostname if https else None,
            )
            if https:
                expires = cert_expiry_us(writer)
            writer.write(build_request(spec.http_method, url))
            await writer.drain()
            first = await reader.readline()
            ttfb = (time.monotonic_ns() - start) // 1000
            status = parse_status_line(first)
            headers = await _headers(reader)
            no_body = spec.http_method == "HEAD" or status in (204, 304) or status < 200
            body = b"" if no_body else await _body(reader, headers, body_max)
        total = (time.monotonic_ns() - start) // 1000
    except TimeoutError:
        return ProbeOutcome(None, TIMEOUT, status, ttfb, expires)
    except ssl.SSLError:
        return ProbeOutcome(None, TLS, status, ttfb, expires)
    except (ProtocolError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        return ProbeOutcome(None, PROTOCOL, status, ttfb, expires)
    except OSError as exc:
        return ProbeOutcome(None, os_error_reason(exc), status, ttfb, expires)
    finally:
        if writer is not None:
            writer.close()
    error = judge(status, body, spec.expect_status, spec.expect_body)
    return ProbeOutcome(None if error else max(1, total), error, status, ttfb, expires)

"""A hostile HTTP server on loopback: each path plays one way a target can misbehave.

    async with hostile_server() as server:
        server.url("reset-mid-body")   # http://127.0.0.1:PORT/reset-mid-body
        server.tls_url                 # https://127.0.0.1:PORT2/ answering bytes that are not TLS

Every play is bounded: an endless body stops after ENDLESS_MAX_BYTES or
ENDLESS_MAX_S, a drip after its few bytes. The server listens on 127.0.0.1
or ::1 only, and owns its handler tasks: leaving the block cancels and
awaits those still running.
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass

Play = Callable[[asyncio.StreamWriter], Awaitable[None]]

OVERSIZED = 70 * 1024  # past asyncio's 64 KiB line limit and any parser's
ENDLESS_MAX_BYTES = 256 * 1024 * 1024
ENDLESS_MAX_S = 30.0
DRIP_EVERY_S = 0.2
BLOCK = b"x" * 16_384
LOOPBACK = ("127.0.0.1", "::1")


async def _send(writer: asyncio.StreamWriter, data: bytes) -> None:
    writer.write(data)
    await writer.drain()


async def _endless(writer: asyncio.StreamWriter) -> None:
    """Body bytes until the client leaves (or the bounds are reached)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + ENDLESS_MAX_S
    sent = 0
    while sent < ENDLESS_MAX_BYTES and loop.time() < deadline:
        await _send(writer, BLOCK)
        sent += len(BLOCK)


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST instead of a FIN (SO_LINGER 0)."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def _head(*lines: bytes) -> bytes:
    return b"\r\n".join(lines) + b"\r\n\r\n"


def replying(data: bytes) -> Play:
    """Send `data` as the whole answer, then close."""

    async def play(writer: asyncio.StreamWriter) -> None:
        await _send(writer, data)

    return play


async def ok(writer: asyncio.StreamWriter) -> None:
    await _send(writer, _head(b"HTTP/1.1 200 OK", b"Content-Length: 11") + b"hello probe")


async def huge_chunk(writer: asyncio.StreamWriter) -> None:
    """One chunk announced as a terabyte, its data flowing without end."""
    await _send(
        writer, _head(b"HTTP/1.1 200 OK", b"Transfer-Encoding: chunked") + b"ffffffffff\r\n"
    )
    await _endless(writer)


async def endless_body(writer: asyncio.StreamWriter) -> None:
    """No length, no chunks: a body that would end with the connection, which never ends."""
    await _send(writer, _head(b"HTTP/1.1 200 OK"))
    await _endless(writer)


async def slow_drip(writer: asyncio.StreamWriter) -> None:
    """The status line one byte at a time, slower than any probe timeout in the suite."""
    for byte in b"HTTP/1.1 200 OK\r\n":
        await _send(writer, bytes([byte]))
        await asyncio.sleep(DRIP_EVERY_S)


async def reset_mid_body(writer: asyncio.StreamWriter) -> None:
    await _send(writer, _head(b"HTTP/1.1 200 OK", b"Content-Length: 100000") + BLOCK[:1000])
    await asyncio.sleep(0.05)
    _reset(writer)


async def silent_close(writer: asyncio.StreamWriter) -> None:
    """Accept the request and close without a word."""


async def switch_and_hold(writer: asyncio.StreamWriter) -> None:
    """Switch protocols, then say nothing more while the connection stays open."""
    await _send(
        writer, _head(b"HTTP/1.1 101 Switching Protocols", b"Upgrade: x", b"Connection: Upgrade")
    )
    await asyncio.sleep(ENDLESS_MAX_S)


PLAYS: dict[str, Play] = {
    "ok": ok,
    "long-status-line": replying(b"HTTP/1.1 200 " + b"A" * OVERSIZED + b"\r\n\r\n"),
    "long-header-line": replying(
        _head(b"HTTP/1.1 200 OK", b"X-Filler: " + b"A" * OVERSIZED, b"Content-Length: 0")
    ),
    "negative-chunk": replying(
        _head(b"HTTP/1.1 200 OK", b"Transfer-Encoding: chunked") + b"-1\r\nabc\r\n0\r\n\r\n"
    ),
    # U+00B2 in latin-1: str.isdigit() says yes, int() says no.
    "superscript-length": replying(_head(b"HTTP/1.1 200 OK", b"Content-Length: \xb2") + b"ab"),
    "huge-chunk": huge_chunk,
    "endless-body": endless_body,
    "slow-drip": slow_drip,
    "reset-mid-body": reset_mid_body,
    "not-http": replying(b"SSH-2.0-OpenSSH_9.6\r\n"),
    "silent-close": silent_close,
    "switch-and-hold": switch_and_hold,
    "status-700": replying(_head(b"HTTP/1.1 700 Beyond", b"Content-Length: 0")),
}


@dataclass(frozen=True)
class Hostile:
    host: str
    port: int
    tls_port: int

    def _netloc(self, port: int) -> str:
        return f"[{self.host}]:{port}" if ":" in self.host else f"{self.host}:{port}"

    def url(self, play: str) -> str:
        return f"http://{self._netloc(self.port)}/{play}"

    @property
    def tls_url(self) -> str:
        return f"https://{self._netloc(self.tls_port)}/"


class _Handlers:
    """The connections' handler tasks, cancelled and awaited when the server goes."""

    def __init__(self) -> None:
        self.tasks: set[asyncio.Task[None]] = set()

    def own(self) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)  # type: ignore[arg-type]
        task.add_done_callback(self.tasks.discard)

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def _request_path(reader: asyncio.StreamReader) -> str:
    line = await reader.readline()
    while (await reader.readline()) not in (b"\r\n", b"\n", b""):
        pass
    parts = line.split()
    return parts[1].decode("latin-1").lstrip("/") if len(parts) > 1 else ""


@asynccontextmanager
async def hostile_server(host: str = "127.0.0.1") -> AsyncIterator[Hostile]:
    """Two listeners on `host` (loopback only): the HTTP plays, and the TLS garbage."""
    if host not in LOOPBACK:
        raise ValueError(f"hostile servers listen on loopback only, not {host}")
    handlers = _Handlers()

    async def http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handlers.own()
        try:
            play = PLAYS.get(await _request_path(reader))
            if play is None:
                await _send(writer, _head(b"HTTP/1.1 404 Not Found", b"Content-Length: 0"))
            else:
                await play(writer)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Answer a TLS client hello with random bytes."""
        handlers.own()
        try:
            await reader.read(1)
            await _send(writer, os.urandom(2048))
            await reader.read(1)  # until the client gives up
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    plain = await asyncio.start_server(http, host, 0)
    tls = await asyncio.start_server(garbage, host, 0)
    try:
        yield Hostile(host, plain.sockets[0].getsockname()[1], tls.sockets[0].getsockname()[1])
    finally:
        for server in (plain, tls):
            server.close()
        await handlers.close()
        for server in (plain, tls):
            with suppress(Exception):
                await server.wait_closed()

"""A prober and a writer run in-process against the real broker and database,
plus the small servers that tcp/http/hostname tests probe on 127.0.0.1."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiormq
import asyncpg

from prober_service.main import run as run_prober
from shared.constants import Topology
from shared.settings import Settings
from tests.conftest import eventually
from writer_service.main import run as run_writer

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def prober_and_writer(settings: Settings) -> AsyncIterator[None]:
    """Both services until the block ends; then a clean stop of each."""
    stop_prober, stop_writer = asyncio.Event(), asyncio.Event()
    prober = asyncio.create_task(run_prober(settings, stop_prober), name="test-prober")
    writer = asyncio.create_task(run_writer(settings, stop_writer), name="test-writer")
    try:
        yield
    finally:
        stop_prober.set()
        # The prober flushes first; the writer still consumes while it does.
        try:
            await asyncio.wait_for(prober, 30)
            await results_taken(settings, writer)
        finally:
            stop_writer.set()
            await asyncio.wait_for(writer, 30)


async def results_taken(settings: Settings, writer: asyncio.Task[None]) -> None:
    """Wait until the writer has been handed every result in the queue (or has died).

    It stores what it was handed before it stops; what is still queued it would leave.
    """
    queue = Topology(settings.amqp_prefix).results_queue
    connection = await aiormq.connect(settings.amqp_url)
    try:
        channel = await connection.channel()

        async def drained() -> bool:
            if writer.done():
                return True  # awaiting it says why
            declared = await channel.queue_declare(queue, passive=True)
            return declared.message_count == 0

        await eventually(drained, timeout=30)
    finally:
        await connection.close()


@asynccontextmanager
async def writer_running(settings: Settings) -> AsyncIterator[None]:
    """A writer alone (to store what a stopped prober left in the queue), stopped cleanly."""
    stop = asyncio.Event()
    writer = asyncio.create_task(run_writer(settings, stop), name="test-writer")
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(writer, 30)


class Targets:
    """Inserts targets with any columns; marks them deleted afterwards."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self.made: list[int] = []

    async def add(self, **columns: Any) -> int:
        columns.setdefault("interval_ms", 1000)
        columns.setdefault("timeout_ms", 500)
        names = ", ".join(columns)
        marks = ", ".join(f"${i}" for i in range(1, len(columns) + 1))
        target_id: int = await self._pool.fetchval(
            f"INSERT INTO targets ({names}) VALUES ({marks}) RETURNING id", *columns.values()
        )
        self.made.append(target_id)
        return target_id

    async def end(self) -> None:
        await self._pool.execute(
            "UPDATE targets SET state = 'deleted' WHERE id = ANY($1)", self.made
        )


@dataclass
class Server:
    port: int
    server: asyncio.Server


@asynccontextmanager
async def serve(handler: Handler, context: ssl.SSLContext | None = None) -> AsyncIterator[Server]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0, ssl=context)
    port = server.sockets[0].getsockname()[1]
    try:
        yield Server(port, server)
    finally:
        server.close()
        await server.wait_closed()


def refused_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def responder(status: int, body: bytes = b"", delay_s: float = 0.0) -> Handler:
    """An HTTP/1.1 handler answering every request with `status` and `body` (HEAD: no body)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            method = (await reader.readline()).split(b" ", 1)[0]
            while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                pass
            await asyncio.sleep(delay_s)
            head = (
                f"HTTP/1.1 {status} X\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode() + (b"" if method == b"HEAD" else body))
            await writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    return handle


@dataclass(frozen=True)
class Certificate:
    cert: Path
    key: Path
    not_after_us: int


def self_signed(directory: Path, days: int = 2, names: str = "IP:127.0.0.1") -> Certificate:
    """A short-lived self-signed EC certificate made with the openssl CLI."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", str(days),
         "-subj", "/CN=pingtrack-test", "-addext", f"subjectAltName={names}"],
        check=True,
        capture_output=True,
    )  # fmt: skip
    end = subprocess.run(
        ["openssl", "x509", "-noout", "-enddate", "-in", str(cert)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    not_after = int(ssl.cert_time_to_seconds(end.split("=", 1)[1])) * 1_000_000
    return Certificate(cert, key, not_after)


def server_context(certificate: Certificate) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificate.cert, certificate.key)
    return context

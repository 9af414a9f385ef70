"""A fault-injecting TCP proxy for tests: put it between a client and PostgreSQL
or RabbitMQ, then cut every connection (and refuse new ones) and resume, or
silence a connection at a chosen point of its protocol (`freeze_on`)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable


class TcpProxy:
    def __init__(self, target_host: str, target_port: int, listen_host: str = "127.0.0.1") -> None:
        self._target = (target_host, target_port)
        self._listen_host = listen_host
        self._port = 0
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.connections = 0  # accepted so far
        self._freeze_on: bytes | None = None
        self.frozen = 0  # connections silenced by `freeze_on`

    @property
    def port(self) -> int:
        return self._port

    @property
    def accepting(self) -> bool:
        return self._server is not None

    async def __aenter__(self) -> TcpProxy:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Listen (on a free port the first time, on the same port after a cut)."""
        self._server = await asyncio.start_server(
            self._accept, self._listen_host, self._port, reuse_address=True
        )
        self._port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        """Refuse new connections and drop every open one, as if the server died."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        await self._drain_pipes()
        if server is not None:
            await server.wait_closed()

    def freeze_on(self, pattern: bytes) -> None:
        """The next client chunk holding `pattern` goes through, then its connection
        passes nothing more either way, open but silent (a server that stopped
        answering), until cut. Once: later connections pass as usual."""
        self._freeze_on = pattern

    def _frozen(self, silent: asyncio.Event) -> None:
        self._freeze_on = None
        self.frozen += 1
        silent.set()

    async def resume(self) -> None:
        await self.start()

    async def stop(self) -> None:
        await self.cut()

    async def _drain_pipes(self) -> None:
        pipes = list(self._pipes)
        for pipe in pipes:
            pipe.cancel()
        await asyncio.gather(*pipes, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))
        silent = asyncio.Event()

        def watch(data: bytes) -> None:
            if self._freeze_on is not None and self._freeze_on in data:
                self._frozen(silent)

        pipes = {
            asyncio.ensure_future(_pipe(reader, up_writer, silent, watch)),
            asyncio.ensure_future(_pipe(up_reader, writer, silent)),
        }
        self._pipes.update(pipes)
        try:
            # Either direction ending ends the connection.
            await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pipe in pipes:
                pipe.cancel()
            await asyncio.gather(*pipes, return_exceptions=True)
            self._pipes.difference_update(pipes)
            for w in (writer, up_writer):
                self._writers.discard(w)
                w.transport.abort()


async def _pipe(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    silent: asyncio.Event,
    watch: Callable[[bytes], None] | None = None,
) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        while data := await reader.read(65536):
            if silent.is_set():
                continue  # read and dropped: the other end sees no close, only silence
            writer.write(data)
            await writer.drain()
            if watch is not None:
                watch(data)

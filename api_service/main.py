"""Run the API under uvicorn inside the caller's event loop until `stop` is set."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator

import uvicorn

from api_service.app import create_app
from shared.errors import ConfigError, PingtrackError
from shared.settings import Settings

log = logging.getLogger(__name__)


class _Server(uvicorn.Server):
    """uvicorn without its signal handlers: the caller owns signals and sets `stop`."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _listen(host: str, ports: list[int]) -> list[socket.socket]:
    """Bind every port up front so a clash is reported before anything starts."""
    bound: list[socket.socket] = []
    try:
        for port in dict.fromkeys(ports):
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets that
            # say so, and without it keep-alive responses wait ~40 ms on delayed ACKs.
            sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
            bound.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(1024)
            sock.setblocking(False)
    except OSError as exc:
        for sock in bound:
            sock.close()
        raise ConfigError(f"the API cannot listen on {host}:{port}: {exc.strerror}") from exc
    return bound


async def run(settings: Settings, stop: asyncio.Event) -> None:
    app = create_app(settings)
    ports = [settings.api_port] + ([settings.web_port] if settings.web_port else [])
    sockets = _listen(settings.api_host, ports)
    config = uvicorn.Config(
        app,
        host=settings.api_host,
        port=settings.api_port,
        log_level="warning",
        lifespan="on",
        access_log=False,
        log_config=None,  # keep the process's own logging set-up
    )
    server = _Server(config)

    async def stop_when_asked() -> None:
        await stop.wait()
        server.should_exit = True

    watcher = asyncio.create_task(stop_when_asked())
    try:
        # Run in this task, not a new one: uvicorn raises SystemExit on a failed
        # start, which a task would pass straight to the event loop.
        await server.serve(sockets=sockets)
    except SystemExit as exc:
        error: PingtrackError | None = app.state.startup_error
        raise error or ConfigError(
            f"the API could not start on {settings.api_host}:{settings.api_port} "
            "(is the port in use? see the log above)"
        ) from exc
    except asyncio.CancelledError:
        # Cancelled from outside: still close connections and the pool.
        if server.started:
            server.should_exit = True
            await asyncio.shield(server.shutdown())
        raise
    finally:
        for sock in sockets:
            sock.close()
        watcher.cancel()
        await asyncio.wait({watcher})
    log.info("api stopped")

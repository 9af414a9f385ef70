"""Run services in the foreground until SIGINT/SIGTERM, then let them shut down cleanly."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable, Sequence

log = logging.getLogger(__name__)

Service = Callable[[asyncio.Event], Awaitable[None]]


async def run_services(services: Sequence[tuple[str, Service]], stop: asyncio.Event) -> None:
    """Run every service until `stop` is set or one of them fails.

    A failing service sets `stop`, so the others flush and close instead of
    being cancelled mid-write; the first failure is then re-raised.
    """
    failures: list[BaseException] = []

    async def guarded(name: str, service: Service) -> None:
        try:
            await service(stop)
        except Exception as exc:
            log.error("service failed, stopping the others", extra={"service": name}, exc_info=True)
            failures.append(exc)
            stop.set()
        else:
            if not stop.is_set():
                log.error("service returned early, stopping the others", extra={"service": name})
                stop.set()

    async with asyncio.TaskGroup() as group:
        for name, service in services:
            group.create_task(guarded(name, service), name=name)
    if failures:
        raise failures[0]


async def run_until_signal(services: Sequence[tuple[str, Service]]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await run_services(services, stop)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)

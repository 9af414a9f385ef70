"""A sleep that another callback can cut short."""

from __future__ import annotations

import asyncio


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class Waker:
    """`await sleep(delay)` returns after `delay` seconds or at the next `wake()`."""

    def __init__(self) -> None:
        self._future: asyncio.Future[None] | None = None
        self._pending_wake = False

    def wake(self) -> None:
        if self._future is None:
            self._pending_wake = True  # nobody sleeps: the next sleep returns at once
        else:
            _resolve(self._future)

    async def sleep(self, delay: float | None) -> None:
        """Sleep `delay` seconds (None: until woken)."""
        if self._pending_wake:
            self._pending_wake = False
            return
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        handle = None if delay is None else loop.call_later(max(delay, 0.0), _resolve, future)
        self._future = future
        try:
            await future
        finally:
            self._future = None
            if handle is not None:
                handle.cancel()

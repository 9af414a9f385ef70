"""Capped, jittered exponential backoff: the one reconnect policy every service uses."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


def delays(base: float = 0.1, cap: float = 5.0, factor: float = 2.0) -> Iterator[float]:
    """Full-jitter delays: uniform(0, min(cap, base * factor**n))."""
    ceiling = base
    while True:
        yield random.uniform(ceiling / 2, ceiling)
        ceiling = min(cap, ceiling * factor)


async def retry(
    attempt: Callable[[], Awaitable[T]],
    *,
    what: str,
    retry_on: tuple[type[BaseException], ...] = (OSError,),
    timeout: float | None = None,
    cap: float = 5.0,
) -> T:
    """Call `attempt` until it succeeds; give up after `timeout` seconds (None: never)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    failures = 0
    for delay in delays(cap=cap):
        try:
            return await attempt()
        except retry_on as exc:
            failures += 1
            if deadline is not None and time.monotonic() + delay > deadline:
                raise
            # First failure is worth a warning; the rest only while debugging.
            level = logging.WARNING if failures == 1 else logging.DEBUG
            log.log(
                level, "%s failed, retrying", what, extra={"error": repr(exc), "retry_in": delay}
            )
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")

"""Hostname targets: keep each one resolved, and say when its address changes.

One task per tracked name resolves it, hands the address to the scheduler
and records it (a record when the address differs from the last one this
prober saw, and one per failed attempt), then sleeps until the answer's TTL
runs out or, when the TTL is unknown, the re-resolve interval. While a name
does not resolve its target is not probed: a resolution failure is not loss.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from shared.codec import AddressRecord

from .resolve import ResolveError, Resolver

log = logging.getLogger(__name__)

# One resolution may take this long before it counts as failed.
RESOLVE_TIMEOUT_S = 10.0
# However short a DNS TTL, do not ask more often than this.
MIN_REFRESH_S = 1.0

OnAddress = Callable[[int, str | None], None]
OnRecord = Callable[[AddressRecord], None]


def refresh_delay(ttl_s: float | None, interval_s: float) -> float:
    """Seconds until the next resolution: the TTL when known (floored), else the interval."""
    if ttl_s is None:
        return interval_s
    return min(max(ttl_s, MIN_REFRESH_S), interval_s)


@dataclass(slots=True)
class _Tracked:
    host: str
    family: str
    task: asyncio.Task[None]
    address: str | None = None


class Names:
    """Owns the resolution tasks of this prober's hostname targets."""

    def __init__(
        self,
        resolver: Resolver,
        on_address: OnAddress,
        on_record: OnRecord,
        interval_s: float,
    ) -> None:
        self._resolver = resolver
        self._on_address = on_address
        self._on_record = on_record
        self._interval_s = interval_s
        self._tracked: dict[int, _Tracked] = {}
        self.resolutions = 0
        self.failures = 0
        self.changes = 0

    @property
    def size(self) -> int:
        return len(self._tracked)

    def track(self, target_id: int, host: str, family: str) -> str | None:
        """Keep `host` resolved for the target; the address already known, if any."""
        held = self._tracked.get(target_id)
        if held is not None and held.host == host and held.family == family:
            return held.address
        self.forget(target_id)
        task = asyncio.get_running_loop().create_task(
            self._follow(target_id, host, family), name=f"resolve-{target_id}"
        )
        self._tracked[target_id] = _Tracked(host, family, task)
        return None

    def forget(self, target_id: int) -> None:
        held = self._tracked.pop(target_id, None)
        if held is not None:
            held.task.cancel()

    async def close(self) -> None:
        tasks = [held.task for held in self._tracked.values()]
        self._tracked.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _follow(self, target_id: int, host: str, family: str) -> None:
        while True:
            ttl: float | None = None
            try:
                async with asyncio.timeout(RESOLVE_TIMEOUT_S):
                    resolved = await self._resolver.resolve(host, family)
            except (ResolveError, TimeoutError) as exc:
                reason = str(exc) if isinstance(exc, ResolveError) else "resolver timeout"
                self._failed(target_id, host, reason)
            else:
                ttl = resolved.ttl_s
                self._resolved(target_id, resolved.address)
            await asyncio.sleep(refresh_delay(ttl, self._interval_s))

    def _resolved(self, target_id: int, address: str) -> None:
        self.resolutions += 1
        held = self._tracked.get(target_id)
        if held is None or held.address == address:
            return
        if held.address is not None:
            self.changes += 1
            log.info(
                "target address changed",
                extra={"target_id": target_id, "old": held.address, "new": address},
            )
        held.address = address
        self._on_record(AddressRecord(target_id, time.time_ns() // 1000, address, None))
        self._on_address(target_id, address)

    def _failed(self, target_id: int, host: str, reason: str) -> None:
        self.failures += 1
        held = self._tracked.get(target_id)
        if held is None:
            return
        log.info(
            "hostname did not resolve",
            extra={"target_id": target_id, "host": host, "reason": reason},
        )
        held.address = None
        self._on_record(AddressRecord(target_id, time.time_ns() // 1000, None, reason[:200]))
        self._on_address(target_id, None)

"""What a prober reports in its heartbeat: counters and the send rate since the last one."""

from __future__ import annotations

import time
from typing import Any

from .engine import Pinger
from .names import Names
from .probes import Probes
from .publisher import Publisher
from .scheduler import Scheduler
from .shards import Ownership


class ProberStats:
    """Snapshots of the prober's counters; the API turns them into /metrics."""

    def __init__(
        self,
        pinger: Pinger,
        scheduler: Scheduler,
        publisher: Publisher,
        ownership: Ownership,
        probes: Probes | None = None,
        names: Names | None = None,
    ) -> None:
        self._probes = probes
        self._names = names
        self._pinger = pinger
        self._scheduler = scheduler
        self._publisher = publisher
        self._ownership = ownership
        self._last: tuple[float, int] | None = None

    def snapshot(self) -> dict[str, Any]:
        now = time.monotonic()
        sent = self._pinger.sent.total()
        rate = 0.0
        if self._last is not None and now > self._last[0]:
            rate = (sent - self._last[1]) / (now - self._last[0])
        self._last = (now, sent)
        stats = self._pinger.stats
        extra: dict[str, Any] = {}
        if self._probes is not None:
            extra["probes_sent"] = self._probes.sent.total()
            extra["probes_failed"] = self._probes.failed
            extra["probes_busy"] = self._probes.busy
            extra["probes_in_flight"] = self._probes.in_flight
        if self._names is not None:
            extra["hostnames"] = self._names.size
            extra["resolve_failures"] = self._names.failures
            extra["address_changes"] = self._names.changes
        return extra | {
            "targets": self._scheduler.size,
            "shards": len(self._ownership.shards),
            "sent": sent,
            "send_rate": round(rate, 1),
            "replies": stats.replies,
            "lost": stats.lost,
            "late_sends": self._scheduler.late,
            "unresolved_slots": self._scheduler.unresolved,
            "refused_specs": self._scheduler.refused,
            "skipped_sends": self._scheduler.missed.total(),
            "send_errors": stats.send_errors,
            "pending": self._pinger.pending_count,
            "published_results": self._publisher.published_results,
            "dropped_results": self._publisher.dropped_results,
            "buffered_results": self._publisher.buffered,
            **self._publisher.spool_figures(),
            "modes": self._pinger.modes,
        }

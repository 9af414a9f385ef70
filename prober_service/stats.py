"""What a prober reports in its heartbeat: counters and the send rate since the last one."""

from __future__ import annotations

import time
from collections import Counter, deque
from typing import Any

from .engine import Pinger
from .names import Names
from .probes import Probes
from .publisher import Publisher
from .scheduler import Scheduler
from .shards import Ownership

# Local failures in this window make /health degraded: long enough not to flap
# with a target that fails once a minute, short enough to clear soon after a fix.
LOCAL_WINDOW_S = 60.0


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
        # (when, local failures by then): the oldest is at most LOCAL_WINDOW_S old, or the start.
        self._local_marks: deque[tuple[float, Counter[str]]] = deque(
            [(time.monotonic(), Counter())]
        )

    def local_failures(self) -> Counter[str]:
        """Slots not sent for a local reason since the start, by reason (engine and probes)."""
        local = self._pinger.local.by_reason.copy()
        if self._probes is not None:
            local.update(self._probes.local.by_reason)
        return local

    def snapshot(self) -> dict[str, Any]:
        now = time.monotonic()
        sent = self._pinger.sent.total()
        rate = 0.0
        if self._last is not None and now > self._last[0]:
            rate = (sent - self._last[1]) / (now - self._last[0])
        self._last = (now, sent)
        stats = self._pinger.stats
        local = self.local_failures()
        marks = self._local_marks
        marks.append((now, local))
        while marks[1][0] <= now - LOCAL_WINDOW_S:
            marks.popleft()
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
            # Slots not sent for a local reason, by reason: since the start, and
            # in the last LOCAL_WINDOW_S (what /health reads).
            "local_failures": dict(local),
            "local_failures_recent": dict(local - marks[0][1]),
            "local_failures_window_s": LOCAL_WINDOW_S,
            "pending": self._pinger.pending_count,
            "published_results": self._publisher.published_results,
            "dropped_results": self._publisher.dropped_results,
            "buffered_results": self._publisher.buffered,
            **self._publisher.spool_figures(),
            "modes": self._pinger.modes,
        }

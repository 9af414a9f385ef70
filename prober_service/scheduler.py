"""Which targets are pinged and when: follows target specs, sends what is due."""

from __future__ import annotations

import asyncio
import heapq
import ipaddress
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

from shared.codec import TargetSpec

from .resolve import is_ip
from .schedule import advance, first_slot_at_or_after, phase_us
from .waker import Waker

log = logging.getLogger(__name__)

# Sleep at most this long, so a stepped wall clock is noticed soon.
_MAX_SLEEP_S = 1.0
# A change of the wall-minus-monotonic offset beyond this is a clock step.
_CLOCK_STEP_NS = 100_000_000
# A send later than this after its slot counts as late.
LATE_US = 10_000
# While sending is not allowed (lease lapsed), look again this often.
_GATED_SLEEP_S = 0.05
# Sends per burst before the loop may read replies: a scheduler that fell
# behind must not let replies overflow the socket buffer (false losses).
SEND_BURST = 256


class Sender(Protocol):
    def send(self, target_id: int, address: str, ipv6: bool, timeout_ns: int) -> None: ...


SendFn = Callable[[int, str, bool, int], None]


class ProbeStarter(Protocol):
    """Runs tcp/http probes (prober_service.probes.Probes)."""

    def sender_for(self, spec: TargetSpec) -> SendFn: ...


class NameTracker(Protocol):
    """Keeps hostnames resolved (prober_service.names.Names)."""

    def track(self, target_id: int, host: str, family: str) -> str | None: ...

    def forget(self, target_id: int) -> None: ...


def probe_host(spec: TargetSpec) -> str | None:
    """The host a target's probes go to: its address/hostname, or its URL's host."""
    if spec.kind == "http":
        return urlsplit(spec.url or "").hostname
    return spec.address


def is_newer(spec: TargetSpec, held_rev: int | None) -> bool:
    """Changes apply in `rev` order; an older or repeated one is stale."""
    return held_rev is None or spec.rev > held_rev


@dataclass(slots=True)
class _Entry:
    spec: TargetSpec
    address: str  # "" while a hostname is unresolved
    ipv6: bool
    interval_us: int
    phase: int
    due_us: int
    generation: int
    # What a due slot calls: the engine, a probe, or the unresolved counter.
    send: SendFn
    probe: SendFn  # the engine or probe, once an address is known


class Scheduler:
    """Holds the targets this prober pings and sends each ping at its slot."""

    def __init__(
        self,
        sender: Sender,
        owns: Callable[[int], bool] = lambda _: True,
        may_send: Callable[[], bool] = lambda: True,
        *,
        probes: ProbeStarter | None = None,
        names: NameTracker | None = None,
        probe_floor_ms: int = 1000,
    ) -> None:
        self._sender = sender
        self._owns = owns
        self._may_send = may_send
        self._probes = probes
        self._names = names
        self._probe_floor_ms = probe_floor_ms
        self.unresolved = 0  # slots skipped: the target's hostname has no address
        self.refused = 0  # specs refused: unsupported kind or interval under the floor
        self._revs: dict[int, int] = {}  # latest rev seen per target, scheduled or not
        self._entries: dict[int, _Entry] = {}
        self._heap: list[tuple[int, int, int]] = []  # (due µs, target id, generation)
        self._generation = 0
        self._waker = Waker()
        self._stopped = False
        self.missed: Counter[int] = Counter()
        self.late = 0  # sends more than LATE_US after their slot

    @property
    def next_due_us(self) -> int | None:
        """When the earliest scheduled send is due (µs since the epoch), if any."""
        return self._heap[0][0] if self._heap else None

    @property
    def size(self) -> int:
        return len(self._entries)

    @property
    def scheduled(self) -> dict[int, TargetSpec]:
        return {tid: entry.spec for tid, entry in self._entries.items()}

    def apply(self, spec: TargetSpec) -> bool:
        """Take a target's new spec; False if it is stale (an older rev than held)."""
        if not self._owns(spec.id):
            # Not ours (any more): forget it, so taking its shard later loads it afresh.
            self._drop(spec.id)
            self._revs.pop(spec.id, None)
            return False
        if not is_newer(spec, self._revs.get(spec.id)):
            log.debug("stale target spec ignored", extra={"target_id": spec.id, "rev": spec.rev})
            return False
        self._revs[spec.id] = spec.rev
        if spec.active:
            self._schedule(spec)
        else:
            self._drop(spec.id)
        return True

    def _drop(self, target_id: int) -> bool:
        if self._names is not None:
            self._names.forget(target_id)
        return self._entries.pop(target_id, None) is not None

    def retain_owned(self) -> int:
        """Drop every target this prober no longer owns; how many were dropped."""
        gone = [tid for tid in self._entries if not self._owns(tid)]
        for tid in gone:
            self._drop(tid)
        for tid in [tid for tid in self._revs if not self._owns(tid)]:
            del self._revs[tid]
        return len(gone)

    def reconcile(self, specs: Iterable[TargetSpec], asked: Iterable[int]) -> None:
        """Apply the database's view; a target asked about but absent no longer exists."""
        seen = set()
        for spec in specs:
            seen.add(spec.id)
            self.apply(spec)
        for target_id in set(asked) - seen:
            if self._drop(target_id):
                log.info("target vanished from the database", extra={"target_id": target_id})

    def _schedule(self, spec: TargetSpec) -> None:
        probe = self._probe_for(spec)
        host = probe_host(spec)
        if probe is None or not host:
            self.refused += 1
            self._drop(spec.id)
            return
        if is_ip(host):
            if self._names is not None:
                self._names.forget(spec.id)
            address: str | None = str(ipaddress.ip_address(host))
        elif self._names is not None:
            address = self._names.track(spec.id, host, spec.family)
        else:
            log.warning("hostname target without a resolver ignored", extra={"target_id": spec.id})
            self.refused += 1
            self._drop(spec.id)
            return
        interval_us = spec.interval_ms * 1000
        old = self._entries.get(spec.id)
        if old is not None and old.interval_us == interval_us:
            # Same grid: keep the next slot; the probe follows the new spec.
            old.spec, old.probe = spec, probe
            self._set_address(old, address)
            return
        # New grid: it takes effect at its next slot.
        phase = phase_us(spec.id, interval_us)
        self._generation += 1
        taken = time.time_ns() // 1000
        due = first_slot_at_or_after(taken, interval_us, phase)
        # When a target was taken in and its first slot: "why no ping yet?" answered.
        log.debug(
            "target scheduled",
            extra={
                "target_id": spec.id,
                "taken_us": taken,
                "first_slot_us": due,
                "interval_us": interval_us,
            },
        )
        entry = _Entry(
            spec, "", False, interval_us, phase, due, self._generation, self._skip, probe
        )
        self._set_address(entry, address)
        self._entries[spec.id] = entry
        if not self._heap or due < self._heap[0][0]:
            self._waker.wake()
        heapq.heappush(self._heap, (due, spec.id, entry.generation))

    def _probe_for(self, spec: TargetSpec) -> SendFn | None:
        if spec.kind == "icmp":
            return self._sender.send
        if self._probes is None:
            log.warning("probe kind not run here", extra={"target_id": spec.id, "kind": spec.kind})
            return None
        if spec.interval_ms < self._probe_floor_ms:
            log.warning(
                "probe interval under the floor refused",
                extra={
                    "target_id": spec.id,
                    "interval_ms": spec.interval_ms,
                    "floor_ms": self._probe_floor_ms,
                },
            )
            return None
        return self._probes.sender_for(spec)

    def set_address(self, target_id: int, address: str | None) -> None:
        """A hostname target's new address (None: it does not resolve; do not probe)."""
        entry = self._entries.get(target_id)
        if entry is not None:
            self._set_address(entry, address)

    def _set_address(self, entry: _Entry, address: str | None) -> None:
        if address is None:
            entry.address, entry.send = "", self._skip
        else:
            entry.address, entry.ipv6, entry.send = address, ":" in address, entry.probe

    def _skip(self, target_id: int, address: str, ipv6: bool, timeout_ns: int) -> None:
        self.unresolved += 1

    def _reanchor(self, now_us: int) -> None:
        """After a wall clock step, put every target back on its grid from now."""
        self._heap = []
        for entry in self._entries.values():
            entry.due_us = first_slot_at_or_after(now_us, entry.interval_us, entry.phase)
            self._heap.append((entry.due_us, entry.spec.id, entry.generation))
        heapq.heapify(self._heap)

    def tick(self, now_us: int, budget: int | None = None) -> bool:
        """Send the pings due at `now_us`, at most `budget`; True if some are left."""
        heap = self._heap
        left = -1 if budget is None else budget
        while heap and heap[0][0] <= now_us:
            if left == 0:
                return True
            left -= 1
            due, target_id, generation = heapq.heappop(heap)
            entry = self._entries.get(target_id)
            if entry is None or entry.generation != generation:
                continue  # unscheduled or moved to a new grid since
            step = advance(due, now_us, entry.interval_us, entry.phase)
            if step.missed:
                self.missed[target_id] += step.missed
            if step.send:
                if now_us - step.slot_us > LATE_US:
                    self.late += 1
                entry.send(target_id, entry.address, entry.ipv6, entry.spec.timeout_ms * 1_000_000)
            entry.due_us = step.next_us
            heapq.heappush(heap, (step.next_us, target_id, generation))
        return False

    def stop(self) -> None:
        """Send nothing more; `run` returns."""
        self._stopped = True
        self._waker.wake()

    async def run(self) -> None:
        offset = time.time_ns() - time.monotonic_ns()
        while not self._stopped:
            wall = time.time_ns()
            new_offset = wall - time.monotonic_ns()
            if abs(new_offset - offset) > _CLOCK_STEP_NS:
                log.warning("wall clock stepped; re-anchoring the schedule")
                self._reanchor(wall // 1000)
            offset = new_offset
            if not self._may_send():
                # Not allowed to send: due slots wait and count as missed later.
                await self._waker.sleep(_GATED_SLEEP_S)
                continue
            if self.tick(wall // 1000, SEND_BURST):
                await asyncio.sleep(0)  # let the replies in, then go on
                continue
            delay = _MAX_SLEEP_S
            if self._heap:
                delay = min(delay, (self._heap[0][0] - time.time_ns() // 1000) / 1e6)
            await self._waker.sleep(delay)

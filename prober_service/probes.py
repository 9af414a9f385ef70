"""Runs tcp and http probes as tasks, at most `limit` at once, and reports each result.

A probe that finds the limit reached is not started (counted as `busy`):
the prober stays a monitor, never a load generator. Every probe started
reports exactly one result: a ping row (rtt or failed) and, when there is
something kind-specific to say, a detail row with the same (target, ts).
That holds whatever the target sends: a destination outside the allowed
networks is a `denied` result, and an exception a probe did not expect is
logged and stored as `error: <class>`, never lost with its task.
A probe that failed on this host (no descriptor, no local port, a local
rule) never reached the network: it is counted in `local`, like a slot not
started, and stores nothing.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections import Counter
from collections.abc import Callable

from shared.codec import ProbeDetail, TargetSpec
from shared.destinations import Destinations

from .engine import ResultSink
from .local_failures import LOCAL_REASONS, PROBE_LIMIT, LocalFailures
from .probe_http import http_probe
from .probe_outcome import DENIED, ERROR, SHUTDOWN, ProbeOutcome
from .probe_tcp import tcp_connect

log = logging.getLogger(__name__)

DetailSink = Callable[[ProbeDetail], None]
SendFn = Callable[[int, str, bool, int], None]


class Probes:
    def __init__(
        self,
        sink: ResultSink,
        details: DetailSink,
        *,
        limit: int,
        context: ssl.SSLContext,
        body_max: int,
        destinations: Destinations | None = None,
    ) -> None:
        self._sink = sink
        self._destinations = destinations or Destinations.default()
        self._details = details
        self._limit = limit
        self._context = context
        self._body_max = body_max
        self._tasks: set[asyncio.Task[None]] = set()
        self.sent: Counter[int] = Counter()
        self.failed = 0
        self.busy = 0  # probes not started: the concurrency limit was reached
        self.local = LocalFailures()  # slots that never reached the network, busy ones too

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    def sender_for(self, spec: TargetSpec) -> SendFn:
        """What the scheduler calls at each of the target's slots."""

        def send(target_id: int, address: str, ipv6: bool, timeout_ns: int) -> None:
            self._start(spec, address, ipv6, timeout_ns / 1e9)

        return send

    def _start(self, spec: TargetSpec, address: str, ipv6: bool, timeout_s: float) -> None:
        if len(self._tasks) >= self._limit:
            self.busy += 1
            self.local.add(spec.id, PROBE_LIMIT)
            log.debug("probe skipped, concurrency limit reached", extra={"target_id": spec.id})
            return
        self.sent[spec.id] += 1
        ts_us = time.time_ns() // 1000
        task = asyncio.get_running_loop().create_task(
            self._probe(spec, address, ipv6, timeout_s, ts_us), name=f"probe-{spec.id}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _probe(
        self, spec: TargetSpec, address: str, ipv6: bool, timeout_s: float, ts_us: int
    ) -> None:
        try:
            refusal = self._destinations.refusal(address)
            if refusal is not None:
                outcome = ProbeOutcome(None, f"{DENIED}: {refusal}")
            elif spec.kind == "tcp":
                outcome = await tcp_connect(address, spec.port or 0, ipv6, timeout_s)
            else:
                outcome = await http_probe(spec, address, timeout_s, self._context, self._body_max)
        except asyncio.CancelledError:
            self._report(spec.id, ts_us, ProbeOutcome(None, SHUTDOWN))
            raise
        except Exception as exc:
            log.exception("probe raised", extra={"target_id": spec.id, "kind": spec.kind})
            outcome = ProbeOutcome(None, f"{ERROR}: {type(exc).__name__}")
        self._report(spec.id, ts_us, outcome)

    def _report(self, target_id: int, ts_us: int, outcome: ProbeOutcome) -> None:
        if outcome.error in LOCAL_REASONS:
            self.sent[target_id] -= 1  # it never left this host: not a probe sent
            self.local.add(target_id, outcome.error)
            return
        if outcome.rtt_us is None:
            self.failed += 1
        # Detail first: a batch sealed by the ping then holds both.
        if outcome.error is not None or outcome.status is not None:
            self._details(
                ProbeDetail(
                    target_id,
                    ts_us,
                    outcome.status,
                    outcome.ttfb_us,
                    outcome.cert_expires_us,
                    outcome.error,
                )
            )
        self._sink(target_id, ts_us, outcome.rtt_us, None, None)

    async def drain(self, timeout: float) -> None:
        """Let the probes in flight finish (each is bounded by its own timeout)."""
        if self._tasks:
            _, late = await asyncio.wait(set(self._tasks), timeout=timeout)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)

"""The scheduler with hostname and tcp/http targets: what it sends, skips and refuses."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from prober_service.scheduler import Scheduler, SendFn
from shared.codec import TargetSpec


@dataclass
class Recorder:
    sent: list[tuple[str, int, str, bool]] = field(default_factory=list)

    def send(self, target_id: int, address: str, ipv6: bool, timeout_ns: int) -> None:
        self.sent.append(("icmp", target_id, address, ipv6))

    def sender_for(self, spec: TargetSpec) -> SendFn:
        def send(target_id: int, address: str, ipv6: bool, timeout_ns: int) -> None:
            self.sent.append((spec.kind, target_id, address, ipv6))

        return send


@dataclass
class FixedNames:
    known: dict[str, str]
    tracked: dict[int, str] = field(default_factory=dict)

    def track(self, target_id: int, host: str, family: str) -> str | None:
        self.tracked[target_id] = host
        return self.known.get(host)

    def forget(self, target_id: int) -> None:
        self.tracked.pop(target_id, None)


def spec(target_id: int, address: str = "", **fields: object) -> TargetSpec:
    return TargetSpec(target_id, address, 1000, 500, "active", 1, **fields)  # type: ignore[arg-type]


def run_one_interval(scheduler: Scheduler, after_s: float = 0.0) -> None:
    """Tick through the next second of the grid (slots are anchored on the real clock)."""
    start = time.time_ns() // 1000 + int(after_s * 1e6)
    for step in range(0, 1_000_001, 50_000):
        scheduler.tick(start + step)


def make() -> tuple[Scheduler, Recorder, FixedNames]:
    recorder = Recorder()
    names = FixedNames({"known.test": "::1"})
    scheduler = Scheduler(recorder, probes=recorder, names=names, probe_floor_ms=1000)
    return scheduler, recorder, names


def test_each_kind_goes_to_its_sender_with_the_resolved_address() -> None:
    scheduler, recorder, names = make()
    scheduler.apply(spec(1, "127.0.0.1"))
    scheduler.apply(spec(2, "known.test", kind="tcp", port=22))
    scheduler.apply(spec(3, kind="http", url="http://127.0.0.3:8080/x"))
    run_one_interval(scheduler)
    assert sorted(recorder.sent) == [
        ("http", 3, "127.0.0.3", False),
        ("icmp", 1, "127.0.0.1", False),
        ("tcp", 2, "::1", True),
    ]
    assert names.tracked == {2: "known.test"}


def test_unresolved_hostname_is_skipped_until_an_address_arrives() -> None:
    scheduler, recorder, _ = make()
    scheduler.apply(spec(4, "unknown.test"))
    run_one_interval(scheduler)
    assert recorder.sent == [] and scheduler.unresolved >= 1
    scheduler.set_address(4, "127.0.0.44")
    run_one_interval(scheduler, 1.0)
    assert recorder.sent == [("icmp", 4, "127.0.0.44", False)]
    scheduler.set_address(4, None)
    run_one_interval(scheduler, 2.0)
    assert len(recorder.sent) == 1


def test_probe_interval_under_the_floor_is_refused() -> None:
    scheduler, recorder, _ = make()
    fast = TargetSpec(5, "127.0.0.1", 500, 400, "active", 1, kind="tcp", port=80)
    scheduler.apply(fast)
    run_one_interval(scheduler)
    assert (scheduler.size, scheduler.refused, recorder.sent) == (0, 1, [])


def test_dropping_a_hostname_target_stops_its_resolution() -> None:
    scheduler, _, names = make()
    scheduler.apply(spec(6, "known.test"))
    assert names.tracked == {6: "known.test"}
    scheduler.apply(TargetSpec(6, "known.test", 1000, 500, "paused", 2))
    assert names.tracked == {} and scheduler.size == 0

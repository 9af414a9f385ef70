"""Scheduler behaviour a loaded prober relies on: bounded bursts, late and gated sends."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

from prober_service.scheduler import LATE_US, Scheduler
from shared.codec import TargetSpec
from tests.conftest import eventually

SECOND = 1_000_000


class Recorder:
    def __init__(self) -> None:
        self.sent: list[int] = []

    def send(self, target_id: int, address: str, ipv6: bool, timeout_ns: int) -> None:
        self.sent.append(target_id)


def loaded(n: int) -> tuple[Scheduler, Recorder]:
    recorder = Recorder()
    scheduler = Scheduler(recorder)
    for tid in range(1, n + 1):
        scheduler.apply(TargetSpec(tid, "127.0.0.1", 1000, 1000, "active", 1))
    return scheduler, recorder


def test_a_budgeted_tick_sends_at_most_the_budget_and_says_more_is_due() -> None:
    scheduler, recorder = loaded(1000)
    start = time.time_ns() // 1000
    # About 400 targets are due 0.4 s in, none of them half an interval late.
    assert scheduler.tick(start + 400_000, 256) is True
    assert len(recorder.sent) == 256
    for now in (start + 400_000, start + 800_000, start + SECOND):
        while scheduler.tick(now, 256):
            pass
    assert set(recorder.sent) == set(range(1, 1001))  # none lost
    # A target scheduled while the others were still being loaded may see its
    # second slot inside this second; none sees a third.
    assert max(Counter(recorder.sent).values()) <= 2
    assert scheduler.tick(start + SECOND, 256) is False


def _one_round(scheduler: Scheduler, targets: int, delay_us: int) -> None:
    """Wake `delay_us` after each target's slot (golden-ratio phases of 10 targets
    lie over 38 ms apart, so each wake sends exactly one)."""
    for _ in range(targets):
        due = scheduler.next_due_us
        assert due is not None
        scheduler.tick(due + delay_us)


def test_sends_long_after_their_slot_count_as_late() -> None:
    scheduler, recorder = loaded(10)
    _one_round(scheduler, 10, LATE_US // 2)
    assert len(recorder.sent) == 10 and scheduler.late == 0
    _one_round(scheduler, 10, 3 * LATE_US)
    assert len(recorder.sent) == 20
    assert scheduler.late == 10


async def test_a_closed_gate_holds_every_send_until_it_opens() -> None:
    recorder = Recorder()
    allowed = False
    scheduler = Scheduler(recorder, may_send=lambda: allowed)
    scheduler.apply(TargetSpec(1, "127.0.0.1", 100, 100, "active", 1))
    loop = asyncio.get_running_loop()
    runner = asyncio.create_task(scheduler.run())
    try:
        # A sleep on purpose: the gate stays closed over three slots and more.
        await asyncio.sleep(0.35)
        assert recorder.sent == []
        opened_at = loop.time()
        allowed = True

        async def three_sent() -> bool:
            return len(recorder.sent) >= 3

        await eventually(three_sent, timeout=5, interval=0.01)
        sent, elapsed = len(recorder.sent), loop.time() - opened_at
        # One send for the latest held slot (the older ones are skipped), then on
        # schedule: at most one per slot since the gate opened, however long that took.
        assert sent <= 2 + elapsed / 0.1, (sent, elapsed)
        assert scheduler.missed[1] >= 2
    finally:
        scheduler.stop()
        await runner

"""Pure scheduling: phases, the epoch-anchored grid, catching up, and rev ordering."""

from __future__ import annotations

import random
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from prober_service.schedule import Step, advance, first_slot_at_or_after, phase_us
from prober_service.scheduler import Scheduler
from prober_service.shards import Ownership
from shared.codec import TargetSpec
from shared.constants import SHARD_COUNT, Topology

SECOND = 1_000_000


class RecordingSender:
    """Stands in for the ICMP engine: remembers what it was asked to send."""

    def __init__(self) -> None:
        self.sent: list[tuple[int, str, bool, int]] = []

    def send(self, target_id: int, address: str, ipv6: bool, timeout_ns: int) -> None:
        self.sent.append((target_id, address, ipv6, timeout_ns))


def spec(target_id: int = 1, rev: int = 1, state: str = "active", **kw: object) -> TargetSpec:
    fields: dict[str, object] = {
        "address": "127.0.0.1",
        "interval_ms": 1000,
        "timeout_ms": 500,
    } | kw
    return TargetSpec(id=target_id, state=state, rev=rev, **fields)  # type: ignore[arg-type]


@given(target_id=st.integers(1, 2**62), interval=st.integers(1, 3600 * SECOND))
def test_phase_lies_inside_the_interval(target_id: int, interval: int) -> None:
    assert 0 <= phase_us(target_id, interval) < interval


@pytest.mark.parametrize("count", [10, 100, 1000, 10_000])
@pytest.mark.parametrize("first_id", [1, 123_456])
def test_phases_of_consecutive_ids_spread_evenly(count: int, first_id: int) -> None:
    interval = SECOND
    phases = sorted(phase_us(i, interval) for i in range(first_id, first_id + count))
    gaps = [b - a for a, b in zip(phases, [*phases[1:], phases[0] + interval], strict=True)]
    even = interval / count
    # Golden-ratio multiples leave at most three gap sizes, all close to even.
    assert max(gaps) <= 3 * even
    assert min(gaps) >= even / 3


@given(
    now=st.integers(0, 2**53),
    interval=st.integers(1, 3600 * SECOND),
    data=st.data(),
)
def test_first_slot_is_the_next_grid_point(now: int, interval: int, data: st.DataObject) -> None:
    phase = data.draw(st.integers(0, interval - 1))
    slot = first_slot_at_or_after(now, interval, phase)
    assert now <= slot < now + interval
    assert slot % interval == phase


def test_slots_never_drift_over_many_intervals() -> None:
    interval, phase = 100_000, 31_337
    start = first_slot_at_or_after(1_700_000_000 * SECOND, interval, phase)
    rng = random.Random(7)
    due, slots = start, []
    for _ in range(10_000):
        # The loop wakes a little late every time, never half an interval.
        now = due + rng.randrange(interval // 2)
        step = advance(due, now, interval, phase)
        assert step.send and step.missed == 0
        slots.append(step.slot_us)
        due = step.next_us
    assert slots == [start + k * interval for k in range(10_000)]


def test_not_yet_due_waits() -> None:
    assert advance(5 * SECOND, 4 * SECOND + 1, SECOND, 0) == Step(False, 0, 0, 5 * SECOND)


def test_falling_behind_skips_missed_slots_instead_of_bursting() -> None:
    interval = SECOND
    step = advance(10 * SECOND, 13 * SECOND + 200_000, interval, 0)
    assert step == Step(send=True, slot_us=13 * SECOND, missed=3, next_us=14 * SECOND)


def test_a_send_more_than_half_an_interval_late_is_skipped_not_crowded() -> None:
    # Sending at 13.7 s for the 13 s slot would put two pings 0.3 s apart.
    step = advance(10 * SECOND, 13 * SECOND + 700_000, SECOND, 0)
    assert step == Step(send=False, slot_us=0, missed=4, next_us=14 * SECOND)
    assert advance(10 * SECOND, 10 * SECOND + 600_000, SECOND, 0) == Step(False, 0, 1, 11 * SECOND)


@given(
    due=st.integers(0, 10**9),
    late=st.integers(0, 10**8),
    interval=st.integers(100_000, 3_600_000_000),
)
def test_consecutive_sends_are_never_closer_than_half_an_interval(
    due: int, late: int, interval: int
) -> None:
    step = advance(due, due + late, interval, due % interval)
    if step.send:
        assert step.next_us - (due + late) >= interval // 2
    assert step.next_us > due + late


def test_wall_clock_stepped_back_reanchors_on_the_grid() -> None:
    # Due at 100 s, but the clock now says 50.3 s.
    step = advance(100 * SECOND, 50 * SECOND + 300_000, SECOND, 250_000)
    assert step == Step(False, 0, 0, 51 * SECOND + 250_000)


def now_us() -> int:
    return time.time_ns() // 1000


def test_scheduler_sends_each_target_at_its_slot_only() -> None:
    sender = RecordingSender()
    scheduler = Scheduler(sender)
    scheduler.apply(spec(7, address="::1", timeout_ms=250))
    due = first_slot_at_or_after(now_us(), SECOND, phase_us(7, SECOND))
    scheduler.tick(due - 1)
    assert sender.sent == []
    scheduler.tick(due)
    assert sender.sent == [(7, "::1", True, 250_000_000)]
    scheduler.tick(due + 1)
    assert len(sender.sent) == 1
    # Stalled for two and a half intervals: one send, two slots counted as missed.
    scheduler.tick(due + 3 * SECOND + SECOND // 2)
    assert len(sender.sent) == 2
    assert scheduler.missed[7] == 2


def test_scheduler_normalises_addresses() -> None:
    sender = RecordingSender()
    scheduler = Scheduler(sender)
    scheduler.apply(spec(1, address="0:0::0:1"))
    due = scheduler.next_due_us
    assert due is not None
    scheduler.tick(due + 1)
    assert sender.sent[0][1:3] == ("::1", True)


def test_older_or_repeated_rev_is_ignored() -> None:
    scheduler = Scheduler(RecordingSender())
    assert scheduler.apply(spec(1, rev=5))
    assert not scheduler.apply(spec(1, rev=4, state="paused"))
    assert 1 in scheduler.scheduled
    assert scheduler.apply(spec(1, rev=6, state="paused"))
    assert 1 not in scheduler.scheduled
    assert not scheduler.apply(spec(1, rev=6, state="active"))
    assert not scheduler.apply(spec(1, rev=2, state="active"))
    assert 1 not in scheduler.scheduled
    assert scheduler.apply(spec(1, rev=7, state="active"))
    assert scheduler.scheduled[1].rev == 7


@pytest.mark.parametrize("state", ["paused", "stopped", "deleted"])
def test_any_state_but_active_unschedules_at_once(state: str) -> None:
    sender = RecordingSender()
    scheduler = Scheduler(sender)
    scheduler.apply(spec(3, rev=1))
    scheduler.apply(spec(3, rev=2, state=state))
    scheduler.tick(now_us() + 10 * SECOND)
    assert sender.sent == []


def test_interval_change_takes_effect_at_the_next_slot_of_the_new_grid() -> None:
    sender = RecordingSender()
    scheduler = Scheduler(sender)
    scheduler.apply(spec(9, rev=1, interval_ms=3_600_000))
    scheduler.apply(spec(9, rev=2, interval_ms=200))
    start = now_us()
    for offset in range(0, SECOND, 10_000):
        scheduler.tick(start + offset)
    # About five slots in one second instead of (most likely) none at 1 h.
    assert 4 <= len(sender.sent) <= 6


def test_timeout_change_keeps_the_slot() -> None:
    sender = RecordingSender()
    scheduler = Scheduler(sender)
    scheduler.apply(spec(2, rev=1, timeout_ms=500))
    scheduler.apply(spec(2, rev=2, timeout_ms=900))
    scheduler.tick(first_slot_at_or_after(now_us(), SECOND, phase_us(2, SECOND)) + 1)
    assert [s[3] for s in sender.sent] == [900_000_000]


def test_targets_of_other_shards_are_not_scheduled() -> None:
    scheduler = Scheduler(RecordingSender(), owns=lambda target_id: target_id % 2 == 0)
    scheduler.apply(spec(1))
    scheduler.apply(spec(2))
    assert set(scheduler.scheduled) == {2}


def test_reconcile_unschedules_targets_gone_from_the_database() -> None:
    scheduler = Scheduler(RecordingSender())
    scheduler.apply(spec(1))
    scheduler.apply(spec(2))
    scheduler.reconcile([spec(2), spec(3, address="127.0.0.3")], asked=[1, 2])
    assert set(scheduler.scheduled) == {2, 3}


def test_invalid_address_is_not_scheduled() -> None:
    scheduler = Scheduler(RecordingSender())
    scheduler.apply(spec(1, address="not-an-ip"))
    assert scheduler.scheduled == {}


def test_a_prober_owns_every_shard_for_now() -> None:
    ownership = Ownership()
    assert all(ownership.owns(target_id) for target_id in range(1, 1000))
    keys = ownership.routing_keys(Topology("p"))
    assert len(keys) == SHARD_COUNT == len(set(keys))
    assert keys[0] == "shard.0"


def test_ownership_of_some_shards_decides_targets_and_bindings() -> None:
    ownership = Ownership([1, 3])
    assert [t for t in range(1, 2 * SHARD_COUNT) if ownership.owns(t)] == [
        1,
        3,
        SHARD_COUNT + 1,
        SHARD_COUNT + 3,
    ]
    assert ownership.routing_keys(Topology("p")) == ["shard.1", "shard.3"]

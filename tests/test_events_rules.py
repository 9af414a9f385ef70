"""Event rules over segments: loss runs, hop changes, shifts vs spikes and drift. Pure."""

from __future__ import annotations

from api_service.history.event_detection import (
    HOP_CHANGE,
    LATENCY_SHIFT,
    LOSS,
    Event,
    Rules,
    Seg,
    detect,
)

S = 1_000_000
RULES = Rules(abs_us=5000, rel=0.2, min_plateau_us=300 * S)


def seg(start_s: int, n: int, mean_us: int, hops: int | None = 10, lost: bool = False) -> Seg:
    return Seg(
        start_s * S, (start_s + n - 1) * S, n, n if lost else 0, 0 if lost else mean_us * n,
        None if lost else hops,
    )  # fmt: skip


def test_adjacent_lost_segments_are_one_loss_run() -> None:
    segs = [seg(0, 100, 20_000), seg(100, 30, 0, lost=True), seg(130, 20, 0, lost=True),
            seg(150, 100, 20_000)]  # fmt: skip
    assert detect(segs, RULES) == [Event(LOSS, 100 * S, 149 * S, 50)]


def test_hop_change_across_a_loss_run_is_reported_once() -> None:
    segs = [seg(0, 100, 20_000, hops=10), seg(100, 5, 0, lost=True), seg(105, 100, 20_000, hops=12)]
    events = detect(segs, RULES)
    assert Event(HOP_CHANGE, 99 * S, 105 * S, 2) in events
    assert [e.kind for e in events] == [HOP_CHANGE, LOSS]  # by start


def test_step_that_holds_is_a_shift_and_a_spike_is_not() -> None:
    segs = [seg(0, 600, 20_000), seg(600, 1, 80_000), seg(601, 600, 20_000),
            seg(1201, 400, 45_000), seg(1601, 400, 45_500)]  # fmt: skip
    events = detect(segs, RULES)
    assert events == [Event(LATENCY_SHIFT, 1200 * S, 1201 * S, 25_000)]


def test_short_excursion_is_not_a_shift() -> None:
    segs = [seg(0, 600, 20_000), seg(600, 120, 60_000), seg(720, 600, 20_000)]
    assert detect(segs, RULES) == []


def test_slow_drift_is_followed_not_reported() -> None:
    # +30 % over 5 hours in 2-minute segments, each within tolerance of the last
    segs = [seg(i * 120, 120, 20_000 + i * 40) for i in range(150)]
    assert detect(segs, RULES) == []

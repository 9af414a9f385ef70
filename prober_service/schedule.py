"""When each target is pinged: evenly spread phases on a grid anchored on the epoch.

Slot k of a target is at k * interval + phase (µs since the Unix epoch), so the
schedule never drifts however late a single send is, and two probers agree on
when a target is due.
"""

from __future__ import annotations

from dataclasses import dataclass

# The golden ratio's fractional part: multiples of it mod 1 fill [0, 1) evenly
# whatever the number of targets (a low-discrepancy sequence).
_GOLDEN = 0.6180339887498949


def phase_us(target_id: int, interval_us: int) -> int:
    """A target's offset inside its interval, spread evenly by target id."""
    if interval_us <= 0:
        raise ValueError("interval must be positive")
    return int(((target_id * _GOLDEN) % 1.0) * interval_us) % interval_us


def first_slot_at_or_after(now_us: int, interval_us: int, phase: int) -> int:
    """The earliest slot of the grid (interval, phase) that is not before `now_us`."""
    k = -((phase - now_us) // interval_us)  # ceil((now - phase) / interval)
    return k * interval_us + phase


@dataclass(frozen=True, slots=True)
class Step:
    """What to do for one target at one moment."""

    send: bool
    slot_us: int  # the slot the send belongs to (when send is True)
    missed: int  # slots skipped because the loop fell behind
    next_us: int  # the target's next due slot


def advance(due_us: int, now_us: int, interval_us: int, phase: int) -> Step:
    """Decide for a target due at `due_us`, looked at `now_us`.

    Behind by less than half an interval: send now for the latest due slot.
    Further behind: skip (and count) every missed slot and wait for the next
    one, so a stall never ends in a burst or in two pings a moment apart. If
    the wall clock stepped back by more than an interval, re-anchor on the grid
    rather than stay silent until the clock catches up.
    """
    if now_us < due_us:
        if due_us - now_us > interval_us:
            return Step(False, 0, 0, first_slot_at_or_after(now_us, interval_us, phase))
        return Step(False, 0, 0, due_us)
    missed = (now_us - due_us) // interval_us
    slot = due_us + missed * interval_us
    if now_us - slot > interval_us // 2:
        return Step(False, 0, missed + 1, slot + interval_us)
    return Step(True, slot, missed, slot + interval_us)

"""What of a decoded results message is stored and what is dead-lettered (pure).

A message gives results the tables can hold and, maybe, results they cannot
(shared/validation.py: `invalid_values`); of the storable ones, those timed
before the oldest time the writer accepts are `too_late` (store.py,
LATE_MARGIN). Each refused kind leaves as a message of its own, its id
derived from the message's (shared/codec.py `derived_batch_id`), and the rest
is stored under the message's id. A message with nothing left to store and
one refused kind goes to the dead-letter queue as it came.

Exactly once: the derived ids are the same on every redelivery, and none is
ever claimed by the writer that refused the part, so a part dead-lettered
twice (a redelivery after a failed write) and replayed twice is stored once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from shared.codec import ResultBatch, encode_batch
from shared.constants import DeadReason
from shared.validation import Invalid
from writer_service.rows import split_late
from writer_service.store import too_late_reason


@dataclass(frozen=True, slots=True)
class DeadPart:
    """One dead letter a message gives."""

    code: DeadReason
    reason: str
    pings: int
    body: bytes | None = None  # None: the message as it came
    batch_id: bytes | None = None  # the part's own id, when it is a part


@dataclass(frozen=True, slots=True)
class Triage:
    keep: ResultBatch | None  # what to store under the message's id; None: nothing
    dead: tuple[DeadPart, ...]


def triage(
    batch: ResultBatch, invalid: Invalid | None, oldest_us: int, dedup_window: timedelta
) -> Triage:
    """Split a message decoded as `batch` (its storable results) and `invalid`."""
    fresh, late = split_late(batch, oldest_us)
    dead: list[DeadPart] = []
    if invalid is not None:
        dead.append(
            DeadPart(
                DeadReason.INVALID_VALUES,
                invalid.summary(),
                len(invalid),
                invalid.encode(),
                invalid.batch_id,
            )
        )
    if not late.empty:
        total = len(batch) + (0 if invalid is None else len(invalid))
        dead.append(
            DeadPart(
                DeadReason.TOO_LATE,
                too_late_reason(total, late, oldest_us, dedup_window),
                len(late),
                encode_batch(late),
                late.batch_id,
            )
        )
    if not fresh.empty or not dead:
        return Triage(fresh, tuple(dead))
    if len(dead) == 1:
        whole = dead[0]
        return Triage(None, (DeadPart(whole.code, whole.reason, whole.pings),))
    return Triage(None, tuple(dead))

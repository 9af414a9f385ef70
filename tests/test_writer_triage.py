"""What of a message the writer stores and what it dead-letters (pure: writer_service/triage.py)."""

from __future__ import annotations

from datetime import timedelta

import msgpack

from shared.codec import ResultBatch, decode_results, derived_batch_id, encode_batch
from writer_service.triage import Triage, triage

WINDOW = timedelta(hours=2)
OLDEST = 1_764_000_000_000_000
LATE, FRESH = OLDEST - 1, OLDEST + 1


def message(*rows: tuple[int, int, int | None]) -> bytes:
    """A results message of (target, ts, ttl) rows; a ttl of 300 is a value no table holds."""
    batch = ResultBatch(batch_id=b"m" * 16, prober="p")
    for target, ts, ttl in rows:
        batch.append(target, ts, 100, ttl, 1)
    return encode_batch(batch)


def plan_of(body: bytes) -> Triage:
    return triage(*decode_results(body), OLDEST, WINDOW)


def test_a_clean_message_is_kept_whole() -> None:
    plan = plan_of(message((1, FRESH, 64), (2, FRESH, 64)))
    assert plan.dead == () and plan.keep is not None and len(plan.keep) == 2


def test_an_empty_message_is_kept_so_its_id_is_claimed() -> None:
    plan = plan_of(message())
    assert plan.dead == () and plan.keep is not None and plan.keep.empty


def test_a_message_refused_for_one_cause_only_goes_as_it_came() -> None:
    for body, code in (
        (message((1, FRESH, 300), (2, FRESH, 300)), "invalid_values"),
        (message((1, LATE, 64)), "too_late"),
    ):
        plan = plan_of(body)
        assert plan.keep is None
        [whole] = plan.dead
        assert (whole.code, whole.body, whole.batch_id) == (code, None, None)


def test_each_refused_kind_is_a_part_with_its_own_derived_id() -> None:
    plan = plan_of(message((1, FRESH, 64), (2, FRESH, 300), (3, LATE, 64), (4, LATE, 300)))
    assert plan.keep is not None and plan.keep.target_ids == [1]
    invalid, late = plan.dead
    assert (invalid.code, invalid.pings, invalid.batch_id) == (
        "invalid_values",
        2,
        derived_batch_id(b"m" * 16, "invalid_values"),
    )
    assert msgpack.unpackb(invalid.body or b"")["t"] == [2, 4]
    assert (late.code, late.pings, late.batch_id) == (
        "too_late",
        1,
        derived_batch_id(b"m" * 16, "too_late"),
    )
    assert late.reason.startswith("too_late: 1 of 4 pings from before ")
    assert plan_of(message((1, FRESH, 64), (2, FRESH, 300), (3, LATE, 64), (4, LATE, 300))) == plan


def test_with_nothing_left_to_store_two_kinds_still_leave_as_parts() -> None:
    plan = plan_of(message((2, FRESH, 300), (3, LATE, 64)))
    assert plan.keep is None
    assert [(part.code, part.pings) for part in plan.dead] == [
        ("invalid_values", 1),
        ("too_late", 1),
    ]
    assert all(part.body is not None for part in plan.dead)

"""The writer's pure helpers: timestamps, days, repeats, storability."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.codec import AddressRecord, ProbeDetail, ResultBatch
from writer_service.rows import (
    PG_EPOCH_US,
    US_PER_DAY,
    day_to_date,
    days_of,
    decode_timestamptz,
    encode_timestamptz,
    late_batch_id,
    rows_of_all,
    split_late,
    split_repeats,
)


def batch_of(*ts: int, batch_id: bytes = b"a" * 16, rtt: int | None = 1000) -> ResultBatch:
    batch = ResultBatch(batch_id=batch_id)
    for t in ts:
        batch.append(7, t, rtt, 64, 0)
    return batch


def test_timestamptz_tuple_counts_from_postgres_epoch() -> None:
    assert encode_timestamptz(PG_EPOCH_US) == (0,)
    assert encode_timestamptz(PG_EPOCH_US + 1) == (1,)
    assert encode_timestamptz(0) == (-PG_EPOCH_US,)


@given(st.integers(min_value=0, max_value=2**62))
def test_timestamptz_codec_round_trips(us: int) -> None:
    assert decode_timestamptz(encode_timestamptz(us)) == us


@pytest.mark.parametrize(
    ("day", "expected"),
    [(0, date(1970, 1, 1)), (1, date(1970, 1, 2)), (20_000, date(2024, 10, 4))],
)
def test_day_number_maps_to_calendar_date(day: int, expected: date) -> None:
    assert day_to_date(day) == expected


def test_days_of_spans_midnight() -> None:
    midnight = 20_000 * US_PER_DAY
    assert days_of(batch_of(midnight - 1, midnight, midnight + 5)) == {19_999, 20_000}


def test_split_repeats_keeps_first_of_each_id() -> None:
    a, b = batch_of(1, batch_id=b"a" * 16), batch_of(2, batch_id=b"b" * 16)
    again = batch_of(1, batch_id=b"a" * 16)
    firsts, repeats = split_repeats([a, b, again])
    assert firsts == [a, b]
    assert repeats == [2]


def test_rows_of_all_chains_columns_in_table_order() -> None:
    a = batch_of(10, 20, rtt=None)
    assert list(rows_of_all([a])) == [(7, 10, None, 64, 0), (7, 20, None, 64, 0)]


def test_split_late_keeps_a_batch_with_nothing_late_whole() -> None:
    batch = batch_of(100, 200, 300)
    fresh, late = split_late(batch, 100)
    assert fresh is batch
    assert late.empty and late.batch_id == late_batch_id(batch.batch_id)


def test_split_late_parts_pings_details_and_addresses_by_time() -> None:
    batch = batch_of(300, 100, 200)
    batch.details += [
        ProbeDetail(7, 100, 200, 5, None, None),
        ProbeDetail(7, 300, None, None, None, "timeout"),
    ]
    batch.addresses += [
        AddressRecord(7, 50, "192.0.2.1", None),
        AddressRecord(7, 250, "192.0.2.2", None),
    ]
    batch.prober = "p1"
    fresh, late = split_late(batch, 200)
    assert (fresh.batch_id, fresh.prober, fresh.ts) == (batch.batch_id, "p1", [300, 200])
    assert (late.prober, late.ts, late.rtt) == ("p1", [100], [1000])
    assert [d.ts for d in fresh.details] == [300] and [d.ts for d in late.details] == [100]
    assert [a.ts for a in fresh.addresses] == [250] and [a.ts for a in late.addresses] == [50]
    everything_late, _ = split_late(batch, 10_000)
    assert everything_late.empty


def test_the_late_part_s_id_is_the_same_on_every_delivery_and_not_the_batch_s() -> None:
    assert late_batch_id(b"a" * 16) == late_batch_id(b"a" * 16)
    assert late_batch_id(b"a" * 16) not in {b"a" * 16, late_batch_id(b"b" * 16)}

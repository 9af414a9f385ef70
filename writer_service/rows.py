"""Pure helpers that turn decoded result batches into rows for the pings table."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Sequence
from datetime import date, timedelta
from typing import Any

from shared.codec import ResultBatch, derived_batch_id
from shared.constants import TOO_LATE

COLUMNS = ("target_id", "ts", "rtt_us", "ttl", "hops")
Row = tuple[int, int, int | None, int | None, int | None]

US_PER_DAY = 86_400_000_000
# PostgreSQL's binary timestamps count microseconds from 2000-01-01 UTC.
PG_EPOCH_US = 946_684_800_000_000
_UNIX_EPOCH = date(1970, 1, 1)


def encode_timestamptz(us: int) -> tuple[int]:
    """Epoch µs -> PostgreSQL's binary tuple form: no datetime per row."""
    return (us - PG_EPOCH_US,)


def decode_timestamptz(value: tuple[int]) -> int:
    return value[0] + PG_EPOCH_US


def rows_of(batch: ResultBatch) -> Iterator[Row]:
    return zip(batch.target_ids, batch.ts, batch.rtt, batch.ttl, batch.hops, strict=True)


def rows_of_all(batches: Iterable[ResultBatch]) -> Iterator[Row]:
    for batch in batches:
        yield from rows_of(batch)


def days_of(batch: ResultBatch) -> set[int]:
    """The UTC days (counted from 1970-01-01) its pings and probe details fall on."""
    days = {ts // US_PER_DAY for ts in batch.ts}
    days.update(detail.ts // US_PER_DAY for detail in batch.details)
    return days


def columns(rows: Sequence[tuple[Any, ...]]) -> list[list[Any]]:
    """Rows -> one list per field, the shape `unnest($1::..[], ...)` takes."""
    return [list(column) for column in zip(*rows, strict=True)]


def day_to_date(day: int) -> date:
    return _UNIX_EPOCH + timedelta(days=day)


def batch_uuid(batch: ResultBatch) -> uuid.UUID:
    return uuid.UUID(bytes=batch.batch_id)


def split_repeats(batches: Sequence[ResultBatch]) -> tuple[list[ResultBatch], list[int]]:
    """First occurrence of each batch id, and the positions of the repeats."""
    seen: set[bytes] = set()
    firsts: list[ResultBatch] = []
    repeats: list[int] = []
    for position, batch in enumerate(batches):
        if batch.batch_id in seen:
            repeats.append(position)
        else:
            seen.add(batch.batch_id)
            firsts.append(batch)
    return firsts, repeats


def late_batch_id(batch_id: bytes) -> bytes:
    """The id of a batch's too-late part: derived, so the same on every redelivery."""
    return derived_batch_id(batch_id, TOO_LATE)


def split_late(batch: ResultBatch, oldest_us: int) -> tuple[ResultBatch, ResultBatch]:
    """(what is timed at or after `oldest_us`, what is older): pings, their probe
    details and address records alike. The first keeps the batch's id (it is
    what gets stored and claimed), the second has `late_batch_id`."""
    late = ResultBatch(batch_id=late_batch_id(batch.batch_id), prober=batch.prober)
    if (
        min(batch.ts, default=oldest_us) >= oldest_us
        and all(record.ts >= oldest_us for record in batch.addresses)
        and all(detail.ts >= oldest_us for detail in batch.details)
    ):
        return batch, late
    fresh = ResultBatch(batch_id=batch.batch_id, prober=batch.prober)
    for row in rows_of(batch):
        (fresh if row[1] >= oldest_us else late).append(*row)
    for record in batch.addresses:
        (fresh if record.ts >= oldest_us else late).addresses.append(record)
    for detail in batch.details:
        (fresh if detail.ts >= oldest_us else late).details.append(detail)
    return fresh, late

"""Pure helpers that turn decoded result batches into rows for the pings table."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Sequence
from datetime import date, timedelta
from typing import Any

from shared.codec import ResultBatch

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

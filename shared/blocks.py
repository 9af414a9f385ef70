"""The origin every block is aligned to: 2000-01-01 00:00 UTC.

The ladder cuts time into blocks (an hour of packed pings, a level's
max_span, a day of packed segments) and the API cuts series into buckets,
all aligned to one origin so that no block of one crosses an edge of
another. SQL asks `ladder_origin()` (migrations/functions/blocks.sql) for it;
Python takes it, and the µs counted from it, from here.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

ORIGIN = datetime(2000, 1, 1, tzinfo=UTC)
US = timedelta(microseconds=1)
ORIGIN_US = (ORIGIN - datetime(1970, 1, 1, tzinfo=UTC)) // US  # in µs since the Unix epoch


def us_since_origin(ts: datetime) -> int:
    return (ts - ORIGIN) // US


def at_us_since_origin(us: int) -> datetime:
    return ORIGIN + timedelta(microseconds=us)


def align_down(ts: datetime, width: timedelta) -> datetime:
    """The start of the block of `width` that holds `ts`."""
    return ts - (ts - ORIGIN) % width


def align_up(ts: datetime, width: timedelta) -> datetime:
    """`ts` when it starts a block of `width`, else the start of the next one."""
    down = align_down(ts, width)
    return down if down == ts else down + width

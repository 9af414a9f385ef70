"""What every history read needs first: the range, the target, the ladder's shape,
and where the rolled-up tiers stop (the hours the ladder has not rolled up yet)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg

from api_service.times import EPOCH, as_utc, iso
from shared.errors import InvalidInput, NotFound
from shared.ladder import Ladder

DEFAULT_SPAN = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class TargetInfo:
    id: int
    interval: timedelta
    first_data: datetime  # no history is older than this (the target's creation)


def resolve_range(
    start: datetime | None, end: datetime | None, now: datetime
) -> tuple[datetime, datetime]:
    """[from, to) with to clamped to now; the last day by default.

    from > to is refused; a range wholly in the future comes back empty (lo == hi).
    """
    hi = now if end is None else as_utc(end)
    back = min(DEFAULT_SPAN, max(hi - EPOCH, timedelta(0)))  # never before year 1
    lo = hi - back if start is None else as_utc(start)
    if lo > hi:
        raise InvalidInput(f"from ({iso(lo)}) is after to ({iso(hi)})")
    # Nothing is older than the epoch: clamping keeps date arithmetic in range.
    hi = max(EPOCH, min(hi, now))
    return max(EPOCH, min(lo, hi)), hi


async def target_info(conn: asyncpg.Connection, target_id: int) -> TargetInfo:
    row = await conn.fetchrow(
        "SELECT id, interval_ms, created_at FROM targets WHERE id = $1", target_id
    )
    if row is None:
        raise NotFound(f"target {target_id} does not exist")
    return TargetInfo(row["id"], timedelta(milliseconds=row["interval_ms"]), row["created_at"])


async def dirty_from(
    conn: asyncpg.Connection, target_id: int, hi: datetime, ladder: Ladder
) -> datetime | None:
    """The oldest hour of the target whose pings the ladder has not rolled up yet."""
    oldest: datetime | None = await conn.fetchval(
        "SELECT min(hour) FROM ladder_dirty WHERE target_id = $1 AND hour > $2 AND hour < $3",
        target_id,
        datetime.now(UTC) - ladder.raw_retention - timedelta(hours=1),
        hi,
    )
    return oldest

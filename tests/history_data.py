"""A target with six hours of 1 Hz raw pings, rolled up by the ladder's own jobs.

Shape: ~20 ms with ±0.8 ms noise, a spike every 7 minutes, a 40 s loss run at
01:10, +25 ms from 03:00 on, and 12 -> 13 hops from 04:30 on.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg

from tests.api_client import unique_address

HOURS = 6
LOSS_AT, LOSS_LEN = timedelta(hours=1, minutes=10), 40
STEP_AT, STEP_US = timedelta(hours=3), 25_000
ROUTE_AT = timedelta(hours=4, minutes=30)
_seq = itertools.count()


@dataclass(frozen=True)
class Laddered:
    target_id: int
    start: datetime
    pings: list[tuple[datetime, int | None, int | None]]  # ts, rtt_us, hops

    @property
    def end(self) -> datetime:
        return self.start + timedelta(hours=HOURS)


def make_pings(start: datetime, seed: int) -> list[tuple[datetime, int | None, int | None]]:
    rng = random.Random(seed)
    out: list[tuple[datetime, int | None, int | None]] = []
    for i in range(HOURS * 3600):
        offset = timedelta(seconds=i)
        if LOSS_AT <= offset < LOSS_AT + timedelta(seconds=LOSS_LEN):
            out.append((start + offset, None, None))
            continue
        rtt = 20_000 + rng.randint(-800, 800) + (STEP_US if offset >= STEP_AT else 0)
        if i % 420 == 0:
            rtt *= 3
        out.append((start + offset, rtt, 13 if offset >= ROUTE_AT else 12))
    return out


async def create_target(
    conn: asyncpg.Connection, created: datetime, address: str | None = None
) -> int:
    target_id: int = await conn.fetchval(
        "INSERT INTO targets (address, interval_ms, timeout_ms, state, created_at)"
        " VALUES ($1::inet, 1000, 1000, 'stopped', $2) RETURNING id",
        address or unique_address(),
        created,
    )
    return target_id


async def insert_pings(
    conn: asyncpg.Connection, target_id: int, pings: list[tuple[datetime, int | None, int | None]]
) -> None:
    await conn.execute(
        "SELECT ensure_ping_partitions($1, $2)", pings[0][0].date(), pings[-1][0].date()
    )
    await conn.copy_records_to_table(
        "pings",
        records=[
            (target_id, ts, rtt, None if hops is None else 64 - hops, hops)
            for ts, rtt, hops in pings
        ],
        columns=["target_id", "ts", "rtt_us", "ttl", "hops"],
    )


async def laddered(
    database_url: str, days_ago: int = 3, address: str | None = None, seed: int | None = None
) -> Laddered:
    """Six hours from midnight `days_ago` days back, every tier built from raw and packed.

    `address` and `seed` make the target and its pings the same from run to run.
    """
    midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    start = midnight - timedelta(days=days_ago)
    conn = await asyncpg.connect(database_url)
    try:
        target_id = await create_target(conn, start - timedelta(days=1), address)
        pings = make_pings(start, next(_seq) if seed is None else seed)
        await insert_pings(conn, target_id, pings)
        while await conn.fetchval("SELECT ladder_rollup()"):
            pass
        # Ended days of the long-lived levels are read from the packed form, as in production.
        while await conn.fetchval("SELECT ladder_pack_segments(5000, $1)", target_id):
            pass
    finally:
        await conn.close()
    return Laddered(target_id, start, pings)

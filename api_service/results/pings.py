"""Raw pings of one target: keyset pages, the newest few, and a CSV stream.

Pages are ordered by `ts`; (target_id, ts) is unique in either form (rows or
packed blocks), so `ts` alone is a stable keyset within one target and the
cursor is just the last `ts`.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg

from api_service.times import EPOCH, as_utc, iso
from shared.errors import InvalidInput, NotFound

DEFAULT_LIMIT = 1000
MAX_LIMIT = 10_000
CSV_HEADER = "ts,rtt_ms,lost,hops,ttl\n"
_CSV_CHUNK_ROWS = 2000
_CURSOR_VERSION = "p1"
_BEFORE_ALL = EPOCH - timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class Ping:
    ts: datetime
    rtt_us: int | None
    hops: int | None
    ttl: int | None

    @property
    def rtt_ms(self) -> float | None:
        return None if self.rtt_us is None else self.rtt_us / 1000

    @property
    def lost(self) -> bool:
        return self.rtt_us is None


@dataclass(frozen=True, slots=True)
class Page:
    items: list[Ping]
    next_cursor: str | None


def _micros(ts: datetime) -> int:
    return (ts - EPOCH) // timedelta(microseconds=1)


def encode_cursor(target_id: int, ts: datetime) -> str:
    raw = f"{_CURSOR_VERSION}:{target_id}:{_micros(ts)}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, target_id: int) -> datetime:
    """The `ts` a cursor points after; InvalidInput for anything we did not issue."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        version, owner_text, micros = raw.split(":")
        if version != _CURSOR_VERSION:
            raise ValueError(version)
        owner = int(owner_text)
        ts = EPOCH + timedelta(microseconds=int(micros))
    except (ValueError, UnicodeDecodeError, binascii.Error, OverflowError):
        raise InvalidInput("invalid cursor: pass next_cursor exactly as returned") from None
    if owner != target_id:
        raise InvalidInput(f"invalid cursor: it belongs to target {owner}, not {target_id}")
    return ts


def time_range(start: datetime | None, end: datetime | None) -> tuple[datetime, datetime]:
    """[start, end): all history up to now by default."""
    lo = EPOCH if start is None else as_utc(start)
    hi = datetime.now(UTC) if end is None else as_utc(end)
    if lo > hi:
        raise InvalidInput(f"from ({iso(lo)}) is after to ({iso(hi)})")
    return lo, hi


def csv_line(ping: Ping) -> str:
    rtt = "" if ping.rtt_ms is None else f"{ping.rtt_ms:g}"
    hops = "" if ping.hops is None else str(ping.hops)
    ttl = "" if ping.ttl is None else str(ping.ttl)
    return f"{iso(ping.ts)},{rtt},{'true' if ping.lost else 'false'},{hops},{ttl}\n"


def _ping(row: asyncpg.Record) -> Ping:
    return Ping(row["ts"], row["rtt_us"], row["hops"], row["ttl"])


# Every read goes through raw_pings() (migrations/functions/packed_pings.sql), so pings
# already packed by the ladder are served exactly like fresh rows. It unpacks whole
# hour blocks, so reads walk the range in windows instead of asking for all of it.
_RAW = "SELECT ts, rtt_us, hops, ttl FROM raw_pings($1, $2, $3)"
_FIRST_WINDOW = timedelta(hours=1)
_CSV_WINDOW = timedelta(days=1)
_BOUNDS = """
    SELECT min(lo), max(hi) FROM (
        SELECT min(ts) AS lo, max(ts) AS hi FROM pings
        WHERE target_id = $1 AND ts >= $2 AND ts < $3
        UNION ALL
        SELECT min(first_ts), max(block_start) + interval '1 hour' FROM pings_packed
        WHERE target_id = $1 AND block_start < $3
          AND block_start >= date_bin(interval '1 hour', $2, ladder_origin())
    ) b"""
_US = timedelta(microseconds=1)


async def _bounds(
    conn: asyncpg.Connection, target_id: int, lo: datetime, hi: datetime
) -> tuple[datetime, datetime] | None:
    """[lo, hi) narrowed to where this target has pings (either form), None if nowhere."""
    first, last = await conn.fetchrow(_BOUNDS, target_id, lo, hi)
    if first is None:
        return None
    return max(lo, first), min(hi, last + _US)


async def _forward(
    conn: asyncpg.Connection, target_id: int, lo: datetime, hi: datetime, limit: int
) -> list[asyncpg.Record]:
    """The first `limit` pings of [lo, hi), in windows that double from an hour."""
    bounds = await _bounds(conn, target_id, lo, hi)
    rows: list[asyncpg.Record] = []
    if bounds is None:
        return rows
    start, hi = bounds
    width = _FIRST_WINDOW
    while start < hi and len(rows) < limit:
        end = min(hi, start + width)
        rows += await conn.fetch(f"{_RAW} LIMIT $4", target_id, start, end, limit - len(rows))
        start, width = end, width * 2
    return rows


async def _backward(
    conn: asyncpg.Connection, target_id: int, lo: datetime, hi: datetime, limit: int
) -> list[asyncpg.Record]:
    """The last `limit` pings of [lo, hi), newest first."""
    bounds = await _bounds(conn, target_id, lo, hi)
    rows: list[asyncpg.Record] = []
    if bounds is None:
        return rows
    lo, end = bounds
    width = _FIRST_WINDOW
    while lo < end and len(rows) < limit:
        start = max(lo, end - width)
        rows += await conn.fetch(
            f"SELECT * FROM ({_RAW}) r ORDER BY ts DESC LIMIT $4",
            target_id,
            start,
            end,
            limit - len(rows),
        )
        end, width = start, width * 2
    return rows


async def ensure_target(conn: asyncpg.Connection, target_id: int) -> None:
    # Deleted targets keep their history, so any existing row will do.
    if await conn.fetchval("SELECT 1 FROM targets WHERE id = $1", target_id) is None:
        raise NotFound(f"target {target_id} does not exist")


async def page(
    pool: asyncpg.Pool,
    target_id: int,
    start: datetime | None = None,
    end: datetime | None = None,
    *,
    limit: int = DEFAULT_LIMIT,
    cursor: str | None = None,
) -> Page:
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"limit must be between 1 and {MAX_LIMIT}, got {limit}")
    lo, hi = time_range(start, end)
    after = _BEFORE_ALL if cursor is None else decode_cursor(cursor, target_id)
    async with pool.acquire() as conn:
        await ensure_target(conn, target_id)
        rows = await _forward(conn, target_id, max(lo, after + _US), hi, limit + 1)
    items = [_ping(row) for row in rows[:limit]]
    more = len(rows) > limit
    return Page(items, encode_cursor(target_id, items[-1].ts) if more else None)


async def latest(
    pool: asyncpg.Pool,
    target_id: int,
    start: datetime | None = None,
    end: datetime | None = None,
    *,
    limit: int = 50,
) -> list[Ping]:
    """The newest `limit` pings of the range, oldest first."""
    lo, hi = time_range(start, end)
    async with pool.acquire() as conn:
        await ensure_target(conn, target_id)
        rows = await _backward(conn, target_id, lo, hi, limit)
    return [_ping(row) for row in reversed(rows)]


async def csv_chunks(
    pool: asyncpg.Pool,
    target_id: int,
    start: datetime | None = None,
    end: datetime | None = None,
    cursor: str | None = None,
) -> AsyncIterator[str]:
    """The CSV of the whole range (after `cursor`), once everything that can refuse the
    request (range, cursor, target) has been checked: a stream cannot fail with a 4xx."""
    lo, hi = time_range(start, end)
    after = None if cursor is None else decode_cursor(cursor, target_id)
    async with pool.acquire() as conn:
        await ensure_target(conn, target_id)

    async def chunks() -> AsyncIterator[str]:
        async with pool.acquire() as conn:
            async for chunk in stream_csv(conn, target_id, lo, hi, after):
                yield chunk

    return chunks()


async def stream_csv(
    conn: asyncpg.Connection, target_id: int, lo: datetime, hi: datetime, after: datetime | None
) -> AsyncIterator[str]:
    """CSV chunks of the whole range through a server-side cursor (bounded memory).

    The caller owns `conn` and has checked the target exists.
    """
    yield CSV_HEADER
    async with conn.transaction(readonly=True, isolation="repeatable_read"):
        bounds = await _bounds(conn, target_id, lo if after is None else max(lo, after + _US), hi)
        start, hi = bounds if bounds is not None else (hi, hi)
        while start < hi:
            end = min(hi, start + _CSV_WINDOW)
            cur = await conn.cursor(_RAW, target_id, start, end)
            while rows := await cur.fetch(_CSV_CHUNK_ROWS):
                yield "".join(csv_line(_ping(row)) for row in rows)
            start = end

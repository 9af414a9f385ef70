"""Events of a range and the segments they come from.

Events are found in segments, each stretch of the range read from the finest
level still kept there; the blocks the ladder has not rolled up yet are
segmented here from raw with the level-1 rule (shared/segments.py), so the
newest events show at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg

from api_service.history.event_detection import (
    ADDRESS_CHANGE,
    LATENCY_SHIFT,
    Event,
    Rules,
    Seg,
    address_changes,
    detect,
)
from api_service.history.scope import dirty_from, resolve_range, target_info
from api_service.history.tier_choice import level_pieces, tail_start
from api_service.times import iso
from shared.blocks import ORIGIN_US, US, at_us_since_origin, us_since_origin
from shared.errors import InvalidInput, NotFound
from shared.ladder import Ladder, Level, load_ladder
from shared.segments import Ping, max_gap_us, segment_pings

MAX_SEGMENTS = 10_000
# A latency level must hold this long to be a shift rather than a spike.
MIN_PLATEAU = timedelta(minutes=5)

_SEGMENTS_SQL = """
    SELECT start_ts, end_ts, count, lost, min_us, max_us, sum_us, sumsq_us, hops, ttl
    FROM segments_of($1, $2, $3, $4) WHERE end_ts >= $5
    ORDER BY start_ts LIMIT $6"""

# A hostname's resolutions in [$2, $3), from the last resolved one before $2 on.
_ADDRESSES_SQL = """
    SELECT ts, host(address) AS address FROM target_addresses
    WHERE target_id = $1 AND ts < $3 AND ts >= coalesce(
        (SELECT max(ts) FROM target_addresses
         WHERE target_id = $1 AND ts < $2 AND address IS NOT NULL), '-infinity')
    ORDER BY ts"""


@dataclass(frozen=True, slots=True)
class SegmentPage:
    level: int
    rows: list[dict[str, object]]
    next_from: datetime | None  # more segments start at or after this

    def content(self) -> dict[str, object]:
        return {
            "level": self.level,
            "segments": self.rows,
            "next_from": None if self.next_from is None else iso(self.next_from),
        }


def _segment_out(r: asyncpg.Record) -> dict[str, object]:
    answered = r["count"] - r["lost"]
    return {
        "start": iso(r["start_ts"]),
        "end": iso(r["end_ts"]),
        "count": r["count"],
        "lost": r["lost"],
        "min": None if r["min_us"] is None else r["min_us"] / 1000,
        "avg": round(r["sum_us"] / answered / 1000, 3) if answered else None,
        "max": None if r["max_us"] is None else r["max_us"] / 1000,
        "hops": r["hops"],
        "ttl": r["ttl"],
    }


def _level(ladder: Ladder, level: int) -> Level:
    spec = next((lv for lv in ladder.levels if lv.level == level), None)
    if spec is None:
        known = ", ".join(str(lv.level) for lv in ladder.levels)
        raise InvalidInput(f"level must be one of {known}, got {level}")
    return spec


async def segments(
    pool: asyncpg.Pool,
    target_id: int,
    start: datetime | None = None,
    end: datetime | None = None,
    level: int = 1,
    limit: int = MAX_SEGMENTS,
) -> SegmentPage:
    """Segments of one level overlapping [start, end), at most `limit` of them."""
    lo, hi = resolve_range(start, end, datetime.now(UTC))
    async with pool.acquire() as conn:
        await target_info(conn, target_id)
        spec = _level(await load_ladder(conn), level)
        rows = await conn.fetch(
            _SEGMENTS_SQL, target_id, level, lo - spec.max_span, hi, lo, limit + 1
        )
    more = len(rows) > limit
    return SegmentPage(
        level, [_segment_out(r) for r in rows[:limit]], rows[limit]["start_ts"] if more else None
    )


@dataclass(frozen=True, slots=True)
class Events:
    tier: str
    start: datetime
    end: datetime
    events: list[Event]

    def content(self) -> dict[str, object]:
        return {
            "tier": self.tier,
            "from": iso(self.start),
            "to": iso(self.end),
            "events": [_event_out(e) for e in self.events],
        }


def _event_out(e: Event) -> dict[str, object]:
    out: dict[str, object] = {
        "kind": e.kind,
        "start": iso(at_us_since_origin(e.start_us)),
        "end": iso(at_us_since_origin(e.end_us)),
        "magnitude": round(e.magnitude / 1000, 3) if e.kind == LATENCY_SHIFT else int(e.magnitude),
        "unit": {"loss": "pings", "hop_change": "hops", ADDRESS_CHANGE: None}.get(e.kind, "ms"),
    }
    if e.kind == ADDRESS_CHANGE:
        out["old"], out["new"] = e.old, e.new
    return out


def rules_of(level1: Level) -> Rules:
    return Rules(level1.abs_tolerance_us, float(level1.rel_tolerance), MIN_PLATEAU // US)


async def _raw_tail(
    conn: asyncpg.Connection,
    target_id: int,
    lo: datetime,
    hi: datetime,
    level1: Level,
    interval: timedelta,
) -> list[Seg]:
    rows = await conn.fetch(
        "SELECT ts, rtt_us, ttl, hops FROM raw_pings($1, $2, $3)", target_id, lo, hi
    )
    tol = level1.tolerance()
    pings = (
        Ping(ORIGIN_US + us_since_origin(r["ts"]), r["rtt_us"], r["ttl"], r["hops"]) for r in rows
    )
    return [
        Seg(s.start_us - ORIGIN_US, s.end_us - ORIGIN_US, s.count, s.lost, s.sum_us, s.hops)
        for s in segment_pings(pings, tol, max_gap_us(interval // timedelta(milliseconds=1)))
    ]


async def events(
    pool: asyncpg.Pool, target_id: int, start: datetime | None = None, end: datetime | None = None
) -> Events:
    now = datetime.now(UTC)
    lo, hi = resolve_range(start, end, now)
    async with pool.acquire() as conn:
        info = await target_info(conn, target_id)
        ladder = await load_ladder(conn)
        if not ladder.levels:
            raise NotFound("no segment levels are configured")
        pieces = level_pieces(lo, hi, now, ladder)
        tier = "+".join(p.tier for p, _, _ in pieces) or "none"
        finest = pieces[-1][0] if pieces else ladder.levels[0]
        tail = tail_start(finest.tier, await dirty_from(conn, target_id, hi, ladder), ladder)
        split = hi if tail is None else max(lo, min(tail, hi))
        segs: list[Seg] = []
        for spec, a, b in pieces:
            rows = await conn.fetch(
                _SEGMENTS_SQL, target_id, spec.level, a - spec.max_span, min(b, split), a, None
            )
            segs += [
                Seg(
                    us_since_origin(r["start_ts"]),
                    us_since_origin(r["end_ts"]),
                    r["count"],
                    r["lost"],
                    r["sum_us"],
                    r["hops"],
                )
                for r in rows
            ]
        if split < hi:
            segs += await _raw_tail(conn, target_id, split, hi, ladder.levels[0], info.interval)
            tier += "+raw"
        resolutions = await conn.fetch(_ADDRESSES_SQL, target_id, lo, hi)
    found = [e for e in detect(segs, rules_of(ladder.levels[0])) if e.end_us >= us_since_origin(lo)]
    moved = address_changes((us_since_origin(r["ts"]), r["address"]) for r in resolutions)
    found += [e for e in moved if e.start_us >= us_since_origin(lo)]
    found.sort(key=lambda e: e.start_us)
    return Events(tier, lo, hi, found)

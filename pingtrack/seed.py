"""`pingtrack seed-history`: synthetic years of history, written straight into the tiers.

Each age goes where the ladder would keep it: raw pings (row form) only
inside the raw window, level-1 segments for their retention, level 2 and
hourly summaries beyond; ended days of the packed levels in packed form.
Rows go in with binary COPY built from numpy arrays; the (target, hour)
marks the insert trigger leaves for the raw window are cleared, since the
tiers for those hours are written too.
Seeded targets are created `stopped` (history kept, never pinged) with
addresses from 198.18.0.0/15, the benchmarking range.
"""

from __future__ import annotations

import io
import logging
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import asyncpg
import numpy as np
import numpy.typing as npt

from pingtrack.seed_model import HOUR_US, History, Pieces, Planted, Shape, Upper, generate
from shared.blocks import at_us_since_origin, us_since_origin
from shared.errors import InvalidInput
from shared.ladder import load_ladder

log = logging.getLogger(__name__)

_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
_TRAILER = struct.pack(">h", -1)

# Column name, binary type; -1 in an integer column is NULL.
_SEGMENT_COLS = (
    ("target_id", ">i8"), ("level", ">i2"), ("start_ts", ">i8"), ("end_ts", ">i8"),
    ("count", ">i4"), ("lost", ">i4"), ("min_us", ">i4"), ("max_us", ">i4"),
    ("sum_us", ">i8"), ("sumsq_us", ">f8"), ("hops", ">i2"), ("ttl", ">i2"),
)  # fmt: skip
_HOURLY_COLS = (
    ("target_id", ">i8"), ("hour", ">i8"), ("count", ">i4"), ("lost", ">i4"),
    ("min_us", ">i4"), ("max_us", ">i4"), ("sum_us", ">i8"), ("sumsq_us", ">f8"),
    ("mean_us", ">f8"), ("stddev_us", ">f8"), ("p50_us", ">f8"), ("p95_us", ">f8"),
    ("p99_us", ">f8"), ("jitter_us", ">f8"), ("hops_min", ">i2"), ("hops_max", ">i2"),
    ("hop_changes", ">i4"), ("loss_runs", ">i4"),
)  # fmt: skip
_PING_COLS = (
    ("target_id", ">i8"),
    ("ts", ">i8"),
    ("rtt_us", ">i4"),
    ("ttl", ">i2"),
    ("hops", ">i2"),
)
_NULLABLE = {"min_us", "max_us", "hops", "ttl", "rtt_us", "hops_min", "hops_max"}


@dataclass(frozen=True)
class SeedOptions:
    targets: int
    years: float
    interval_s: float = 1.0
    raw: timedelta | None = None  # the raw window; default: the ladder's raw_retention
    end: datetime | None = None  # default: the start of the current hour
    seed: int = 0


@dataclass
class SeedReport:
    target_ids: list[int] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)
    planted: dict[int, list[Planted]] = field(default_factory=dict)
    seconds: float = 0.0

    def count(self, table: str, n: int) -> None:
        self.rows[table] = self.rows.get(table, 0) + n


def binary_copy(
    columns: Sequence[tuple[str, str]], data: dict[str, npt.ArrayLike], n: int
) -> bytes:
    """A PostgreSQL binary COPY stream; rows are grouped by which columns are NULL."""
    arrays = {name: np.broadcast_to(np.asarray(data[name]), (n,)) for name, _ in columns}
    nullable = [name for name, _ in columns if name in _NULLABLE]
    key = np.zeros(n, np.int64)
    for bit, name in enumerate(nullable):
        key |= (arrays[name] == -1).astype(np.int64) << bit
    parts = [_HEADER]
    for pattern in np.unique(key):
        rows = np.flatnonzero(key == pattern)
        nulls = {name for bit, name in enumerate(nullable) if pattern >> bit & 1}
        fields: list[tuple[str, str]] = [("nf", ">i2")]
        for name, kind in columns:
            fields.append((f"len_{name}", ">i4"))
            if name not in nulls:
                fields.append((name, kind))
        rec = np.empty(len(rows), dtype=fields)
        rec["nf"] = len(columns)
        for name, kind in columns:
            rec[f"len_{name}"] = -1 if name in nulls else np.dtype(kind).itemsize
            if name not in nulls:
                rec[name] = arrays[name][rows]
        parts.append(rec.tobytes())
    parts.append(_TRAILER)
    return b"".join(parts)


async def _copy(
    conn: asyncpg.Connection, table: str, columns: Sequence[tuple[str, str]],
    data: dict[str, npt.ArrayLike], n: int,
) -> int:  # fmt: skip
    if n == 0:
        return 0
    payload = binary_copy(columns, data, n)
    await conn.copy_to_table(
        table, source=io.BytesIO(payload), columns=[c for c, _ in columns], format="binary"
    )
    return n


def _segment_data(
    target_id: int, level: int, p: Pieces, keep: npt.NDArray[np.bool_]
) -> dict[str, npt.ArrayLike]:
    hops = p.hops[keep]
    return {
        "target_id": target_id, "level": level, "start_ts": p.start_us[keep],
        "end_ts": p.end_us[keep], "count": p.count[keep], "lost": p.lost[keep],
        "min_us": p.min_us[keep], "max_us": p.max_us[keep], "sum_us": p.sum_us[keep],
        "sumsq_us": p.sumsq[keep], "hops": hops, "ttl": np.where(hops < 0, -1, 64 - hops),
    }  # fmt: skip


_STAGE = """
    CREATE TEMP TABLE IF NOT EXISTS seed_segments (
        target_id bigint, level smallint, start_ts timestamptz, end_ts timestamptz,
        count integer, lost integer, min_us integer, max_us integer, sum_us bigint,
        sumsq_us float8, hops smallint, ttl smallint);
    CREATE TEMP TABLE IF NOT EXISTS seed_hourly (LIKE hourly_summaries);
    ALTER TABLE seed_hourly ALTER COLUMN sumsq_us TYPE float8;
    TRUNCATE seed_segments, seed_hourly"""


async def write_history(
    conn: asyncpg.Connection, target_id: int, h: History, cut: dict[str, int], report: SeedReport
) -> None:
    """One target's history into every tier, in one transaction."""
    async with conn.transaction():
        await conn.execute(_STAGE)
        for level, pieces in enumerate(h.levels, start=1):
            keep = pieces.end_us >= cut[f"l{level}"]
            data = _segment_data(target_id, level, pieces, keep)
            n = await _copy(conn, "seed_segments", _SEGMENT_COLS, data, int(keep.sum()))
            report.count(f"segments_l{level}", n)
        await conn.execute("INSERT INTO segments SELECT * FROM seed_segments")
        # Ended days of the packed levels go packed, as the ladder leaves them.
        while await conn.fetchval("SELECT ladder_pack_segments(5000, $1)", target_id):
            pass
        keep = np.asarray(h.hourly["hour"], np.int64) >= cut["hourly"]
        hourly: dict[str, npt.ArrayLike] = {k: v[keep] for k, v in h.hourly.items()}
        hourly["target_id"] = target_id
        n = await _copy(conn, "seed_hourly", _HOURLY_COLS, hourly, int(keep.sum()))
        report.count("hourly_summaries", n)
        await conn.execute("INSERT INTO hourly_summaries SELECT * FROM seed_hourly")
        hops = h.pings_hops
        pings: dict[str, npt.ArrayLike] = {
            "target_id": target_id, "ts": h.pings_ts, "rtt_us": h.pings_rtt,
            "ttl": np.where(hops < 0, -1, 64 - hops), "hops": hops,
        }  # fmt: skip
        report.count("pings", await _copy(conn, "pings", _PING_COLS, pings, len(h.pings_ts)))
        await conn.execute("DELETE FROM ladder_dirty WHERE target_id = $1", target_id)


async def seed_history(
    pool: asyncpg.Pool, options: SeedOptions, progress: Callable[[int], None] | None = None
) -> SeedReport:
    """Create options.targets targets with options.years of history each."""
    if options.targets < 1 or options.years <= 0:
        raise InvalidInput("need at least one target and a positive number of years")
    interval_us = round(options.interval_s * 1e6)
    if interval_us <= 0 or HOUR_US % interval_us:
        raise InvalidInput("the interval must divide an hour (e.g. 0.5, 1, 10, 60 s)")
    began = time.perf_counter()
    now = datetime.now(UTC)
    end = options.end or now.replace(minute=0, second=0, microsecond=0)
    end_us = us_since_origin(end) - us_since_origin(end) % HOUR_US
    async with pool.acquire() as conn:
        ladder = await load_ladder(conn)
    raw = options.raw if options.raw is not None else ladder.raw_retention
    hours = int(options.years * 365.25 * 24)
    start_us = end_us - hours * HOUR_US
    per_hour = HOUR_US // interval_us
    n_slots = hours * per_hour
    raw_hours = min(hours, int(raw / timedelta(hours=1)))
    level1, *upper = ladder.levels
    shape = Shape(
        abs_tolerance_us=level1.abs_tolerance_us,
        rel_tolerance=float(level1.rel_tolerance),
        upper=tuple(
            Upper(lv.max_span // timedelta(microseconds=1), lv.abs_tolerance_us,
                  float(lv.rel_tolerance), keep=0.05 / 5**i)
            for i, lv in enumerate(upper)
        ),
    )  # fmt: skip
    cut = {f"l{lv.level}": us_since_origin(now - lv.retention) for lv in ladder.levels}
    cut["hourly"] = us_since_origin(now - ladder.hourly_retention)
    report = SeedReport()
    async with pool.acquire() as conn:
        first_day = at_us_since_origin(end_us - raw_hours * HOUR_US).date()
        await conn.execute("SELECT ensure_ping_partitions($1, $2)", first_day, end.date())
        for i in range(options.targets):
            target_id = await conn.fetchval(
                "INSERT INTO targets (address, name, interval_ms, timeout_ms, state, created_at,"
                " stopped_at) VALUES ($1::inet, $2, $3, 1000, 'stopped', $4, $5) RETURNING id",
                f"198.{18 + i // 65024 % 2}.{i // 254 % 256}.{i % 254 + 1}",
                f"seed-{i}",
                interval_us // 1000,
                at_us_since_origin(start_us),
                end,
            )
            history = generate(
                options.seed * 1_000_003 + i, start_us, n_slots, interval_us,
                (hours - raw_hours) * per_hour, shape,
            )  # fmt: skip
            await write_history(conn, target_id, history, cut, report)
            report.target_ids.append(target_id)
            report.planted[target_id] = history.planted
            if progress is not None:
                progress(1)
    report.seconds = time.perf_counter() - began
    log.info("seeded history", extra={"targets": options.targets, "rows": report.rows})
    return report

"""Ladder jobs on one hour of a fleet at 1 Hz, against a plain copy of the same rows.

    .venv/bin/python bench/ladder_bench.py --targets 300

Creates a scratch database (migrated like production, no pg_cron job), loads
one settled hour of `--targets` targets at 1 Hz (a third each: stable LAN,
jittery WAN with spikes, flapping route with loss), then times each job and
reports the bytes per ping of every tier and the segments per target-hour of
each level and series. Then, since levels 2 and 3 contract whole days, it
loads one full day of `--day-targets` targets of each series, rolls it up and
reports the contraction ratio (pings per segment) of every level per series;
measures the steady-state bytes of a segment and an hourly row on >= 200 000
copies of the rows just built (a few hundred rows are mostly page overhead);
measures the packed form of the packed levels the same way per series (one
row per target-day, copied day after day); and projects the default ladder
for 300 targets at 1 s over 5 years for each fleet shape with
api_service/ops/projection.py. Drops the database at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _calibration import print_header_async

from api_service.ops.projection import Figure, Figures, days, project
from shared.ladder import Ladder, load_ladder
from shared.migrate import create_database_if_missing, migrate
from shared.settings import Settings
from tests.egress_guard import ensure_guarded

Row = tuple[int, datetime, int | None, int | None, int | None]
DAY_S = 86_400
STEADY_ROWS = 200_000
PROJECT_TARGETS, PROJECT_YEARS = 300, 5.0
KINDS = ("lan", "wan", "flap")
LEVEL_SQL = """
    SELECT ladder_build_segments($3::smallint, t::bigint, b, b + l.max_span)
    FROM generate_series(1, $2) t, ladder_levels l,
         date_bin(l.max_span, $1::timestamptz, ladder_origin()) b
    WHERE l.level = $3"""
LEVEL1_SQL = """
    SELECT ladder_build_segments(1::smallint, t::bigint, $1::timestamptz, $1 + interval '1 hour')
    FROM generate_series(1, $2) t"""
READ_SQL = """
    SELECT count(*) FROM generate_series(1, $2) t,
         raw_pings(t, $1::timestamptz, $1 + interval '1 hour')"""
SIZE_SQL = """
    SELECT coalesce(sum(pg_total_relation_size(relid)), 0)
    FROM (SELECT relid FROM pg_partition_tree($1::regclass) UNION SELECT $1::regclass) t"""


def series(kind: str, target: int, start: datetime, n: int, rng: random.Random) -> Iterator[Row]:
    """1 Hz pings with 0-2 ms send jitter; the three shapes of docs/contraction.md."""
    route, burst = 0, 0
    for i in range(n):
        ts = start + timedelta(microseconds=i * 1_000_000 + rng.randint(0, 2000))
        if kind == "lan":
            yield target, ts, 300 + int(rng.expovariate(1 / 40)), 62, 2
            continue
        if kind == "wan":
            rtt = 25_000 + int(rng.gauss(0, 1500))
            if rng.random() < 0.01:
                rtt += rng.randint(5_000, 100_000)
            lost = rng.random() < 0.001
            yield (
                target,
                ts,
                None if lost else max(1, rtt),
                None if lost else 50,
                None if lost else 14,
            )
            continue
        if rng.random() < 1 / 1800:
            route ^= 1
        base, hops = (12_000, 9) if route == 0 else (18_000, 11)
        if burst == 0 and rng.random() < 0.0005:
            burst = rng.randint(5, 60)
        lost = rng.random() < 0.01 or burst > 0
        burst = max(0, burst - 1)
        rtt = base + int(rng.gauss(0, 800))
        yield target, ts, None if lost else rtt, None if lost else 64 - hops, None if lost else hops


async def timed(label: str, work: Callable[[], Awaitable[Any]], results: dict[str, float]) -> Any:
    began = time.perf_counter()
    value = await work()
    results[label] = time.perf_counter() - began
    print(f"  {label:<44} {results[label]:7.2f} s", flush=True)
    return value


async def bench(dsn: str, targets: int, day_targets: int, seed: int) -> None:
    conn = await asyncpg.connect(dsn)
    rng = random.Random(seed)
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=3)
    hour = hour.replace(hour=10)
    rows = [row for t in range(1, targets + 1) for row in series(KINDS[t % 3], t, hour, 3600, rng)]
    n = len(rows)
    print(f"{targets} targets x 1 h at 1 Hz = {n:,} pings, hour {hour.isoformat()}")
    cols = ["target_id", "ts", "rtt_us", "ttl", "hops"]
    times: dict[str, float] = {}
    await conn.execute("CREATE TABLE ref_copy (LIKE pings INCLUDING ALL)")  # same shape, PK
    await timed(
        "load: COPY into pings (trigger marks blocks)",
        lambda: conn.copy_records_to_table("pings", records=rows, columns=cols),
        times,
    )
    await conn.execute("VACUUM ANALYZE pings")
    await timed(
        "reference: INSERT INTO ref_copy SELECT * FROM pings",
        lambda: conn.execute("INSERT INTO ref_copy SELECT * FROM pings"),
        times,
    )

    async def rollup() -> None:
        while await conn.fetchval("SELECT ladder_rollup(100000)"):
            pass

    await timed("full rollup from rows (hourly + every level)", rollup, times)
    blocks = "SELECT t, $1::timestamptz FROM generate_series(1, $2) t"
    await timed(
        "  hourly summaries, from rows",
        lambda: conn.execute(
            f"SELECT ladder_build_hourly(t, h) FROM ({blocks}) b(t, h)", hour, targets
        ),
        times,
    )
    levels = [
        r["level"]
        for r in await conn.fetch("SELECT level, max_span FROM ladder_levels ORDER BY level")
    ]
    for level in levels:
        await timed(
            f"  level {level}" + (", from rows" if level == 1 else f", from level {level - 1}"),
            lambda level=level: conn.execute(
                LEVEL_SQL,
                hour,
                targets,
                level,
            ),
            times,
        )
    await timed("pack the day's rows", lambda: conn.fetchval("SELECT ladder_pack(10)"), times)
    await conn.execute("VACUUM ANALYZE pings_packed")
    await timed(
        "  hourly summaries, from packed",
        lambda: conn.execute(
            f"SELECT ladder_build_hourly(t, h) FROM ({blocks}) b(t, h)", hour, targets
        ),
        times,
    )
    await timed(
        "  level 1, from packed",
        lambda: conn.execute(
            LEVEL1_SQL,
            hour,
            targets,
        ),
        times,
    )
    await timed(
        "read every ping back through raw_pings",
        lambda: conn.fetchval(
            READ_SQL,
            hour,
            targets,
        ),
        times,
    )
    # Rebuilding left dead rows; a steady state reuses their space, so measure compacted.
    tables = [f"segments_l{level}" for level in levels] + ["hourly_summaries"]
    await conn.execute(f"VACUUM FULL {', '.join(tables)}")
    await conn.execute("VACUUM ANALYZE")

    print("\nbytes (pg_total_relation_size: heap + TOAST + indexes)")
    size = SIZE_SQL
    ref = await conn.fetchval(size, "ref_copy")
    packed = await conn.fetchval(size, "pings_packed")
    print(f"  {'raw rows (ref_copy, with PK)':<28} {ref:>12,} B  {ref / n:6.2f} B/ping")
    print(f"  {'raw packed':<28} {packed:>12,} B  {packed / n:6.2f} B/ping")
    for level in levels:
        b = await conn.fetchval(size, f"segments_l{level}")
        k = await conn.fetchval("SELECT count(*) FROM segments WHERE level = $1", level)
        print(
            f"  {f'segments level {level}':<28} {b:>12,} B  {b / n:6.2f} B/ping"
            f"  {b / k:6.1f} B/segment  ({k:,} rows)"
        )
    b = await conn.fetchval(size, "hourly_summaries")
    k = await conn.fetchval("SELECT count(*) FROM hourly_summaries")
    print(
        f"  {'hourly summaries':<28} {b:>12,} B  {b / n:6.2f} B/ping"
        f"  {b / k:6.1f} B/row  ({k:,} rows)"
    )

    print("\nsegments per target-hour (pings per segment)")
    counts = await conn.fetch(
        "SELECT level, target_id % 3 AS kind,"
        " count(*)::float / count(DISTINCT target_id) AS per_target"
        " FROM segments GROUP BY 1, 2 ORDER BY 1, 2"
    )
    for r in counts:
        print(
            f"  level {r['level']} {KINDS[r['kind']]:<5} {r['per_target']:8.1f}"
            f"  ({3600 / r['per_target']:7.1f})"
        )
    day = hour - timedelta(days=1, hours=10)
    density = await day_contraction(conn, day, day_targets, rng, levels)
    seg_bytes = await steady_bytes(conn, "segments", "start_ts", "end_ts")
    hourly_bytes = await steady_bytes(conn, "hourly_summaries", "hour", None)
    print(f"  segment row   {seg_bytes:6.1f} B    hourly row   {hourly_bytes:6.1f} B")
    figures = {
        "raw_rows": float(ref) / n,
        "raw_packed": float(packed) / n,
        "segment": seg_bytes,
        "hourly": hourly_bytes,
    }
    packed_cost = await packed_segment_bytes(conn)
    await projections(conn, figures, density, packed_cost)
    await conn.close()


async def day_contraction(
    conn: asyncpg.Connection, day: datetime, per_kind: int, rng: random.Random, levels: list[int]
) -> dict[str, dict[int, float]]:
    """Segments per ping of every level on one whole day of each series."""
    first = 100_000
    ids = {kind: [first + k * 1000 + j for j in range(per_kind)] for k, kind in enumerate(KINDS)}
    rows = [r for kind in KINDS for t in ids[kind] for r in series(kind, t, day, DAY_S, rng)]
    print(f"\none day of {per_kind} targets per series at 1 Hz = {len(rows):,} pings, {day.date()}")
    cols = ["target_id", "ts", "rtt_us", "ttl", "hops"]
    await conn.copy_records_to_table("pings", records=rows, columns=cols)

    async def rollup() -> None:
        while await conn.fetchval("SELECT ladder_rollup(100000)"):
            pass

    await timed("rollup of the day (hourly + every level)", rollup, {})
    found = await conn.fetch(
        "SELECT level, (target_id - $1) / 1000 AS kind, count(*) AS segments FROM segments"
        " WHERE target_id >= $1 GROUP BY 1, 2",
        first,
    )
    density = {kind: dict.fromkeys(levels, 0.0) for kind in KINDS}
    for r in found:
        density[KINDS[r["kind"]]][r["level"]] = r["segments"] / (per_kind * DAY_S)
    print("contraction ratio per level: pings per segment (segments per target-day)")
    print(f"  {'series':<6}" + "".join(f"{f'level {lv}':>22}" for lv in levels))
    for kind in KINDS:
        cells = "".join(
            f"{1 / d if d else float('inf'):>10,.1f} ({d * DAY_S:>7,.0f})"
            for d in (density[kind][lv] for lv in levels)
        )
        print(f"  {kind:<6}{cells}")
    return density


async def steady_bytes(conn: asyncpg.Connection, table: str, ts: str, ts2: str | None) -> float:
    """Bytes per row of `table`'s shape holding >= STEADY_ROWS rows, inserted day by day."""
    source = f"{table}_l1" if table == "segments" else table
    await conn.execute(f"CREATE TABLE steady (LIKE {source} INCLUDING ALL)")
    have = await conn.fetchval(f"SELECT count(*) FROM {table}")
    copies = -(-STEADY_ROWS // have)
    shift = {ts: f"s.{ts} + k * interval '1 day'"} | (
        {ts2: f"s.{ts2} + k * interval '1 day'"} if ts2 else {}
    )
    patch = ", ".join(f"'{c}', {v}" for c, v in shift.items())
    await conn.execute(
        f"INSERT INTO steady SELECT (jsonb_populate_record(NULL::{table},"
        f" to_jsonb(s) || jsonb_build_object({patch}))).*"
        f" FROM {table} s, generate_series(0, {copies - 1}) k ORDER BY k, s.{ts}"
    )
    await conn.execute("VACUUM ANALYZE steady")
    size = await conn.fetchval("SELECT pg_total_relation_size('steady')")
    await conn.execute("DROP TABLE steady")
    return float(size) / (have * copies)


async def packed_segment_bytes(conn: asyncpg.Connection) -> dict[str, dict[int, float]]:
    """Steady-state bytes per segment of each packed level and series (days copied day by day)."""
    await timed(
        "pack the ended days of the packed levels",
        lambda: conn.fetchval("SELECT ladder_pack_segments(1000000)"),
        {},
    )
    packed = [r[0] for r in await conn.fetch("SELECT level FROM ladder_levels WHERE packed")]
    cost: dict[str, dict[int, float]] = {kind: {} for kind in KINDS}
    print("packed segments: bytes per segment (one row per target-day, heap + TOAST + index)")
    for k, kind in enumerate(KINDS):
        for level in packed:
            where = f"level = {level} AND target_id / 1000 = {100 + k}"
            have = await conn.fetchval(f"SELECT sum(n) FROM segments_packed WHERE {where}")
            if not have:
                continue
            copies = -(-STEADY_ROWS // have)
            await conn.execute(
                f"CREATE TABLE steady (LIKE segments_packed_l{level} INCLUDING ALL)"
                " WITH (toast_tuple_target = 128)"
            )
            await conn.execute(
                "INSERT INTO steady SELECT target_id, level, block_start + d * interval '1 day',"
                " n, pings, last_end + d * interval '1 day', start_off, dur, count, lost,"
                " min_us, max_us, sum_us, sumsq_us, hops, ttl"
                f" FROM segments_packed, generate_series(0, {copies - 1}) d WHERE {where}"
                " ORDER BY d, target_id"
            )
            await conn.execute("VACUUM ANALYZE steady")
            size = await conn.fetchval("SELECT pg_total_relation_size('steady')")
            await conn.execute("DROP TABLE steady")
            cost[kind][level] = float(size) / (have * copies)
            print(f"  level {level} {kind:<5} {cost[kind][level]:7.1f} B/segment")
    return cost


def _mixed_packed_cost(
    mix: dict[str, float],
    density: dict[str, dict[int, float]],
    packed: dict[str, dict[int, float]],
    ladder: Ladder,
) -> float:
    """B/segment of the packed levels for a fleet mix, weighted by the segments kept."""
    weights = {
        (k, lv.level): w * density[k][lv.level] * days(lv.retention)
        for k, w in mix.items()
        for lv in ladder.levels
        if lv.packed and lv.level in packed[k]
    }
    total = sum(weights.values())
    return sum(w * packed[k][lv] for (k, lv), w in weights.items()) / total if total else 0.0


async def projections(
    conn: asyncpg.Connection,
    cost: dict[str, float],
    density: dict[str, dict[int, float]],
    packed: dict[str, dict[int, float]],
) -> None:
    """The default ladder at the user's scale for each fleet shape, and a variant."""
    ladder = await load_ladder(conn)
    variants = {
        "default ladder": ladder,
        "nothing packed (every segment a row)": replace(
            ladder, levels=tuple(replace(lv, packed=False) for lv in ladder.levels)
        ),
        "level 1 kept as long as raw": replace(
            ladder,
            levels=tuple(
                replace(lv, retention=min(lv.retention, ladder.raw_retention))
                if lv.level == 1
                else lv
                for lv in ladder.levels
            ),
        ),
    }
    shapes = {
        "all LAN": {"lan": 1.0},
        "2/3 LAN + 1/3 WAN": {"lan": 2 / 3, "wan": 1 / 3},
        "thirds": {"lan": 1 / 3, "wan": 1 / 3, "flap": 1 / 3},
        "all WAN": {"wan": 1.0},
        "all flapping": {"flap": 1.0},
    }
    print(f"\nprojection: {PROJECT_TARGETS} targets, 1 s, {PROJECT_YEARS} years (GB = 1e9 B)")
    for name, variant in variants.items():
        print(f"  {name}")
        for shape, mix in shapes.items():
            per_ping = {
                lv.level: Figure(sum(w * density[k][lv.level] for k, w in mix.items()), "bench")
                for lv in variant.levels
            }
            figures = Figures(
                Figure(cost["raw_rows"], "bench"),
                Figure(cost["raw_packed"], "bench"),
                Figure(cost["segment"], "bench"),
                Figure(cost["hourly"], "bench"),
                per_ping,
                Figure(_mixed_packed_cost(mix, density, packed, variant), "bench"),
            )
            p = project(variant, figures, PROJECT_TARGETS, 1.0, PROJECT_YEARS)
            tiers = " ".join(f"{t.tier} {t.bytes / 1e9:.2f}" for t in p.tiers)
            print(
                f"    {shape:<18} total {p.total_bytes / 1e9:6.1f}  [{tiers}]"
                f"  every ping kept {p.keep_every_ping_bytes / 1e9:.0f}"
                f"  as rows {p.raw_only_bytes / 1e12:.2f} TB"
            )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=int, default=300)
    parser.add_argument("--day-targets", type=int, default=3, help="per series, for one day")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--database-url", default=Settings().database_url)
    args = parser.parse_args()
    base = urlsplit(args.database_url)
    name = f"pingtrack_bench_ladder_{uuid.uuid4().hex[:6]}"
    dsn = urlunsplit(base._replace(path="/" + name))
    await print_header_async(args.database_url)
    await create_database_if_missing(dsn)
    try:
        conn = await asyncpg.connect(dsn)
        try:
            await migrate(conn, Settings().migrations_dir)
            await conn.execute("SELECT ensure_ping_partitions(current_date - 4, current_date)")
        finally:
            await conn.close()
        await bench(dsn, args.targets, args.day_targets, args.seed)
    finally:
        admin = await asyncpg.connect(urlunsplit(base._replace(path="/postgres")))
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


if __name__ == "__main__":
    ensure_guarded()  # nothing a benchmark does may leave the machine
    asyncio.run(main())

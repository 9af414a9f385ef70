"""The ladder's SQL jobs against the real PostgreSQL, checked against shared/segments.py."""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings

from shared.blocks import ORIGIN, ORIGIN_US
from shared.ladder import (
    ROUND_SQL,
    cron_job_name,
    cron_unavailable_reason,
    load_ladder,
    schedule_ladder,
    unschedule_ladder,
)
from shared.segments import Ping, Segment, Tolerance, build_ladder, max_gap_us
from tests.test_segments import assert_ladder_invariants, series

_ids = itertools.count(os.getpid() * 100_000)


def new_target() -> int:
    return next(_ids)


def ts_of(us: int) -> datetime:
    return ORIGIN + timedelta(microseconds=us - ORIGIN_US)


def us_of(ts: datetime) -> int:
    return ORIGIN_US + (ts - ORIGIN) // timedelta(microseconds=1)


def days_ago_midnight_us(days: int) -> int:
    midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return us_of(midnight - timedelta(days=days))


def shifted(pings: Sequence[Ping], to_us: int) -> list[Ping]:
    """The same series moved so that it starts at to_us - 150 s (across a midnight)."""
    delta = to_us - 150_000_000 - pings[0].ts_us
    return [Ping(p.ts_us + delta, p.rtt_us, p.ttl, p.hops) for p in pings]


async def insert(conn: asyncpg.Connection, target: int, pings: Sequence[Ping]) -> None:
    await conn.copy_records_to_table(
        "pings",
        records=[(target, ts_of(p.ts_us), p.rtt_us, p.ttl, p.hops) for p in pings],
        columns=["target_id", "ts", "rtt_us", "ttl", "hops"],
    )


async def roll_up(conn: asyncpg.Connection) -> None:
    while await conn.fetchval("SELECT ladder_rollup()"):
        pass


async def pack_segments(conn: asyncpg.Connection, target: int) -> int:
    """Packs the target's ended blocks of the packed levels; returns the blocks packed."""
    packed = 0
    while n := await conn.fetchval("SELECT ladder_pack_segments(5000, $1)", target):
        packed += n
    return packed


async def row_form_levels(conn: asyncpg.Connection, target: int) -> set[int]:
    rows = await conn.fetch("SELECT DISTINCT level FROM segments WHERE target_id = $1", target)
    return {r["level"] for r in rows}


async def packed_units(conn: asyncpg.Connection, target: int) -> list[tuple[object, ...]]:
    rows = await conn.fetch(
        "SELECT level, block_start, n, pings FROM segments_packed WHERE target_id = $1"
        " ORDER BY level, block_start",
        target,
    )
    return [tuple(r.values()) for r in rows]


async def segments_of(conn: asyncpg.Connection, target: int, level: int) -> list[Segment]:
    """Both forms, as every reader sees them (segments_of in SQL)."""
    rows = await conn.fetch(
        "SELECT * FROM segments_of($1, $2, '-infinity', 'infinity') ORDER BY start_ts",
        target,
        level,
    )
    return [
        Segment(
            start_us=us_of(r["start_ts"]),
            end_us=us_of(r["end_ts"]),
            count=r["count"],
            lost=r["lost"],
            min_us=r["min_us"],
            max_us=r["max_us"],
            sum_us=r["sum_us"],
            sumsq_us=int(r["sumsq_us"]),
            hops=r["hops"],
            ttl=r["ttl"],
        )
        for r in rows
    ]


async def ladder_of(conn: asyncpg.Connection, target: int) -> list[list[Segment]]:
    ladder = await load_ladder(conn)
    return [await segments_of(conn, target, lv.level) for lv in ladder.levels]


async def hourly_of(conn: asyncpg.Connection, target: int) -> list[tuple[object, ...]]:
    rows = await conn.fetch(
        "SELECT * FROM hourly_summaries WHERE target_id = $1 ORDER BY hour", target
    )
    return [tuple(r.values())[1:] for r in rows]


async def raw_of(conn: asyncpg.Connection, target: int) -> list[Ping]:
    rows = await conn.fetch("SELECT * FROM raw_pings($1, '-infinity', 'infinity')", target)
    return [Ping(us_of(r["ts"]), r["rtt_us"], r["ttl"], r["hops"]) for r in rows]


@pytest.fixture(scope="module")
def tolerances(database_url: str) -> list[Tolerance]:
    async def load() -> list[Tolerance]:
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute("SELECT ensure_ping_partitions(current_date - 130, current_date)")
            return [lv.tolerance() for lv in (await load_ladder(conn)).levels]
        finally:
            await conn.close()

    return asyncio.run(load())


@pytest.fixture
async def conn(database_url: str, tolerances: list[Tolerance]) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(database_url)
    yield connection
    await connection.close()


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(pings=series())
def test_sql_segments_equal_the_reference_on_random_series(
    database_url: str, tolerances: list[Tolerance], pings: list[Ping]
) -> None:
    pings = shifted(pings, days_ago_midnight_us(3))

    async def check() -> None:
        conn = await asyncpg.connect(database_url)
        try:
            target = new_target()
            await insert(conn, target, pings)
            await roll_up(conn)
            got = await ladder_of(conn, target)
            assert got == build_ladder(pings, tolerances)
            assert_ladder_invariants(pings, tolerances, got)
            # The packed form of every level reads back the same rows.
            assert await pack_segments(conn, target) > 0
            assert await row_form_levels(conn, target) == set()
            assert await ladder_of(conn, target) == got
        finally:
            await conn.close()

    asyncio.run(check())


def steady_hour(start_us: int, n: int = 3600) -> list[Ping]:
    """A 1 Hz series with jitter, spikes, a loss run and a hop change."""
    out = []
    for i in range(n):
        rtt: int | None = 800 + (i * 7919) % 400 + (40_000 if i % 613 == 5 else 0)
        hops = 3 if i < n // 2 else 4
        if 1000 <= i < 1010:
            rtt = None
        out.append(
            Ping(
                start_us + i * 1_000_000 + (i * 104_729) % 1500,
                rtt,
                None if rtt is None else 64 - hops,
                None if rtt is None else hops,
            )
        )
    return out


async def test_rollup_twice_and_concurrently_gives_the_same_rows(
    conn: asyncpg.Connection, database_url: str, tolerances: list[Tolerance]
) -> None:
    target = new_target()
    pings = steady_hour(days_ago_midnight_us(4) - 1_800_000_000)
    await insert(conn, target, pings)
    other = await asyncpg.connect(database_url)
    try:
        await asyncio.gather(roll_up(conn), roll_up(other))
    finally:
        await other.close()
    first, first_hourly = await ladder_of(conn, target), await hourly_of(conn, target)
    assert first == build_ladder(pings, tolerances)
    assert [h[1] for h in first_hourly] == [1800, 1800]  # counts per hour, none doubled
    # Mark every block dirty again: the rebuild must not change a row.
    await conn.execute(
        "INSERT INTO ladder_dirty"
        " SELECT DISTINCT target_id, date_bin('1 hour', ts, ladder_origin())"
        " FROM pings WHERE target_id = $1",
        target,
    )
    await roll_up(conn)
    assert await ladder_of(conn, target) == first
    assert await hourly_of(conn, target) == first_hourly
    # Packed, a rebuild of level 3 reads packed level 2, and re-packing changes nothing.
    assert await pack_segments(conn, target) == 6  # three levels, two days each
    day = ts_of(first[2][0].start_us).replace(hour=0, minute=0, second=0, microsecond=0)
    await conn.execute(
        "SELECT ladder_build_segments(3::smallint, $1::bigint, $2::timestamptz,"
        " $2 + interval '1 day')",
        target,
        day,
    )
    assert await row_form_levels(conn, target) == {3}
    assert await ladder_of(conn, target) == first
    assert await pack_segments(conn, target) == 1
    assert await pack_segments(conn, target) == 0
    assert await ladder_of(conn, target) == first


async def test_late_data_after_rollup_and_packing_ends_as_if_on_time(
    conn: asyncpg.Connection,
) -> None:
    pings = steady_hour(days_ago_midnight_us(5) - 1_800_000_000)
    on_time, late = new_target(), new_target()
    held_back = pings[1500:2400]  # fifteen minutes drained after an outage
    await insert(conn, on_time, pings)
    await insert(conn, late, pings[:1500] + pings[2400:])
    await roll_up(conn)
    assert await conn.fetchval("SELECT ladder_pack(10)") > 0
    assert await pack_segments(conn, late) > 0 and await pack_segments(conn, on_time) > 0
    await insert(conn, late, held_back)  # lands in row form beside the packed blocks
    await roll_up(conn)
    assert await row_form_levels(conn, late) == {1, 2, 3}  # the days were rebuilt as rows
    assert await packed_units(conn, late) == []
    assert await ladder_of(conn, late) == await ladder_of(conn, on_time)
    assert await pack_segments(conn, late) == 6  # and are packed again
    assert await row_form_levels(conn, late) == set()
    assert await packed_units(conn, late) == await packed_units(conn, on_time)
    assert await ladder_of(conn, late) == await ladder_of(conn, on_time)
    assert await hourly_of(conn, late) == await hourly_of(conn, on_time)
    await conn.fetchval("SELECT ladder_pack(10)")  # merges the late rows into their blocks
    assert await raw_of(conn, late) == pings
    assert await conn.fetchval("SELECT count(*) FROM pings WHERE target_id = $1", late) == 0


async def test_late_data_into_an_hour_of_a_packed_day_rebuilds_only_that_hour(
    conn: asyncpg.Connection, tolerances: list[Tolerance]
) -> None:
    pings = steady_hour(days_ago_midnight_us(7) + 3_600_000_000, n=3 * 3600)
    on_time, late = new_target(), new_target()
    held_back = pings[5000:5600]  # ten minutes of the middle hour
    await insert(conn, on_time, pings)
    await insert(conn, late, pings[:5000] + pings[5600:])
    await roll_up(conn)
    assert await pack_segments(conn, late) == 3 and await pack_segments(conn, on_time) == 3
    before = await segments_of(conn, late, 1)
    await insert(conn, late, held_back)
    await roll_up(conn)
    # Level 1 was rebuilt for the middle hour alone; the day's other hours came
    # back from its packed row unchanged.
    hour = ts_of(pings[0].ts_us).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    after = await segments_of(conn, late, 1)

    def outside(segments: list[Segment]) -> list[Segment]:
        return [s for s in segments if not hour <= ts_of(s.start_us) < hour + timedelta(hours=1)]

    assert outside(after) == outside(before) and len(outside(after)) < len(after)
    assert after != before
    assert await packed_units(conn, late) == []
    assert await ladder_of(conn, late) == await ladder_of(conn, on_time)
    assert await ladder_of(conn, late) == build_ladder(pings, tolerances)
    assert await pack_segments(conn, late) == 3
    assert await row_form_levels(conn, late) == set()
    assert await packed_units(conn, late) == await packed_units(conn, on_time)
    assert await ladder_of(conn, late) == await ladder_of(conn, on_time)


async def test_packing_is_lossless_and_small(conn: asyncpg.Connection) -> None:
    target = new_target()
    pings = steady_hour(days_ago_midnight_us(6) + 3_600_000_000)
    pings += [Ping(pings[-1].ts_us + 7_000_000_123, 2_000_000, 1, 254)]  # odd gap, huge RTT
    await insert(conn, target, pings)
    await conn.fetchval("SELECT ladder_pack(10)")
    assert await conn.fetchval("SELECT count(*) FROM pings WHERE target_id = $1", target) == 0
    assert await raw_of(conn, target) == pings
    stored = await conn.fetchval(
        "SELECT sum(pg_column_size(k.*)) FROM pings_packed k WHERE target_id = $1", target
    )
    assert stored / len(pings) < 4.0, f"{stored / len(pings):.2f} bytes per ping"


async def test_hourly_percentiles_and_jitter_match_raw(conn: asyncpg.Connection) -> None:
    target = new_target()
    pings = steady_hour(days_ago_midnight_us(7))
    await insert(conn, target, pings)
    await roll_up(conn)
    want = await conn.fetchrow(
        """SELECT count(*) AS count, count(*) FILTER (WHERE rtt_us IS NULL) AS lost,
                  percentile_cont(0.5) WITHIN GROUP (ORDER BY rtt_us) AS p50,
                  percentile_cont(0.95) WITHIN GROUP (ORDER BY rtt_us) AS p95,
                  percentile_cont(0.99) WITHIN GROUP (ORDER BY rtt_us) AS p99,
                  min(rtt_us) AS min, max(rtt_us) AS max
           FROM pings WHERE target_id = $1""",
        target,
    )
    got = await conn.fetchrow("SELECT * FROM hourly_summaries WHERE target_id = $1", target)
    assert (got["count"], got["lost"], got["min_us"], got["max_us"]) == (
        want["count"],
        want["lost"],
        want["min"],
        want["max"],
    )
    assert (got["p50_us"], got["p95_us"], got["p99_us"]) == (want["p50"], want["p95"], want["p99"])
    rtts = [p.rtt_us for p in pings if p.rtt_us is not None]
    steps = [abs(b - a) for a, b in itertools.pairwise(rtts)]
    assert got["jitter_us"] == pytest.approx(sum(steps) / len(steps), rel=1e-12)
    assert (got["hops_min"], got["hops_max"], got["hop_changes"], got["loss_runs"]) == (3, 4, 1, 1)


async def test_retention_drops_what_expired_and_nothing_else(conn: asyncpg.Connection) -> None:
    target = new_target()
    ages = (120, 45, 20, 5)  # days: past level 2's 90, past level 1's 30, past raw's 14, inside all
    async with conn.transaction():  # roll up old data as if it had been done in time
        await conn.execute("UPDATE ladder_settings SET raw_retention = '1000 days'")
        for age in ages:
            await insert(conn, target, steady_hour(days_ago_midnight_us(age), n=60))
        await roll_up(conn)
        await conn.execute("UPDATE ladder_settings SET raw_retention = DEFAULT")
    await conn.fetchval("SELECT ladder_pack(200)")
    assert await pack_segments(conn, target) == 3 * len(ages)  # three levels, a day per age
    await conn.fetchval("SELECT ladder_retention()")
    today = datetime.now(UTC).date()
    days = {r["day"] for r in await conn.fetch("SELECT day FROM ladder_ping_partitions()")}
    assert not {today - timedelta(days=age) for age in (120, 45, 20)} & days
    assert today - timedelta(days=14) in days and today - timedelta(days=5) in days
    raw_days = {ts_of(p.ts_us).date() for p in await raw_of(conn, target)}
    assert raw_days == {today - timedelta(days=5)}
    kept = {  # level: the ages whose segments outlive the level's retention
        1: {20, 5},
        2: {45, 20, 5},
        3: set(ages),
    }
    for level, kept_ages in kept.items():
        segs = await segments_of(conn, target, level)
        assert {ts_of(s.start_us).date() for s in segs} == {
            today - timedelta(days=age) for age in kept_ages
        }, level
    assert len(await hourly_of(conn, target)) == len(ages)


async def test_scheduled_command_runs_the_whole_ladder(own_database_url: str) -> None:
    # Its own database: while the job is scheduled pg_cron may start a round,
    # which must not touch the data of tests sharing the session database.
    base = urlsplit(own_database_url)
    database = base.path.lstrip("/")
    conn = await asyncpg.connect(own_database_url)
    preload = await conn.fetchval("SHOW shared_preload_libraries")
    if "pg_cron" not in preload:
        await conn.close()
        pytest.skip(f"pg_cron is not loaded (shared_preload_libraries = {preload!r})")
    cron_db = await conn.fetchval("SHOW cron.database_name")
    cron_conn = await asyncpg.connect(urlunsplit(base._replace(path="/" + cron_db)))
    try:
        assert await cron_unavailable_reason(cron_conn) is None
        await conn.execute("SELECT ensure_ping_partitions(current_date - 8, current_date)")
        job_id = await schedule_ladder(cron_conn, database)
        job = await cron_conn.fetchrow("SELECT * FROM cron.job WHERE jobid = $1", job_id)
        assert (job["jobname"], job["schedule"], job["command"], job["database"]) == (
            cron_job_name(database),
            "* * * * *",
            ROUND_SQL,
            database,
        )
        target = new_target()
        await insert(conn, target, steady_hour(days_ago_midnight_us(8), n=120))
        await conn.execute(job["command"])  # exactly what pg_cron runs in this database
        assert len(await segments_of(conn, target, 1)) > 0
        assert (
            await conn.fetchval("SELECT count(*) FROM ladder_dirty WHERE target_id = $1", target)
            == 0
        )
    finally:
        assert await unschedule_ladder(cron_conn, database)
        await cron_conn.close()
        await conn.close()


async def test_a_paused_hour_stays_a_hole_at_every_level(
    conn: asyncpg.Connection, tolerances: list[Tolerance]
) -> None:
    # A real target pinged every 10 s: gaps up to 30 s are bridged, longer ones are not.
    target = await conn.fetchval(
        "INSERT INTO targets (address, interval_ms, timeout_ms, state)"
        " VALUES ('127.0.0.1', 10000, 1000, 'stopped') RETURNING id"
    )
    start = days_ago_midnight_us(9) + 3_600_000_000
    before = [Ping(start + i * 10_000_000, 900, 61, 3) for i in range(180)]
    resumed = before[-1].ts_us + 3_600_000_000  # paused an hour: same RTT and hops after
    after = [
        Ping(resumed + i * 10_000_000 + (25_000_000 if i > 5 else 0), 900, 61, 3)
        for i in range(180)
    ]  # and a 35 s hiccup after 6 pings
    pings = before + after
    await insert(conn, target, pings)
    await roll_up(conn)
    got = await ladder_of(conn, target)
    assert got == build_ladder(pings, tolerances, max_gap=max_gap_us(10_000))
    assert_ladder_invariants(pings, tolerances, got, max_gap=30_000_000)
    for level in got:
        assert not [s for s in level if s.start_us <= before[-1].ts_us and s.end_us >= resumed]
        assert {before[-1].ts_us, after[5].ts_us} <= {s.end_us for s in level}

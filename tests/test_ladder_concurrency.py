"""Writers and ladder rounds at once over late data, as when a backlog drains
after an outage: no ping may miss a tier.

A ping is lost to the rollups when a round takes the dirty mark of its block
while the ping's transaction is still open, and then reads the block without
it. The first test makes that interleaving happen step by step; the last runs
writers and rounds (`CALL ladder_run()`, what pg_cron runs) freely for many
rounds and checks every tier against a recomputation from the raw pings.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any

import asyncpg
import pytest

from shared.codec import ResultBatch
from shared.ladder import ROUND_SQL, load_ladder
from shared.segments import HOUR_US, Ping, Segment, Tolerance, block_of, build_ladder, max_gap_us
from tests.conftest import eventually
from tests.test_rollups import insert, ladder_of, new_target, raw_of, steady_hour, us_of
from writer_service.rows import COLUMNS, rows_of
from writer_service.store import prepare_connection

TARGETS = 6
INTERVAL_S = 5  # each hour's summary and segments are rebuilt from 720 pings
HOURS = 10  # late hours per target: settled, so rolled up at once, and too young to pack
BATCH_S = 30  # seconds of every target's pings per batch, as a prober sends them
WRITERS = 3
# A writer's transaction stays open a while after its insert: the other batches
# of its group, addresses and probe details, the commit's round trip and flush.
WRITER_TAIL_S = 0.004
MIN_ROUNDS = 8  # ladder rounds that must overlap the writers
ROUND_TIMEOUT_S = 10.0

# The integer columns of hourly_summaries, each recomputed by hourly_reference.
HOURLY_COLUMNS = (
    "hour",
    "count",
    "lost",
    "min_us",
    "max_us",
    "sum_us",
    "sumsq_us",
    "hops_min",
    "hops_max",
    "hop_changes",
    "loss_runs",
)
ACCOUNT = ("expected", "stored", "missing", "duplicated")


def settled_hour_us(hours_ago: int) -> int:
    """Start of the hour that began `hours_ago` hours before the current one."""
    return block_of(time.time_ns() // 1000, HOUR_US) - hours_ago * HOUR_US


def late_backlog(targets: Sequence[int]) -> dict[int, list[Ping]]:
    """HOURS of pings every INTERVAL_S per target (spikes, a loss run, a hop change)
    that ended over an hour ago, each target shifted so that its events fall elsewhere."""
    start_us = settled_hour_us(HOURS + 2)
    return {
        t: steady_hour(start_us + k * 97_000_000, n=HOURS * 3600)[::INTERVAL_S]
        for k, t in enumerate(targets)
    }


def batches_in_send_order(backlog: dict[int, list[Ping]]) -> list[ResultBatch]:
    """Every target's pings in time order, cut into batches of BATCH_S seconds."""
    rows = sorted((p.ts_us, t, p) for t, pings in backlog.items() for p in pings)
    out: list[ResultBatch] = []
    for _, group in itertools.groupby(rows, key=lambda r: r[0] // (BATCH_S * 1_000_000)):
        batch = ResultBatch(prober="backlog")
        for _, target, p in group:
            batch.append(target, p.ts_us, p.rtt_us, p.ttl, p.hops)
        out.append(batch)
    return out


def hourly_reference(pings: Sequence[Ping]) -> list[tuple[object, ...]]:
    """HOURLY_COLUMNS of each hour's summary, recomputed from the raw pings."""
    out: list[tuple[object, ...]] = []
    for hour, group in itertools.groupby(pings, key=lambda p: block_of(p.ts_us, HOUR_US)):
        ps = list(group)
        answered = [p for p in ps if p.rtt_us is not None]
        rtts = [p.rtt_us for p in answered if p.rtt_us is not None]
        hops = [p.hops for p in answered if p.hops is not None]
        loss_runs = sum(
            p.rtt_us is None and (i == 0 or ps[i - 1].rtt_us is not None) for i, p in enumerate(ps)
        )
        out.append(
            (
                hour,
                len(ps),
                len(ps) - len(answered),
                min(rtts, default=None),
                max(rtts, default=None),
                sum(rtts),
                sum(r * r for r in rtts),
                min(hops, default=None),
                max(hops, default=None),
                sum(a.hops != b.hops for a, b in itertools.pairwise(answered)),
                loss_runs,
            )
        )
    return out


async def hourly_integers(conn: asyncpg.Connection, target: int) -> list[tuple[Any, ...]]:
    rows = await conn.fetch(
        f"SELECT {', '.join(HOURLY_COLUMNS)} FROM hourly_summaries WHERE target_id = $1"
        " ORDER BY hour",
        target,
    )
    return [(us_of(r["hour"]), *tuple(r.values())[1:]) for r in rows]


def pings_per_block(pings: Iterable[Ping], span_us: int) -> Counter[int]:
    return Counter(block_of(p.ts_us, span_us) for p in pings)


def segment_pings_per_block(segments: Iterable[Segment], span_us: int) -> Counter[int]:
    counts: Counter[int] = Counter()
    for s in segments:  # a segment never crosses its level's block
        counts[block_of(s.start_us, span_us)] += s.count
    return counts


def account(tier: str, expected: Counter[int], stored: Counter[int]) -> Counter[tuple[str, str]]:
    """Pings expected, stored, missing and duplicated over the blocks of one tier."""
    return Counter(
        {
            (tier, "expected"): expected.total(),
            (tier, "stored"): stored.total(),
            (tier, "missing"): (expected - stored).total(),
            (tier, "duplicated"): (stored - expected).total(),
        }
    )


async def accounts_of(
    conn: asyncpg.Connection, target: int, pings: Sequence[Ping], tolerances: Sequence[Tolerance]
) -> tuple[Counter[tuple[str, str]], list[str]]:
    """The target's account per tier, and the tiers that differ from a recomputation."""
    hourly = await hourly_integers(conn, target)
    ladder = await ladder_of(conn, target)
    accounts = account(
        "hourly", pings_per_block(pings, HOUR_US), Counter({h[0]: h[1] for h in hourly})
    )
    for level, (tol, segments) in enumerate(zip(tolerances, ladder, strict=True), 1):
        accounts.update(
            account(
                f"level {level}",
                pings_per_block(pings, tol.span_us),
                segment_pings_per_block(segments, tol.span_us),
            )
        )
    differ = []
    if hourly != hourly_reference(pings):
        differ.append("hourly")
    differ += [
        f"level {level}"
        for level, (got, want) in enumerate(
            zip(
                ladder, build_ladder(pings, tolerances, max_gap_us(INTERVAL_S * 1000)), strict=True
            ),
            1,
        )
        if got != want
    ]
    return accounts, differ


async def ladder_round(conn: asyncpg.Connection) -> None:
    await conn.execute(ROUND_SQL, timeout=ROUND_TIMEOUT_S)


async def dirty_marks(conn: asyncpg.Connection) -> int:
    count: int = await conn.fetchval("SELECT count(*) FROM ladder_dirty")
    return count


async def hourly_count(conn: asyncpg.Connection, target: int) -> int | None:
    count: int | None = await conn.fetchval(
        "SELECT sum(count) FROM hourly_summaries WHERE target_id = $1", target
    )
    return count


@pytest.fixture
async def conns(own_database_url: str) -> AsyncIterator[list[asyncpg.Connection]]:
    """Three connections to a database of the test's own, with partitions for the
    last two days: two writers and the ladder."""
    opened = [await asyncpg.connect(own_database_url) for _ in range(3)]
    await opened[0].execute("SELECT ensure_ping_partitions(current_date - 1, current_date)")
    yield opened
    for conn in opened:
        await conn.close()


async def test_a_round_skips_a_mark_whose_writer_has_not_committed(
    conns: list[asyncpg.Connection],
) -> None:
    first, second, ladder = conns
    target, hour = new_target(), settled_hour_us(3)
    await insert(first, target, [Ping(hour + 10_000_000, 900, 61, 3)])  # marks the block
    late = second.transaction()
    await late.start()
    await insert(second, target, [Ping(hour + 20_000_000, 950, 61, 3)])  # finds it marked
    await ladder_round(ladder)  # must neither wait for the open write nor take its mark
    during = await dirty_marks(ladder), await hourly_count(ladder, target)
    await late.commit()
    await ladder_round(ladder)
    assert await hourly_count(ladder, target) == 2
    assert sum(s.count for s in (await ladder_of(ladder, target))[0]) == 2
    assert during == (1, None)  # the round left the block to the next one
    assert await dirty_marks(ladder) == 0


async def test_a_write_into_a_block_being_rolled_up_marks_it_again(
    conns: list[asyncpg.Connection],
) -> None:
    first, second, ladder = conns
    target, hour = new_target(), settled_hour_us(3)
    await insert(first, target, [Ping(hour + 10_000_000, 900, 61, 3)])
    rollup = ladder.transaction()
    await rollup.start()
    assert await ladder.fetchval("SELECT ladder_rollup()") == 1  # holds the taken mark
    write = asyncio.create_task(insert(second, target, [Ping(hour + 20_000_000, 950, 61, 3)]))
    try:
        # The writer waits for the rollup's transaction to end...
        await eventually(
            lambda: first.fetchval(
                "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1",
                second.get_server_pid(),
            )
        )
        assert not write.done()
    finally:
        await rollup.commit()
        await write
    # ...then marks the block afresh, and the next round rebuilds it whole.
    assert await dirty_marks(ladder) == 1
    assert await hourly_count(ladder, target) == 1
    await ladder_round(ladder)
    assert await hourly_count(ladder, target) == 2


async def drain(
    pool: asyncpg.Pool, ladder: asyncpg.Connection, batches: Sequence[ResultBatch]
) -> tuple[int, float]:
    """WRITERS write the batches in order while ladder rounds run back to back;
    returns the rounds run and the seconds the writing took."""
    queue = deque(batches)
    rng = random.Random(14)

    async def writer() -> None:
        async with pool.acquire() as conn:
            while queue:
                batch = queue.popleft()
                async with conn.transaction():
                    await conn.copy_records_to_table(
                        "pings", records=rows_of(batch), columns=COLUMNS
                    )
                    await asyncio.sleep(rng.uniform(0, WRITER_TAIL_S))

    began, rounds = time.monotonic(), 0
    async with asyncio.TaskGroup() as group:
        writers = [group.create_task(writer()) for _ in range(WRITERS)]
        while not all(w.done() for w in writers):
            await ladder_round(ladder)
            rounds += 1
    return rounds, time.monotonic() - began


@pytest.fixture
async def writer_pool(own_database_url: str) -> AsyncIterator[asyncpg.Pool]:
    """Connections like the writer's: timestamps travel as epoch microseconds."""
    pool = await asyncpg.create_pool(
        own_database_url, min_size=WRITERS, max_size=WRITERS, init=prepare_connection
    )
    assert pool is not None
    yield pool
    await pool.close()


async def test_late_pings_written_during_ladder_rounds_reach_every_tier(
    conns: list[asyncpg.Connection], writer_pool: asyncpg.Pool
) -> None:
    ladder = conns[0]
    targets = [
        r["id"]
        for r in await ladder.fetch(
            "INSERT INTO targets (address, interval_ms, timeout_ms, state)"
            " SELECT '127.0.0.1', $1, 1000, 'stopped' FROM generate_series(1, $2) RETURNING id",
            INTERVAL_S * 1000,
            TARGETS,
        )
    ]
    backlog = late_backlog(targets)
    rounds, writing_s = await drain(writer_pool, ladder, batches_in_send_order(backlog))
    await ladder_round(ladder)  # the backlog is in: one more round leaves nothing marked
    assert await dirty_marks(ladder) == 0
    assert rounds >= MIN_ROUNDS, f"only {rounds} rounds overlapped {writing_s:.1f} s of writes"

    tolerances = [lv.tolerance() for lv in (await load_ladder(ladder)).levels]
    accounts: Counter[tuple[str, str]] = Counter()
    differ = []
    for target in targets:
        assert await raw_of(ladder, target) == backlog[target]
        target_accounts, target_differ = await accounts_of(
            ladder, target, backlog[target], tolerances
        )
        accounts.update(target_accounts)
        differ += [(target, tier) for tier in target_differ]
    report = "; ".join(
        f"{tier}: " + ", ".join(f"{k} {accounts[tier, k]}" for k in ACCOUNT)
        for tier in dict.fromkeys(tier for tier, _ in accounts)
    )
    lost_or_doubled = sum(n for (_, k), n in accounts.items() if k in ("missing", "duplicated"))
    assert lost_or_doubled == 0, f"{rounds} rounds in {writing_s:.1f} s of writes: {report}"
    assert differ == [], f"tiers that differ from a recomputation from raw: {differ}"

"""pingtrack seed-history: every age lands in the tier the ladder keeps it in, tiers agree."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import numpy as np
import pytest

from api_service.history import series as sr
from pingtrack.seed import SeedOptions, SeedReport, binary_copy, seed_history
from pingtrack.seed_model import HOUR_US, generate

END = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
RAW = timedelta(days=2)


@pytest.fixture(scope="module")
async def seeded(database_url: str) -> SeedReport:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    try:
        return await seed_history(pool, SeedOptions(targets=2, years=0.5, raw=RAW, end=END, seed=7))
    finally:
        await pool.close()


def test_generated_tiers_hold_every_slot_once() -> None:
    hours = 24 * 20
    h = generate(3, 100 * HOUR_US, hours * 3600, 1_000_000, (hours - 24) * 3600)
    total = hours * 3600
    for level in h.levels:
        assert level.count.sum() == h.hourly["count"].sum() == total
        assert level.lost.sum() == h.hourly["lost"].sum()
    assert len(h.pings_ts) == 24 * 3600
    raw = h.levels[0].start_us >= h.pings_ts[0]
    assert h.levels[0].sum_us[raw].sum() == h.pings_rtt[h.pings_rtt >= 0].sum()
    answered = h.levels[0].lost == 0
    envelope = h.levels[0].max_us - h.levels[0].min_us
    tolerance = np.maximum(2000, 0.1 * h.levels[0].sum_us / np.maximum(h.levels[0].count, 1))
    assert (envelope[answered] <= tolerance[answered] + 1).all()
    assert {e.kind for e in h.planted} == {"loss", "hop_change", "latency_shift"}


def test_binary_copy_groups_rows_by_null_pattern() -> None:
    payload = binary_copy((("a", ">i4"), ("min_us", ">i4")), {"a": [1, 2], "min_us": [5, -1]}, 2)
    # header 19 bytes; row 1: 2 + (4 + 4) * 2; row 2: 2 + 4 + 4 + 4; trailer 2
    assert len(payload) == 19 + 18 + 14 + 2
    assert payload.endswith(b"\xff\xff")


async def test_each_age_is_in_its_tier(seeded: SeedReport, pool: asyncpg.Pool) -> None:
    target = seeded.target_ids[0]
    async with pool.acquire() as conn:
        raw = await conn.fetchrow(
            "SELECT min(ts) AS lo, max(ts) AS hi, count(*) AS n FROM pings WHERE target_id = $1",
            target,
        )
        levels = {
            r["level"]: r
            for r in await conn.fetch(
                "SELECT s.level, min(s.start_ts) AS lo, sum(s.count) AS n FROM ladder_levels l,"
                " segments_of($1, l.level, '-infinity', 'infinity') s GROUP BY s.level",
                target,
            )
        }
        hourly = await conn.fetchval(
            "SELECT sum(count) FROM hourly_summaries WHERE target_id = $1", target
        )
        retentions = dict(await conn.fetch("SELECT level, retention FROM ladder_levels"))
        dirty = await conn.fetchval(
            "SELECT count(*) FROM ladder_dirty WHERE target_id = $1", target
        )
        row_form_days = await conn.fetchval(  # of the packed levels: only days not ended
            "SELECT count(DISTINCT (level, date_bin('1 day', start_ts, ladder_origin())))"
            " FROM segments WHERE target_id = $1 AND level IN"
            " (SELECT level FROM ladder_levels WHERE packed)",
            target,
        )
    assert raw["lo"] == END - RAW and raw["hi"] == END - timedelta(seconds=1)
    assert raw["n"] == RAW.total_seconds()
    hours = int(0.5 * 365.25 * 24)
    top = max(levels)
    assert hourly == levels[top]["n"] == hours * 3600
    assert levels[top]["lo"] == END - timedelta(hours=hours)
    for level, retention in retentions.items():
        if level != top:  # each lower level only as far back as it is kept
            assert END - timedelta(hours=hours) < levels[level]["lo"]
            assert datetime.now(UTC) - retention - levels[level]["lo"] < timedelta(hours=25)
    assert dirty == 0
    assert row_form_days <= 3  # at most the unended day of each of the three levels


@pytest.mark.parametrize("tier", ["segments_l1", "segments_l2", "segments_l3", "hourly"])
async def test_seeded_tiers_agree_with_raw_per_hour(
    seeded: SeedReport, pool: asyncpg.Pool, tier: str
) -> None:
    target = seeded.target_ids[1]
    lo, hi = END - timedelta(hours=36), END
    raw = await sr.series(pool, target, lo, hi, 36, tier="raw")
    other = await sr.series(pool, target, lo, hi, 36, tier=tier)
    assert raw.grid == other.grid and raw.grid.width == timedelta(hours=1)
    async with pool.acquire() as conn:
        tolerance = await conn.fetchval(
            "SELECT abs_tolerance_us FROM ladder_levels WHERE 'segments_l' || level = $1", tier
        )
    for a, b in zip(raw.buckets, other.buckets, strict=True):
        assert (a.count, a.lost) == (b.count, b.lost)
        assert a.avg_us is not None and b.avg_us is not None
        if tier in ("segments_l1", "hourly"):  # no row crosses an hour: exact
            assert (a.min_us, a.max_us) == (b.min_us, b.max_us)
            assert a.avg_us == pytest.approx(b.avg_us, rel=1e-9)
        else:  # rows span days: the envelope holds the extremes, the mean is within tolerance
            assert b.min_us <= a.min_us <= a.max_us <= b.max_us  # type: ignore[operator]
            assert a.avg_us == pytest.approx(b.avg_us, abs=tolerance)
    assert sum(b.count for b in raw.buckets) == 36 * 3600

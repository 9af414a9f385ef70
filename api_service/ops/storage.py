"""Storage now: what each tier holds, measured, and the report GET /storage answers.

Bytes are pg_total_relation_size (heap, TOAST and indexes) summed over a
tier's partitions; rows and pings are counted exactly on small tables and
sampled on big ones. projection.py turns them into costs and a projection.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import asyncpg

from api_service.ops.projection import (
    TierNow,
    check_parameters,
    figures_from,
    ladder_content,
    project,
)
from shared.ladder import Level, load_ladder

# Exact counts up to this many rows per tier; beyond, the planner's estimate.
EXACT_COUNT_LIMIT = 5_000_000


# A table and its partitions (pg_partition_tree is empty for a plain table).
_RELATIONS = "(SELECT relid FROM pg_partition_tree($1::regclass) UNION SELECT $1::regclass) AS t"


async def _bytes(conn: asyncpg.Connection, table: str) -> int:
    size: int = await conn.fetchval(
        f"SELECT coalesce(sum(pg_total_relation_size(relid)), 0)::bigint FROM {_RELATIONS}",
        table,
    )
    return size


async def _count(conn: asyncpg.Connection, table: str, total: str) -> tuple[int, int]:
    """(rows, sum of `total`): exact on small tables, from a 1 % sample on big ones."""
    estimate = await conn.fetchval(
        "SELECT coalesce(sum(greatest(c.reltuples, 0)), 0)::bigint"
        f" FROM {_RELATIONS} JOIN pg_class c ON c.oid = t.relid",
        table,
    )
    if estimate <= EXACT_COUNT_LIMIT:
        row = await conn.fetchrow(f"SELECT count(*), coalesce(sum({total}), 0) FROM {table}")
        return int(row[0]), int(row[1])
    avg = await conn.fetchval(
        f"SELECT coalesce(avg({total}), 0) FROM {table} TABLESAMPLE SYSTEM (1)"
    )
    return int(estimate), int(estimate * avg)


async def measure(conn: asyncpg.Connection, levels: tuple[Level, ...]) -> list[TierNow]:
    """Rows, pings and bytes of every tier, from the live database."""
    tiers: list[TierNow] = []
    rows, _ = await _count(conn, "pings", "1")
    tiers.append(TierNow("raw_rows", rows, rows, await _bytes(conn, "pings")))
    rows, n = await _count(conn, "pings_packed", "n")
    tiers.append(TierNow("raw_packed", rows, n, await _bytes(conn, "pings_packed")))
    for lv in levels:
        table = lv.tier
        if await conn.fetchval("SELECT to_regclass($1)", table) is None:
            tiers.append(TierNow(table, 0, 0, 0))  # created by the next ladder round
            continue
        rows, n = await _count(conn, table, "count")
        size = await _bytes(conn, table)
        packed = f"segments_packed_l{lv.level}"
        if await conn.fetchval("SELECT to_regclass($1)", packed) is None:
            tiers.append(TierNow(table, rows, n, size))
            continue
        _, k_pings = await _count(conn, packed, "pings")
        _, k_segs = await _count(conn, packed, "n")
        k_size = await _bytes(conn, packed)
        tiers.append(TierNow(table, rows + k_segs, n + k_pings, size + k_size, k_segs, k_size))
    rows, n = await _count(conn, "hourly_summaries", "count")
    tiers.append(TierNow("hourly", rows, n, await _bytes(conn, "hourly_summaries")))
    return tiers


async def storage_report(
    conn: asyncpg.Connection, targets: int, interval_s: float, years: float
) -> dict[str, Any]:
    """Everything GET /storage and `pingtrack storage` show, as plain JSON-ready data."""
    check_parameters(targets, interval_s, years)
    ladder = await load_ladder(conn)
    now = await measure(conn, ladder.levels)
    figures = figures_from(now, ladder.levels)
    projection = project(ladder, figures, targets, interval_s, years)
    return {
        "now": {
            "tiers": [
                asdict(t)
                | {
                    "bytes_per_row": _round(t.bytes_per_row),
                    "bytes_per_ping": _round(t.bytes_per_ping),
                }
                for t in now
            ],
            "total_bytes": sum(t.bytes for t in now),
        },
        "figures": asdict(figures),
        "ladder": ladder_content(ladder),
        "projection": asdict(projection) | {"contraction": round(projection.contraction, 1)},
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)

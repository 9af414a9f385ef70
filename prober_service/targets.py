"""Reading target specs from PostgreSQL, the source of truth."""

from __future__ import annotations

from collections.abc import Collection

import asyncpg

from shared.codec import TargetSpec

_COLUMNS = "id, host(address) AS address, interval_ms, timeout_ms, state, rev"


def _spec(row: asyncpg.Record) -> TargetSpec:
    return TargetSpec(
        id=row["id"],
        address=row["address"],
        interval_ms=row["interval_ms"],
        timeout_ms=row["timeout_ms"],
        state=row["state"],
        rev=row["rev"],
    )


async def load_targets(pool: asyncpg.Pool, also: Collection[int] = ()) -> list[TargetSpec]:
    """Every active target, plus the current state of the targets in `also`."""
    rows = await pool.fetch(
        f"SELECT {_COLUMNS} FROM targets WHERE state = 'active' OR id = ANY($1::bigint[])",
        list(also),
    )
    return [_spec(row) for row in rows]

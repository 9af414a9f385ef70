"""Reading target specs from PostgreSQL, the source of truth."""

from __future__ import annotations

from collections.abc import Collection

import asyncpg

from shared.codec import SPEC_FIELDS, TargetSpec
from shared.constants import SHARD_COUNT

# TargetSpec.address is the IP literal or the hostname (empty for http, which has its url).
_ADDRESS = "coalesce(host(address), hostname, '') AS address"
_COLUMNS = ", ".join(_ADDRESS if f.name == "address" else f.name for f in SPEC_FIELDS)


def _spec(row: asyncpg.Record) -> TargetSpec:
    return TargetSpec(**{f.name: row[f.name] for f in SPEC_FIELDS})


async def load_targets(
    pool: asyncpg.Pool,
    also: Collection[int] = (),
    shards: Collection[int] | None = None,
) -> list[TargetSpec]:
    """Every active target (of `shards`, when given), plus the current state of those in `also`."""
    if shards is None:
        query = f"SELECT {_COLUMNS} FROM targets WHERE state = 'active' OR id = ANY($1::bigint[])"
        rows = await pool.fetch(query, list(also))
    else:
        query = (
            f"SELECT {_COLUMNS} FROM targets WHERE (state = 'active' AND id % $3 = ANY($2::int[]))"
            " OR id = ANY($1::bigint[])"
        )
        rows = await pool.fetch(query, list(also), sorted(shards), SHARD_COUNT)
    return [_spec(row) for row in rows]

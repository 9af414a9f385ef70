"""Reading target specs from PostgreSQL, the source of truth."""

from __future__ import annotations

from collections.abc import Collection

import asyncpg

from shared.codec import TargetSpec
from shared.constants import SHARD_COUNT

# `address` is the IP literal or the hostname (empty for http, which has its url).
_COLUMNS = (
    "id, coalesce(host(address), hostname, '') AS address, interval_ms, timeout_ms, state, rev,"
    " kind, port, url, family, http_method, expect_status, expect_body"
)


def _spec(row: asyncpg.Record) -> TargetSpec:
    return TargetSpec(
        id=row["id"],
        address=row["address"],
        interval_ms=row["interval_ms"],
        timeout_ms=row["timeout_ms"],
        state=row["state"],
        rev=row["rev"],
        kind=row["kind"],
        port=row["port"],
        url=row["url"],
        family=row["family"],
        http_method=row["http_method"],
        expect_status=row["expect_status"],
        expect_body=row["expect_body"],
    )


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

"""The probers of this deployment, live or recently gone, with their counters.

Read from the heartbeats probers write to PostgreSQL (prober_service/membership.py),
for GET /fleet, /metrics and `pingtrack fleet`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from api_service.times import iso_offset
from shared.constants import PROBER_EXPIRY_S


@dataclass(frozen=True, slots=True)
class ProberRow:
    id: str
    started_at: datetime
    last_seen: datetime
    age_s: float  # since the last heartbeat, by the database clock
    shards: int
    stats: dict[str, Any]

    @property
    def live(self) -> bool:
        return self.age_s < PROBER_EXPIRY_S


async def fleet_rows(pool: asyncpg.Pool, fleet: str) -> list[ProberRow]:
    """Every prober row of the fleet (rows of long-dead probers are removed by the others)."""
    rows = await pool.fetch(
        "SELECT id, started_at, last_seen, cardinality(shards) AS shards, stats::text AS stats,"
        " extract(epoch FROM now() - last_seen)::float8 AS age_s"
        " FROM probers WHERE fleet = $1 ORDER BY id",
        fleet,
    )
    return [
        ProberRow(
            id=row["id"],
            started_at=row["started_at"],
            last_seen=row["last_seen"],
            age_s=max(0.0, row["age_s"]),
            shards=row["shards"],
            stats=json.loads(row["stats"]),
        )
        for row in rows
    ]


def fleet_content(rows: list[ProberRow]) -> dict[str, Any]:
    """What /fleet answers: live probers first."""
    probers = [
        {
            "id": row.id,
            "live": row.live,
            "started_at": iso_offset(row.started_at),
            "last_seen": iso_offset(row.last_seen),
            "heartbeat_age_s": round(row.age_s, 3),
            "shards": row.shards,
            "stats": row.stats,
        }
        for row in sorted(rows, key=lambda r: (not r.live, r.id))
    ]
    return {"live": sum(1 for row in rows if row.live), "probers": probers}

"""Target operations, shared by the REST routes and the CLI.

Every change is committed first, in one statement or transaction that bumps
`rev`, and then published as a command (see publisher.py for what happens
when the broker is away).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from api_service import rules
from api_service.publisher import CommandPublisher
from shared.codec import TargetSpec
from shared.errors import Conflict, InvalidInput, NotFound
from shared.settings import Settings


class _Keep(enum.Enum):
    KEEP = 0


KEEP = _Keep.KEEP


@dataclass(frozen=True, slots=True)
class LastPing:
    ts: datetime
    rtt_us: int | None
    # pings sent, and lost, in the last minute
    recent: int = 0
    recent_lost: int = 0


@dataclass(frozen=True, slots=True)
class Target:
    id: int
    address: str
    name: str | None
    interval_ms: int
    timeout_ms: int
    state: str
    rev: int
    created_at: datetime
    updated_at: datetime
    stopped_at: datetime | None
    last_ping: LastPing | None

    def spec(self) -> TargetSpec:
        return TargetSpec(
            self.id, self.address, self.interval_ms, self.timeout_ms, self.state, self.rev
        )


@dataclass(frozen=True, slots=True)
class Purged:
    id: int
    rows_deleted: dict[str, int]  # per history table


# Every table keyed by target_id holds history of one target (raw pings and
# whatever tiers are built from them), so a purge finds them all here rather
# than keeping a list that each new tier would have to extend.
_PER_TARGET_TABLES = """
    SELECT c.oid::regclass::text AS name
    FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'target_id' AND NOT a.attisdropped
    WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND n.nspname = current_schema()
    ORDER BY 1"""


_COLUMNS = """t.id, host(t.address) AS address, t.name, t.interval_ms, t.timeout_ms,
    t.state, t.rev, t.created_at, t.updated_at, t.stopped_at,
    p.ts AS last_ts, p.rtt_us AS last_rtt_us, m.recent, m.recent_lost"""


def _with_last_ping(source: str, where: str = "true", order: str = "", cte: str = "") -> str:
    # LATERAL + index on (target_id, ts): one backward index probe per target,
    # so listing thousands of targets stays one fast query.
    return f"""{cte} SELECT {_COLUMNS}
        FROM {source} t
        LEFT JOIN LATERAL (
            SELECT ts, rtt_us FROM pings WHERE target_id = t.id ORDER BY ts DESC LIMIT 1
        ) p ON true
        LEFT JOIN LATERAL (
            SELECT count(*)::int AS recent,
                   count(*) FILTER (WHERE rtt_us IS NULL)::int AS recent_lost
            FROM pings WHERE target_id = t.id AND ts >= now() - interval '1 minute'
        ) m ON true
        WHERE {where} {order}"""


_SELECT_ONE = _with_last_ping("targets", "t.id = $1")
_SELECT_MANY = _with_last_ping("targets", "t.state = ANY($1::text[])", "ORDER BY t.id")


def _target(row: asyncpg.Record) -> Target:
    last = None
    if row["last_ts"] is not None:
        last = LastPing(row["last_ts"], row["last_rtt_us"], row["recent"], row["recent_lost"])
    return Target(
        id=row["id"],
        address=row["address"],
        name=row["name"],
        interval_ms=row["interval_ms"],
        timeout_ms=row["timeout_ms"],
        state=row["state"],
        rev=row["rev"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        stopped_at=row["stopped_at"],
        last_ping=last,
    )


class Targets:
    """Create, read and change targets; the database first, then the command."""

    def __init__(self, pool: asyncpg.Pool, publisher: CommandPublisher, settings: Settings) -> None:
        self._pool = pool
        self._publisher = publisher
        self._settings = settings

    async def create(
        self,
        address: str,
        *,
        name: str | None = None,
        interval_s: float = 1.0,
        timeout_s: float | None = None,
    ) -> Target:
        address = rules.parse_address(address)
        values = (
            address,
            rules.clean_name(name),
            rules.interval_ms(interval_s),
            rules.timeout_ms(self._settings.default_timeout_s if timeout_s is None else timeout_s),
        )
        async with self._pool.acquire() as conn:
            try:
                row = await conn.fetchrow(
                    _with_last_ping(
                        "changed",
                        cte="""WITH changed AS (
                            INSERT INTO targets (address, name, interval_ms, timeout_ms)
                            VALUES ($1::inet, $2, $3, $4) RETURNING *)""",
                    ),
                    *values,
                )
            except asyncpg.UniqueViolationError:
                existing = await conn.fetchval(
                    "SELECT id FROM targets WHERE address = $1::inet AND state = ANY($2::text[])",
                    address,
                    list(rules.LIVE_STATES),
                )
                raise Conflict(
                    f"address {address} is already tracked by target {existing}"
                ) from None
        return await self._committed(_target(row))

    async def list(self, state: str | None = None) -> list[Target]:
        states = rules.parse_state_filter(state)
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(_SELECT_MANY, list(states))
        return [_target(row) for row in rows]

    async def get(self, target_id: int) -> Target:
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow(_SELECT_ONE, target_id)
        if row is None:
            raise NotFound(f"target {target_id} does not exist")
        return _target(row)

    async def update(
        self,
        target_id: int,
        *,
        name: str | _Keep | None = KEEP,
        interval_s: float | None = None,
        timeout_s: float | None = None,
    ) -> Target:
        if name is KEEP and interval_s is None and timeout_s is None:
            raise InvalidInput("nothing to change: give name, interval_s or timeout_s")
        new_name = None if name is KEEP else rules.clean_name(name)
        new_interval = None if interval_s is None else rules.interval_ms(interval_s)
        new_timeout = None if timeout_s is None else rules.timeout_ms(timeout_s)
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow(
                _with_last_ping(
                    "changed",
                    cte="""WITH changed AS (UPDATE targets SET
                           name = CASE WHEN $2 THEN $3 ELSE name END,
                           interval_ms = coalesce($4, interval_ms),
                           timeout_ms = coalesce($5, timeout_ms),
                           rev = rev + 1, updated_at = now()
                        WHERE id = $1 AND state <> 'deleted' RETURNING *)""",
                ),
                target_id,
                name is not KEEP,
                new_name,
                new_interval,
                new_timeout,
            )
            if row is None:
                await self._explain_missing(conn, target_id)
        return await self._committed(_target(row))

    async def _explain_missing(self, conn: asyncpg.Connection, target_id: int) -> None:
        if await conn.fetchval("SELECT 1 FROM targets WHERE id = $1", target_id) is None:
            raise NotFound(f"target {target_id} does not exist")
        raise Conflict(f"target {target_id} is deleted; it cannot be changed")

    async def pause(self, target_id: int) -> Target:
        return await self.transition(target_id, "pause")

    async def resume(self, target_id: int) -> Target:
        return await self.transition(target_id, "resume")

    async def stop(self, target_id: int) -> Target:
        return await self.transition(target_id, "stop")

    async def delete(self, target_id: int) -> Target:
        """Soft delete: the target leaves every listing, its history stays."""
        return await self.transition(target_id, "delete")

    async def transition(self, target_id: int, action: str) -> Target:
        """Apply a state change; a target already in the wanted state is left alone."""
        async with self._pool.acquire() as conn, conn.transaction():
            current = await conn.fetchval(
                "SELECT state FROM targets WHERE id = $1 FOR UPDATE", target_id
            )
            if current is None:
                raise NotFound(f"target {target_id} does not exist")
            state = rules.next_state(action, current, target_id)
            if state is None:
                row = await conn.fetchrow(_SELECT_ONE, target_id)
            else:
                row = await conn.fetchrow(
                    _with_last_ping(
                        "changed",
                        cte="""WITH changed AS (
                            UPDATE targets SET state = $2, rev = rev + 1, updated_at = now(),
                               stopped_at = CASE WHEN $2 IN ('stopped', 'deleted')
                                            THEN coalesce(stopped_at, now()) END
                            WHERE id = $1 RETURNING *)""",
                    ),
                    target_id,
                    state,
                )
        target = _target(row)
        return target if state is None else await self._committed(target)

    async def purge(self, target_id: int) -> Purged:
        """Remove the target and its whole history; probers are told it is deleted."""
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                _with_last_ping("targets", "t.id = $1 FOR UPDATE OF t"), target_id
            )
            if row is None:
                raise NotFound(f"target {target_id} does not exist")
            deleted: dict[str, int] = {}
            for table in await conn.fetch(_PER_TARGET_TABLES):
                status = await conn.execute(
                    f"DELETE FROM {table['name']} WHERE target_id = $1", target_id
                )
                deleted[table["name"]] = int(status.split()[-1])
            await conn.execute("DELETE FROM targets WHERE id = $1", target_id)
        target = _target(row)
        gone = TargetSpec(
            target.id,
            target.address,
            target.interval_ms,
            target.timeout_ms,
            "deleted",
            target.rev + 1,
        )
        await self._publisher.publish(gone)
        return Purged(target_id, deleted)

    async def _committed(self, target: Target) -> Target:
        await self._publisher.publish(target.spec())
        return target

"""Target operations, shared by the REST routes and the CLI.

Every change is committed first, in one statement or transaction that bumps
`rev`, and then published as a command (see publisher.py for what happens
when the broker is away).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg

from api_service.targets import drafts, states
from api_service.targets.drafts import Draft
from api_service.targets.probe import PROBE_FIELDS, Probe, probe_of_row
from api_service.targets.publisher import CommandPublisher
from shared.codec import TargetSpec
from shared.errors import Conflict, InvalidInput, NotFound
from shared.settings import Settings
from shared.target_fields import options_of


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
    address: str | None
    name: str | None
    interval_ms: int
    timeout_ms: int
    state: str
    rev: int
    created_at: datetime
    updated_at: datetime
    stopped_at: datetime | None
    last_ping: LastPing | None
    probe: Probe = field(default_factory=Probe)
    tags: tuple[str, ...] = ()

    @property
    def hostname(self) -> str | None:
        return self.probe.hostname

    @property
    def kind(self) -> str:
        return self.probe.kind

    def draft(self) -> Draft:
        return Draft(self.probe, self.name, self.interval_ms, self.timeout_ms, self.tags)

    def spec(self, state: str | None = None, rev: int | None = None) -> TargetSpec:
        p = self.probe
        # `address`: the IP or the hostname; empty for http, which probes its url.
        return TargetSpec(
            self.id,
            p.address or p.hostname or "",
            self.interval_ms,
            self.timeout_ms,
            state or self.state,
            rev or self.rev,
            **options_of(p),
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


_COLUMNS = ", ".join(
    (
        "t.id, t.name, t.interval_ms, t.timeout_ms, t.state, t.rev, t.created_at",
        "t.updated_at, t.stopped_at, t.tags",
        *(f.column("t") for f in PROBE_FIELDS),
        "p.ts AS last_ts, p.rtt_us AS last_rtt_us, m.recent, m.recent_lost",
    )
)


def with_last_ping(source: str, where: str = "true", order: str = "", cte: str = "") -> str:
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


_SELECT_ONE = with_last_ping("targets", "t.id = $1")
_SELECT_MANY = with_last_ping(
    "targets", "t.state = ANY($1::text[]) AND t.tags @> $2::text[]", "ORDER BY t.id"
)
# The columns of one draft and their types: $1 .. $n of the statements below
# (draft_values), tags last.
DRAFT_COLUMNS: tuple[tuple[str, str], ...] = (
    *((f.name, f.sql) for f in PROBE_FIELDS),
    ("name", "text"),
    ("interval_ms", "int"),
    ("timeout_ms", "int"),
    ("tags", "text[]"),
)
_DRAFT_NAMES = ", ".join(name for name, _ in DRAFT_COLUMNS)
_DRAFT_VALUES = ", ".join(f"${i}::{sql}" for i, (_, sql) in enumerate(DRAFT_COLUMNS, 1))
# The live target that holds an identity (see migration 0013).
_HOLDER = """SELECT id FROM targets WHERE state IN ('active', 'paused') AND id <> $6
    AND kind = $1 AND coalesce(host(address), hostname) = $2 AND coalesce(port, 0) = $3
    AND coalesce(url, '') = $4 AND family = $5"""


def target_of(row: asyncpg.Record) -> Target:
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
        probe=probe_of_row(row),
        tags=tuple(row["tags"]),
    )


def draft_values(d: Draft) -> tuple[object, ...]:
    """The values of DRAFT_COLUMNS, in their order."""
    probe = (getattr(d.probe, f.name) for f in PROBE_FIELDS)
    return (*probe, d.name, d.interval_ms, d.timeout_ms, list(d.tags))


async def conflict(conn: asyncpg.Connection, probe: Probe, target_id: int = 0) -> Conflict:
    """The Conflict naming the live target that already probes `probe`."""
    kind, host, port, url, family = probe.identity()
    holder = await conn.fetchval(_HOLDER, kind, host, port or 0, url or "", family, target_id)
    return Conflict(f"{probe.describe()} is already tracked by target {holder}")


class Targets:
    """Create, read and change targets; the database first, then the command."""

    def __init__(self, pool: asyncpg.Pool, publisher: CommandPublisher, settings: Settings) -> None:
        self._pool = pool
        self._publisher = publisher
        self._settings = settings

    @property
    def pool(self) -> asyncpg.Pool:
        return self._pool

    @property
    def publisher(self) -> CommandPublisher:
        return self._publisher

    @property
    def settings(self) -> Settings:
        return self._settings

    async def create(self, address: str | None = None, /, **fields: Any) -> Target:
        """Create from wire fields (address, hostname, kind, port, url, ..., tags)."""
        given = {"address": address, **fields} if address is not None else fields
        return await self.create_draft(drafts.draft(given, self._settings))

    async def create_draft(self, draft: Draft) -> Target:
        async with self._pool.acquire() as conn:
            try:
                row = await conn.fetchrow(
                    with_last_ping(
                        "changed",
                        cte=f"""WITH changed AS (INSERT INTO targets ({_DRAFT_NAMES})
                            VALUES ({_DRAFT_VALUES}) RETURNING *)""",
                    ),
                    *draft_values(draft),
                )
            except asyncpg.UniqueViolationError:
                raise await conflict(conn, draft.probe) from None
        return await self._committed(target_of(row))

    async def list(self, state: str | None = None, tags: Sequence[str] = ()) -> list[Target]:
        """Targets in `state` (see states.parse_state_filter) carrying every one of `tags`."""
        shown = states.parse_state_filter(state)
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(_SELECT_MANY, list(shown), list(tags))
        return [target_of(row) for row in rows]

    async def get(self, target_id: int) -> Target:
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow(_SELECT_ONE, target_id)
        if row is None:
            raise NotFound(f"target {target_id} does not exist")
        return target_of(row)

    async def update(self, target_id: int, changes: Mapping[str, Any]) -> Target:
        """Change any wire fields; the result is checked whole, as a new target would be."""
        if not changes:
            raise InvalidInput("nothing to change: give at least one field")
        async with self._pool.acquire() as conn:
            try:
                async with conn.transaction():
                    row = await conn.fetchrow(
                        with_last_ping(
                            "targets", "t.id = $1 AND t.state <> 'deleted' FOR UPDATE OF t"
                        ),
                        target_id,
                    )
                    if row is None:
                        await self._explain_missing(conn, target_id)
                    new = drafts.changed(target_of(row).draft(), changes, self._settings)
                    row = await conn.fetchrow(
                        with_last_ping(
                            "changed",
                            cte=f"""WITH changed AS (UPDATE targets SET
                                ({_DRAFT_NAMES}) = ({_DRAFT_VALUES}),
                                rev = rev + 1, updated_at = now()
                                WHERE id = ${len(DRAFT_COLUMNS) + 1} RETURNING *)""",
                        ),
                        *draft_values(new),
                        target_id,
                    )
            except asyncpg.UniqueViolationError:
                raise await conflict(conn, new.probe, target_id) from None
        return await self._committed(target_of(row))

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
            state = states.next_state(action, current, target_id)
            if state is None:
                row = await conn.fetchrow(_SELECT_ONE, target_id)
            else:
                row = await conn.fetchrow(
                    with_last_ping(
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
        target = target_of(row)
        return target if state is None else await self._committed(target)

    async def purge(self, target_id: int) -> Purged:
        """Remove the target and its whole history; probers are told it is deleted."""
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                with_last_ping("targets", "t.id = $1 FOR UPDATE OF t"), target_id
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
        target = target_of(row)
        await self._publisher.publish(target.spec("deleted", target.rev + 1))
        return Purged(target_id, deleted)

    async def _committed(self, target: Target) -> Target:
        await self._publisher.publish(target.spec())
        return target

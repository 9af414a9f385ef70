"""Changes to many targets at once: creation in bulk, pause and resume by tag.

Like single changes, each is committed first (one transaction) and published
after, here on one channel with the confirms awaited together.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from api_service.targets import drafts, states
from api_service.targets.drafts import Draft
from api_service.targets.publisher import CommandPublisher
from api_service.targets.service import (
    DRAFT_COLUMNS,
    Target,
    conflict,
    draft_values,
    target_of,
    with_last_ping,
)
from shared.errors import Conflict, InvalidInput, PingtrackError

log = logging.getLogger(__name__)

MAX_BULK = 5000

# One row per draft from parallel arrays; tags travel space-joined (a tag has
# no space) because unnest cannot take an array of arrays apart row by row.
_NAMES = ", ".join(name for name, _ in DRAFT_COLUMNS)
_ARRAYS = ", ".join(
    f"${i}::{'text' if name == 'tags' else sql}[]" for i, (name, sql) in enumerate(DRAFT_COLUMNS, 1)
)
_ROW = ", ".join("string_to_array(tags, ' ')" if n == "tags" else n for n, _ in DRAFT_COLUMNS)
_INSERT = with_last_ping(
    "changed",
    cte=f"""WITH changed AS (INSERT INTO targets ({_NAMES})
        SELECT {_ROW} FROM unnest({_ARRAYS}) AS x({_NAMES})
        RETURNING *)""",
)
# Live targets already holding one of the identities asked for.
_HELD = """SELECT kind, coalesce(host(address), hostname) AS host, port, url, family, id
    FROM targets
    WHERE state IN ('active', 'paused')
      AND (kind, coalesce(host(address), hostname), coalesce(port, 0), coalesce(url, ''), family)
          IN (SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::text[], $5::text[]))"""


@dataclass(frozen=True, slots=True)
class ItemResult:
    index: int
    status: int
    target: Target | None = None
    error: PingtrackError | None = None


def _columns(items: Sequence[Draft]) -> list[list[object]]:
    """Column-wise values for unnest(); tags travel space-joined, since unnest()
    cannot take an array of arrays of different lengths."""
    cols: list[list[object]] = [[] for _ in DRAFT_COLUMNS]
    for d in items:
        row = (*draft_values(d)[:-1], " ".join(d.tags))
        for col, value in zip(cols, row, strict=True):
            col.append(value)
    return cols


def _key(identity: tuple[object, ...]) -> tuple[object, ...]:
    kind, host, port, url, family = identity
    return (kind, host, port or 0, url or "", family)


async def _held(conn: asyncpg.Connection, items: Sequence[Draft]) -> dict[tuple[object, ...], int]:
    keys = [_key(d.probe.identity()) for d in items]
    rows = await conn.fetch(_HELD, *(list(col) for col in zip(*keys, strict=True)))
    return {_key(tuple(r)[:5]): r["id"] for r in rows}


async def create_many(
    pool: asyncpg.Pool, publisher: CommandPublisher, items: Sequence[Draft | PingtrackError]
) -> list[ItemResult]:
    """Create every valid draft in one transaction; the others get their error."""
    if len(items) > MAX_BULK:
        raise InvalidInput(f"at most {MAX_BULK} targets per call, got {len(items)}")
    results: dict[int, ItemResult] = {}
    first_of: dict[tuple[object, ...], int] = {}
    todo: list[tuple[int, Draft]] = []
    for index, item in enumerate(items):
        if isinstance(item, PingtrackError):
            results[index] = ItemResult(index, 422, error=item)
            continue
        key = _key(item.probe.identity())
        if key in first_of:
            message = f"{item.probe.describe()} is item {first_of[key]} of this call too"
            results[index] = ItemResult(index, 409, error=Conflict(message))
            continue
        first_of[key] = index
        todo.append((index, item))
    created: list[Target] = []
    if not todo:
        return [results[i] for i in range(len(items))]
    async with pool.acquire() as conn:
        for attempt in (1, 2):  # a concurrent create of the same probe: check again once
            try:
                async with conn.transaction():
                    held = await _held(conn, [d for _, d in todo])
                    fresh = [(i, d) for i, d in todo if _key(d.probe.identity()) not in held]
                    rows = await conn.fetch(_INSERT, *_columns([d for _, d in fresh]))
                break
            except asyncpg.UniqueViolationError:
                if attempt == 2:
                    raise
        for index, d in todo:
            if _key(d.probe.identity()) in held:
                results[index] = ItemResult(index, 409, error=await conflict(conn, d.probe))
    by_key = {_key(t.probe.identity()): t for t in map(target_of, rows)}
    for index, d in fresh:
        target = by_key[_key(d.probe.identity())]
        created.append(target)
        results[index] = ItemResult(index, 201, target=target)
    confirmed = await publisher.publish_many([t.spec() for t in created])
    log.info("bulk create", extra={"targets_created": len(created), "published": confirmed})
    return [results[i] for i in range(len(items))]


async def transition_by_tags(
    pool: asyncpg.Pool, publisher: CommandPublisher, action: str, tags: Sequence[str]
) -> list[int]:
    """Pause or resume every target carrying all `tags`; the ids that changed."""
    if action not in ("pause", "resume"):
        raise InvalidInput(f"only pause and resume work by tag, not {action}")
    wanted = drafts.parse_tags(list(tags))
    if not wanted:
        raise InvalidInput(f"give at least one ?tag= to {action} by tag")
    sources, state = states.transition(action)
    rows = await pool.fetch(
        with_last_ping(
            "changed",
            order="ORDER BY t.id",
            cte="""WITH changed AS (UPDATE targets SET state = $1, rev = rev + 1,
                    updated_at = now()
                WHERE state = ANY($2::text[]) AND tags @> $3::text[] RETURNING *)""",
        ),
        state,
        list(sources),
        wanted,
    )
    targets = [target_of(row) for row in rows]
    await publisher.publish_many([t.spec() for t in targets])
    return [t.id for t in targets]

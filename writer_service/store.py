"""The database side of the writer: exactly-once inserts of result batches."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg

from shared.backoff import retry
from shared.codec import ResultBatch
from shared.constants import TOO_LATE
from shared.db import TRANSIENT_DB_ERRORS, create_pool
from shared.dead_letters import ReasonCount, record_reasons
from shared.settings import Settings
from writer_service.rows import (
    COLUMNS,
    Row,
    batch_uuid,
    columns,
    day_to_date,
    days_of,
    decode_timestamptz,
    encode_timestamptz,
    rows_of_all,
    split_repeats,
)

log = logging.getLogger(__name__)

STAGING_TABLE = "pings_staging"
# The dedup window (settings.dedup_window, a week by default): a batch id is
# remembered that long after its batch was stored, then pruned. A ping is
# stored after it was sent, so while a ping is younger than the window its
# batch's id, if that batch was stored before, is still known, and a second
# delivery is recognised. Older results could be a replay nothing can
# recognise any more (the primary key on pings guards only days still in row
# form, not packed ones), so the writer refuses them: dead-lettered as
# too_late, never written twice. The margin covers a prober clock ahead of the
# database's and a prune running between our check and our claim.
LATE_MARGIN = timedelta(hours=1)
HOUR = timedelta(hours=1)
PRUNE_CHUNK = 5000


def too_late_reason(total: int, late: ResultBatch, oldest_us: int, dedup_window: timedelta) -> str:
    """The dead-letter reason for `late`, the part of a message of `total` pings
    timed before `oldest_us`."""
    before = datetime.fromtimestamp(oldest_us / 1e6, UTC).isoformat(timespec="seconds")
    extra = [
        f"{n} {what}"
        for n, what in ((len(late.details), "probe details"), (len(late.addresses), "addresses"))
        if n
    ]
    return (
        f"{TOO_LATE}: {len(late)} of {total} pings"
        f"{' (with ' + ', '.join(extra) + ')' if extra else ''} from before {before},"
        f" past the {dedup_window / HOUR:g} h dedup window less {LATE_MARGIN / HOUR:g} h:"
        " a replay of them could not be recognised"
    )


_CLAIM_IDS = """
    INSERT INTO ingested_batches (batch_id, rows)
    SELECT * FROM unnest($1::uuid[], $2::integer[])
    ON CONFLICT DO NOTHING
    RETURNING batch_id"""

# Resolutions and probe details are few beside pings: a plain insert, and a
# repeat (the same result resent under a new batch id) is skipped.
_INSERT_ADDRESSES = """
    INSERT INTO target_addresses (target_id, ts, address, error)
    SELECT * FROM unnest($1::bigint[], $2::timestamptz[], $3::inet[], $4::text[])
    ON CONFLICT DO NOTHING"""

_INSERT_DETAILS = """
    INSERT INTO probe_details (target_id, ts, status, ttfb_us, cert_expires_at, error)
    SELECT * FROM unnest($1::bigint[], $2::timestamptz[], $3::smallint[], $4::integer[],
                         $5::timestamptz[], $6::text[])
    ON CONFLICT DO NOTHING"""

_PRUNE = """
    DELETE FROM ingested_batches WHERE batch_id IN (
        SELECT batch_id FROM ingested_batches WHERE received_at < now() - $1::interval
        LIMIT $2)"""


async def prepare_connection(conn: asyncpg.Connection) -> None:
    """timestamptz travels as epoch µs ints: 3x faster COPY than datetimes."""
    await conn.set_type_codec(
        "timestamptz",
        schema="pg_catalog",
        encoder=encode_timestamptz,
        decoder=decode_timestamptz,
        format="tuple",
    )


async def create_writer_pool(settings: Settings, *, timeout: float | None = 30.0) -> asyncpg.Pool:
    """A small pool that connects on demand (no background reconnect noise during an
    outage), checked once with retry so a start-up failure surfaces here."""
    pool = await create_pool(settings, min_size=0, max_size=2, init=prepare_connection)

    async def check() -> None:
        async with pool.acquire() as conn:
            await conn.fetchval("SELECT 1")

    try:
        await retry(
            check, what="connect to PostgreSQL", retry_on=TRANSIENT_DB_ERRORS, timeout=timeout
        )
    except BaseException:
        await pool.close()
        raise
    return pool


async def copy_via_staging(conn: asyncpg.Connection, rows: Iterable[Row]) -> int:
    """COPY into a temp table, then insert what pings lacks. Call inside a transaction."""
    await conn.execute(
        f"CREATE TEMP TABLE IF NOT EXISTS {STAGING_TABLE} (LIKE pings) ON COMMIT DELETE ROWS"
    )
    await conn.copy_records_to_table(STAGING_TABLE, records=rows, columns=COLUMNS)
    status = await conn.execute(
        f"INSERT INTO pings SELECT * FROM {STAGING_TABLE} ON CONFLICT DO NOTHING"
    )
    return int(status.split()[-1])


@dataclass(frozen=True, slots=True)
class WriteOutcome:
    fresh: frozenset[bytes]  # batch ids stored now; any other batch given was a duplicate
    rows: int  # rows inserted into pings
    addresses: int = 0  # resolution records in the fresh batches
    details: int = 0  # probe detail rows in the fresh batches


class PingStore:
    """Writes groups of batches in one transaction each; a batch id is stored once,
    and remembered for `dedup_window`."""

    def __init__(self, pool: asyncpg.Pool, *, dedup_window: timedelta) -> None:
        if dedup_window <= LATE_MARGIN:
            raise ValueError(f"the dedup window must be longer than {LATE_MARGIN}")
        self._pool = pool
        self._window = dedup_window
        self._known_days: set[int] = set()

    @property
    def dedup_window(self) -> timedelta:
        return self._window

    async def oldest_accepted(self) -> int:
        """µs since the epoch, by the database's clock: results timed before this
        are too late to store (see LATE_MARGIN)."""
        async with self._pool.acquire() as conn:
            oldest: int = await conn.fetchval(
                "SELECT now() - $1::interval", self._window - LATE_MARGIN
            )
        return oldest

    async def write(self, batches: Sequence[ResultBatch]) -> WriteOutcome:
        """Store the batches not seen before; raise (and store nothing) on failure."""
        firsts, _ = split_repeats(batches)
        days = set().union(*(days_of(b) for b in firsts))
        await self._ensure_days(days)
        try:
            return await self._write_once(firsts)
        except asyncpg.CheckViolationError:
            # "no partition found": a partition we knew of was dropped meanwhile.
            self._known_days.clear()
            await self._ensure_days(days)
            return await self._write_once(firsts)

    async def _write_once(self, batches: list[ResultBatch]) -> WriteOutcome:
        async with self._pool.acquire() as conn, conn.transaction():
            claimed = await conn.fetch(
                _CLAIM_IDS, [batch_uuid(b) for b in batches], [len(b) for b in batches]
            )
            fresh_ids = {record["batch_id"].bytes for record in claimed}
            fresh = [b for b in batches if b.batch_id in fresh_ids]
            if not fresh:
                return WriteOutcome(frozenset(), 0)
            try:
                async with conn.transaction():  # a savepoint, so the fallback can go on
                    await conn.copy_records_to_table(
                        "pings", records=rows_of_all(fresh), columns=COLUMNS
                    )
                rows = sum(len(b) for b in fresh)
            except asyncpg.UniqueViolationError:
                # The same ping in two batches (a prober resent it under a new id).
                rows = await copy_via_staging(conn, rows_of_all(fresh))
                log.info(
                    "overlapping pings skipped",
                    extra={"batches": len(fresh), "skipped": sum(map(len, fresh)) - rows},
                )
            addresses = [r for b in fresh for r in b.addresses]
            if addresses:
                await conn.execute(_INSERT_ADDRESSES, *columns(addresses))
            details = [d for b in fresh for d in b.details]
            if details:
                await conn.execute(_INSERT_DETAILS, *columns(details))
            return WriteOutcome(frozenset(fresh_ids), rows, len(addresses), len(details))

    async def _ensure_days(self, days: set[int]) -> None:
        missing = sorted(days - self._known_days)
        if not missing:
            return
        async with self._pool.acquire() as conn:
            for day in missing:
                when = day_to_date(day)
                created = await conn.fetchval("SELECT ensure_ping_partitions($1, $1)", when)
                if created:
                    log.info("created ping partition", extra={"day": when.isoformat()})
                self._known_days.add(day)

    async def ping(self) -> bool:
        async with self._pool.acquire(timeout=10) as conn:
            return bool(await conn.fetchval("SELECT 1", timeout=10) == 1)

    async def count_dead_letters(self, counts: dict[str, ReasonCount]) -> None:
        async with self._pool.acquire() as conn:
            await record_reasons(conn, counts)

    async def prune_batch_ids(self) -> int:
        """Forget batch ids older than the dedup window, in small chunks (no long
        lock or bloat spike)."""
        total = 0
        while True:
            async with self._pool.acquire() as conn:
                status = await conn.execute(_PRUNE, self._window, PRUNE_CHUNK)
            deleted = int(status.split()[-1])
            total += deleted
            if deleted < PRUNE_CHUNK:
                return total

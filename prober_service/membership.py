"""Fleet membership in PostgreSQL: heartbeats, shard claims, hand-overs.

Every heartbeat runs under one advisory lock per fleet, so a prober decides
from every claim committed before it: read the live members, give up the
shards assigned elsewhere (before the row stops listing them), claim the
assigned shards nobody lists, commit, then start pinging what was claimed.

A prober that cannot reach the database keeps pinging what it holds (a
database outage must not blind the fleet; nobody can take its shards without
the database either). A prober that was hung (its heartbeat loop did not
run) stops sending before the others consider it dead, until a heartbeat
tells it what it still owns.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from shared.constants import PROBER_EXPIRY_S
from shared.db import TRANSIENT_DB_ERRORS
from shared.errors import PingtrackError

from .scheduler import Scheduler
from .shards import Ownership, next_holding

log = logging.getLogger(__name__)

HEARTBEAT_S = 1.0
# A member unseen for this long is dead; its shards go to the others.
EXPIRY_S = PROBER_EXPIRY_S
# A prober stops sending this long before the others may consider it dead.
LEASE_MARGIN_S = 1.0
# Rows of probers dead this long are removed.
FORGET_S = 600.0

OnChange = Callable[[frozenset[int], frozenset[int]], Awaitable[None]]

_DB_ERRORS: tuple[type[BaseException], ...] = (*TRANSIENT_DB_ERRORS, asyncpg.PostgresError)

_LIVE = """
SELECT id, instance, shards FROM probers
WHERE fleet = $1 AND last_seen > now() - make_interval(secs => $2)
"""
_UPSERT = """
INSERT INTO probers (fleet, id, instance, shards, stats)
VALUES ($1, $2, $3, $4::int[], $5::jsonb)
ON CONFLICT (fleet, id) DO UPDATE
SET instance = EXCLUDED.instance, last_seen = now(), shards = EXCLUDED.shards,
    stats = EXCLUDED.stats,
    started_at = CASE WHEN probers.instance = EXCLUDED.instance
                      THEN probers.started_at ELSE now() END
"""
_FORGET = "DELETE FROM probers WHERE fleet = $1 AND last_seen < now() - make_interval(secs => $2)"


class DuplicateProber(PingtrackError):
    """Another live prober of this fleet uses the same prober id."""


class Membership:
    """This prober's row in `probers`, and the shards it claims through it."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        fleet: str,
        prober_id: str,
        ownership: Ownership,
        scheduler: Scheduler,
        on_change: OnChange,
        stats: Callable[[], dict[str, Any]],
        *,
        heartbeat_s: float = HEARTBEAT_S,
        expiry_s: float = EXPIRY_S,
    ) -> None:
        self._pool = pool
        self._fleet = fleet
        self._id = prober_id
        self._instance = uuid.uuid4()
        self._ownership = ownership
        self._scheduler = scheduler
        self._on_change = on_change
        self._stats = stats
        self._heartbeat_s = heartbeat_s
        self._expiry_s = expiry_s
        # Sending stops this long after the last heartbeat attempt began.
        self._lease_s = expiry_s - min(LEASE_MARGIN_S, expiry_s / 4)
        self.members = 0  # live members seen at the last heartbeat, this one included
        self.handovers = 0

    async def join(self) -> None:
        """Claim a first share.

        A live row with this id but another instance is either this prober's
        own previous life (killed, restarted: its row expires within the
        expiry) or a second prober with the same id (it keeps heartbeating):
        wait out one expiry, then raise DuplicateProber.
        """
        ownership = self._ownership
        ownership.release(ownership.shards)
        ownership.renew(0.0)
        loop = asyncio.get_running_loop()
        give_up = loop.time() + self._expiry_s + self._heartbeat_s
        while True:
            try:
                await self.heartbeat()
                break
            except DuplicateProber:
                if loop.time() > give_up:
                    raise
                await asyncio.sleep(self._heartbeat_s)
            except _DB_ERRORS as exc:
                raise PingtrackError(f"cannot join the prober fleet: {exc!r}") from exc
        log.info(
            "joined the prober fleet",
            extra={"prober_id": self._id, "members": self.members, "shards": len(ownership.shards)},
        )

    async def heartbeat(self) -> None:
        """One round: renew the row, follow the assignment, hand shards over."""
        started = time.monotonic()
        # Half the lease: a hanging database fails the round in time to renew.
        async with asyncio.timeout(self._lease_s / 2):
            added, removed = await self._claim(started)
        if added or removed:
            self.handovers += 1
            log.info(
                "shards handed over",
                extra={
                    "prober_id": self._id,
                    "added": len(added),
                    "removed": len(removed),
                    "held": len(self._ownership.shards),
                    "members": self.members,
                },
            )
            await self._on_change(added, removed)

    async def _claim(self, started: float) -> tuple[frozenset[int], frozenset[int]]:
        held = self._ownership.shards
        async with self._pool.acquire() as conn, conn.transaction():
            # A prober frozen inside this transaction (SIGSTOP, a paused VM) would
            # hold the fleet lock, and with it every member's heartbeat, until it
            # woke: the server ends such a session in half a lease instead.
            await conn.execute(
                "SELECT set_config('idle_in_transaction_session_timeout', $1, true)",
                f"{int(self._lease_s * 500)}ms",
            )
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtext('pingtrack.probers'), hashtext($1))",
                self._fleet,
            )
            others: dict[str, list[int]] = {}
            for row in await conn.fetch(_LIVE, self._fleet, self._expiry_s):
                if row["id"] != self._id:
                    others[row["id"]] = row["shards"]
                elif row["instance"] != self._instance:
                    raise DuplicateProber(
                        f"another live prober in fleet {self._fleet!r} uses the id {self._id!r}; "
                        "give each prober its own PINGTRACK_PROBER_ID"
                    )
            holding = next_holding(self._id, others)
            removed = held - holding
            if removed:
                # Stop pinging before the commit tells the others they may start.
                self._ownership.release(removed)
                self._scheduler.retain_owned()
            await conn.execute(
                _UPSERT,
                self._fleet,
                self._id,
                self._instance,
                sorted(holding),
                json.dumps(self._stats()),
            )
            await conn.execute(_FORGET, self._fleet, FORGET_S)
        added = holding - held
        self._ownership.acquire(added)
        self._ownership.renew(started + self._lease_s)
        self.members = len(others) + 1
        return added, removed

    async def run(self) -> None:
        """Heartbeat until cancelled; a failed round is retried at the next beat."""
        while True:
            await asyncio.sleep(self._heartbeat_s)
            try:
                await self.heartbeat()
            except DuplicateProber:
                raise
            except _DB_ERRORS as exc:
                log.warning(
                    "prober heartbeat failed; pinging on with the shards held",
                    extra={"prober_id": self._id, "error": repr(exc)},
                )
                # This process is alive, the database is not reachable: keep
                # pinging. Nobody can take these shards without the database.
                self._ownership.renew(time.monotonic() + self._lease_s)

    async def leave(self) -> None:
        """Delete the row at once, so the others take the shards without waiting."""
        self._ownership.release(self._ownership.shards)
        self._scheduler.retain_owned()
        try:
            await self._pool.execute(
                "DELETE FROM probers WHERE fleet = $1 AND id = $2 AND instance = $3",
                self._fleet,
                self._id,
                self._instance,
            )
        except _DB_ERRORS as exc:
            log.warning(
                "could not leave the fleet; the row expires instead",
                extra={"prober_id": self._id, "error": repr(exc)},
            )

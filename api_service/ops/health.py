"""Is this API able to serve, and is the whole pipeline healthy (GET /health).

`ready` answers the first question (False when the database or the broker is
unreachable: this instance cannot do its job; the route answers 503). The
body answers the second: `status` is `degraded` with one reason per problem
when the database, the broker, the writer (nobody consumes the results queue)
or the probers (none alive while targets are active) fail, when active
targets have gone stale (no stored ping for 3 intervals), when a live prober
could not send some slots for a reason of its own lately
(prober_service/local_failures.py), or when the ladder stopped, failed or
discarded marks unsummarised (ladder_health.py), or when the dead-letter
queue holds more than its threshold (dead_letters.py). A stopped writer does
not make the API unready: restarting the API would not help it.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from typing import Any

import aiormq
import asyncpg

from api_service.ops import dead_letters
from api_service.ops.dead_letters import reasons_check
from api_service.ops.ladder_health import (
    LadderHealth,
    ladder_details,
    ladder_reasons,
    read_ladder_health,
)
from api_service.results.latest import STALE_INTERVALS, stale_targets_query
from api_service.times import iso_offset
from shared.broker import BrokerLink
from shared.constants import PROBER_EXPIRY_S, Topology
from shared.dead_letters import ReasonCount
from shared.settings import Settings

log = logging.getLogger(__name__)

CHECK_TIMEOUT_S = 2.0
STALE_LISTED = 100


@dataclass(frozen=True, slots=True)
class QueueState:
    depth: int | None  # None: the queue does not exist yet
    consumers: int | None


async def database_check(pool: asyncpg.Pool) -> str:
    try:
        await asyncio.wait_for(pool.fetchval("SELECT 1"), CHECK_TIMEOUT_S)
    except Exception as exc:  # any failure is the answer, not an error of ours
        log.warning("health: database check failed", extra={"error": repr(exc)})
        return f"error: {type(exc).__name__}"
    return "ok"


async def _queue_state(broker: BrokerLink, queue: str) -> QueueState:
    channel = await broker.channel(timeout=0)
    # A passive declare of a missing queue closes its channel: use a spare one.
    spare = await channel.connection.channel(publisher_confirms=False)
    try:
        declared = await spare.queue_declare(queue, passive=True)
    except aiormq.exceptions.ChannelNotFoundEntity:
        return QueueState(None, None)  # nobody declared it yet: no prober or writer has started
    finally:
        if not spare.is_closed:
            await spare.close()
    return QueueState(declared.message_count, declared.consumer_count)


async def broker_check(broker: BrokerLink, queue: str) -> tuple[str, QueueState]:
    try:
        state = await asyncio.wait_for(_queue_state(broker, queue), CHECK_TIMEOUT_S)
    except Exception as exc:  # any failure is the answer, not an error of ours
        log.warning("health: broker check failed", extra={"error": repr(exc)})
        return f"error: {type(exc).__name__}", QueueState(None, None)
    return "ok", state


_STALE = stale_targets_query(STALE_LISTED)
_ACTIVE = "SELECT count(*) FROM targets WHERE state = 'active'"
_LIVE_PROBERS = """
SELECT count(*) FROM probers
WHERE fleet = $1 AND last_seen > now() - make_interval(secs => $2)
"""
_LOCAL_FAILURES = """
SELECT id, (stats->'local_failures_recent')::text AS recent FROM probers
WHERE fleet = $1 AND last_seen > now() - make_interval(secs => $2)
  AND stats->'local_failures_recent' <> '{}' ORDER BY id
"""


@dataclass(frozen=True, slots=True)
class FleetState:
    active_targets: int
    live_probers: int | None  # None: membership is not recorded in this database
    stale_total: int
    stale: list[dict[str, Any]]
    # Live probers' slots not sent for a local reason lately: prober -> reason -> count.
    local_failures: dict[str, dict[str, int]] = field(default_factory=dict)


async def _fleet_state(pool: asyncpg.Pool, fleet: str) -> FleetState:
    async with pool.acquire() as conn:
        active = int(await conn.fetchval(_ACTIVE))
        rows = await conn.fetch(_STALE)
        try:
            live: int | None = int(await conn.fetchval(_LIVE_PROBERS, fleet, PROBER_EXPIRY_S))
            local = await conn.fetch(_LOCAL_FAILURES, fleet, PROBER_EXPIRY_S)
        except asyncpg.UndefinedTableError:
            live, local = None, []
    stale = [
        {
            "id": row["id"],
            "address": row["address"],
            "interval_s": row["interval_ms"] / 1000,
            "last_ping": None if row["last_ping"] is None else iso_offset(row["last_ping"]),
            "resolve_error": row["resolve_error"],
        }
        for row in rows
    ]
    total = int(rows[0]["total"]) if rows else 0
    failures = {row["id"]: json.loads(row["recent"]) for row in local}
    return FleetState(active, live, total, stale, failures)


async def fleet_check(pool: asyncpg.Pool, fleet: str) -> FleetState | None:
    try:
        return await asyncio.wait_for(_fleet_state(pool, fleet), CHECK_TIMEOUT_S)
    except Exception as exc:  # any failure is the answer, not an error of ours
        log.warning("health: fleet check failed", extra={"error": repr(exc)})
        return None


async def ladder_check(pool: asyncpg.Pool) -> LadderHealth | None:
    try:
        return await asyncio.wait_for(read_ladder_health(pool), CHECK_TIMEOUT_S)
    except Exception as exc:  # any failure is the answer, not an error of ours
        log.warning("health: ladder check failed", extra={"error": repr(exc)})
        return None


def degraded_reasons(
    database: str, broker: str, queue: QueueState, fleet: FleetState | None
) -> list[str]:
    """One line per problem, in the order an operator should look at them."""
    reasons = []
    if database != "ok":
        reasons.append(f"database unreachable ({database})")
    if broker != "ok":
        reasons.append(f"broker unreachable ({broker})")
    if queue.consumers == 0:
        reasons.append(f"writer: nobody consumes the results queue ({queue.depth} waiting)")
    if fleet is None:
        if database == "ok":
            reasons.append("targets and probers could not be checked")
    else:
        if fleet.live_probers == 0 and fleet.active_targets > 0:
            reasons.append(f"probers: none alive for {fleet.active_targets} active targets")
        if fleet.stale_total:
            reasons.append(
                f"{fleet.stale_total} active targets stale"
                f" (no stored ping for {STALE_INTERVALS} intervals)"
            )
        for prober, by_reason in fleet.local_failures.items():
            why = ", ".join(f"{reason} {n}" for reason, n in sorted(by_reason.items()))
            reasons.append(f"prober {prober}: slots not sent for local reasons lately ({why})")
    return reasons


@dataclass(frozen=True, slots=True)
class Health:
    body: dict[str, Any]  # what /health answers
    ready: bool  # the database and the broker answer: this API can serve


async def check_health(pool: asyncpg.Pool, broker: BrokerLink, settings: Settings) -> Health:
    """Every check at once, each bounded by CHECK_TIMEOUT_S."""
    topology = Topology(settings.amqp_prefix)
    database, (broker_state, queue), (_, dead) = await asyncio.gather(
        database_check(pool),
        broker_check(broker, topology.results_queue),
        broker_check(broker, topology.dead_queue),
    )
    fleet: FleetState | None = None
    ladder: LadderHealth | None = None
    counts: dict[str, ReasonCount] | None = None
    if database == "ok":
        fleet, ladder, counts = await asyncio.gather(
            fleet_check(pool, settings.amqp_prefix), ladder_check(pool), reasons_check(pool)
        )
    reasons = degraded_reasons(database, broker_state, queue, fleet)
    threshold = settings.dead_letter_threshold
    if too_many := dead_letters.degraded_reason(dead.depth, threshold, topology.dead_queue):
        reasons.append(too_many)
    if ladder is not None:
        reasons += ladder_reasons(ladder, settings.ladder_stale_after)
    elif database == "ok":
        reasons.append("ladder could not be checked")
    body = {
        "status": "degraded" if reasons else "ok",
        "reasons": reasons,
        "checks": {
            "database": database,
            "broker": broker_state,
            "results_queue_depth": queue.depth,
            "results_consumers": queue.consumers,
            "dead_letter_queue_depth": dead.depth,
            "live_probers": None if fleet is None else fleet.live_probers,
            "active_targets": None if fleet is None else fleet.active_targets,
            "prober_local_failures": None if fleet is None else fleet.local_failures,
        },
        "stale_targets": {
            "count": 0 if fleet is None else fleet.stale_total,
            "items": [] if fleet is None else fleet.stale,
        },
        "ladder": None if ladder is None else ladder_details(ladder),
        "dead_letters": dead_letters.details(dead.depth, threshold, counts),
    }
    return Health(body, ready=database == "ok" and broker_state == "ok")

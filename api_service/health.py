"""/health: is this API able to serve, and is the whole pipeline healthy.

The HTTP status answers the first question (503 when the database or the
broker is unreachable: this instance cannot do its job). The body answers the
second: `status` is `degraded` with one reason per problem when the database,
the broker, the writer (nobody consumes the results queue) or the probers
(none alive while targets are active) fail, when active targets have gone
stale (no stored ping for 3 intervals), or when the ladder stopped, failed or
discarded marks unsummarised (api_service/ladder_health.py), or when the
dead-letter queue holds more than its threshold (api_service/dead_letters.py).
A stopped writer does not make the API unready: restarting the API would not
help it.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, Literal

import aiormq
import asyncpg
from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from api_service import dead_letters
from api_service.dead_letters import reasons_check
from api_service.deps import BrokerDep, PoolDep, SettingsDep
from api_service.ladder_health import (
    LadderHealth,
    ladder_details,
    ladder_reasons,
    read_ladder_health,
)
from api_service.latest import STALE_INTERVALS, stale_targets_query
from shared.broker import BrokerLink
from shared.constants import PROBER_EXPIRY_S, Topology
from shared.dead_letters import ReasonCount

log = logging.getLogger(__name__)

CHECK_TIMEOUT_S = 2.0
STALE_LISTED = 100
router = APIRouter(tags=["health"])


class HealthOut(BaseModel):
    status: Literal["ok", "degraded"]
    reasons: list[str]
    checks: dict[str, object]
    stale_targets: dict[str, object]
    ladder: dict[str, object] | None
    dead_letters: dict[str, object]


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


@dataclass(frozen=True, slots=True)
class FleetState:
    active_targets: int
    live_probers: int | None  # None: membership is not recorded in this database
    stale_total: int
    stale: list[dict[str, Any]]


async def _fleet_state(pool: asyncpg.Pool, fleet: str) -> FleetState:
    async with pool.acquire() as conn:
        active = int(await conn.fetchval(_ACTIVE))
        rows = await conn.fetch(_STALE)
        try:
            live: int | None = int(await conn.fetchval(_LIVE_PROBERS, fleet, PROBER_EXPIRY_S))
        except asyncpg.UndefinedTableError:
            live = None
    stale = [
        {
            "id": row["id"],
            "address": row["address"],
            "interval_s": row["interval_ms"] / 1000,
            "last_ping": None if row["last_ping"] is None else row["last_ping"].isoformat(),
            "resolve_error": row["resolve_error"],
        }
        for row in rows
    ]
    total = int(rows[0]["total"]) if rows else 0
    return FleetState(active, live, total, stale)


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
    return reasons


@router.get("/health", response_model=HealthOut, responses={503: {"model": HealthOut}})
async def health(pool: PoolDep, broker: BrokerDep, settings: SettingsDep) -> JSONResponse:
    """200 while this API can serve (database and broker answer), else 503.

    `status` is `degraded` with `reasons` whenever any part of the pipeline is
    unhealthy; `stale_targets` lists active targets without a recent ping, with
    `resolve_error` set when the target's name does not resolve (so it is not probed);
    `ladder` tells the ladder's rounds, lag per tier and discarded marks.
    """
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
        },
        "stale_targets": {
            "count": 0 if fleet is None else fleet.stale_total,
            "items": [] if fleet is None else fleet.stale,
        },
        "ladder": None if ladder is None else ladder_details(ladder),
        "dead_letters": dead_letters.details(dead.depth, threshold, counts),
    }
    ready = database == "ok" and broker_state == "ok"
    return JSONResponse(body, status_code=200 if ready else 503)

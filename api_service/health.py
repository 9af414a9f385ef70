"""/health: can we reach the database and the broker, and how deep is the results queue."""

from __future__ import annotations

import asyncio
import logging

import aiormq
import asyncpg
from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api_service.deps import BrokerDep, PoolDep, SettingsDep
from api_service.schemas import HealthOut
from shared.broker import BrokerLink
from shared.constants import Topology

log = logging.getLogger(__name__)

CHECK_TIMEOUT_S = 2.0
router = APIRouter(tags=["health"])


async def database_check(pool: asyncpg.Pool) -> str:
    try:
        await asyncio.wait_for(pool.fetchval("SELECT 1"), CHECK_TIMEOUT_S)
    except Exception as exc:  # any failure is the answer, not an error of ours
        log.warning("health: database check failed", extra={"error": repr(exc)})
        return f"error: {type(exc).__name__}"
    return "ok"


async def _queue_depth(broker: BrokerLink, queue: str) -> int | None:
    channel = await broker.channel(timeout=0)
    # A passive declare of a missing queue closes its channel: use a spare one.
    spare = await channel.connection.channel(publisher_confirms=False)
    try:
        declared = await spare.queue_declare(queue, passive=True)
    except aiormq.exceptions.ChannelNotFoundEntity:
        return None  # nobody declared it yet: no prober or writer has started
    finally:
        if not spare.is_closed:
            await spare.close()
    return declared.message_count


async def broker_check(broker: BrokerLink, queue: str) -> tuple[str, int | None]:
    try:
        depth = await asyncio.wait_for(_queue_depth(broker, queue), CHECK_TIMEOUT_S)
    except Exception as exc:  # any failure is the answer, not an error of ours
        log.warning("health: broker check failed", extra={"error": repr(exc)})
        return f"error: {type(exc).__name__}", None
    return "ok", depth


@router.get("/health", response_model=HealthOut, responses={503: {"model": HealthOut}})
async def health(pool: PoolDep, broker: BrokerDep, settings: SettingsDep) -> JSONResponse:
    """200 with status ok when database and broker answer, else 503 with status degraded."""
    database, (broker_state, depth) = await asyncio.gather(
        database_check(pool),
        broker_check(broker, Topology(settings.amqp_prefix).results_queue),
    )
    healthy = database == "ok" and broker_state == "ok"
    body = {
        "status": "ok" if healthy else "degraded",
        "checks": {"database": database, "broker": broker_state, "results_queue_depth": depth},
    }
    return JSONResponse(body, status_code=200 if healthy else 503)

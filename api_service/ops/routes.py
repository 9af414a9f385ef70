"""/health, /metrics, /fleet and /storage: the routes operators and their tools read."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel

from api_service.auth import require_reader
from api_service.deps import BrokerDep, PoolDep, SettingsDep
from api_service.errors import ErrorOut
from api_service.ops import projection
from api_service.ops.fleet import fleet_content, fleet_rows
from api_service.ops.health import check_health
from api_service.ops.metrics import CONTENT_TYPE, metrics_text
from api_service.ops.storage import storage_report
from shared.settings import MAX_INTERVAL_S, MIN_INTERVAL_S

health_router = APIRouter(tags=["health"])
metrics_router = APIRouter(tags=["health"], dependencies=[Depends(require_reader)])
fleet_router = APIRouter(tags=["fleet"], dependencies=[Depends(require_reader)])
storage_router = APIRouter(
    tags=["storage"],
    dependencies=[Depends(require_reader)],
    responses={code: {"model": ErrorOut} for code in (401, 403, 422)},
)


class HealthOut(BaseModel):
    status: Literal["ok", "degraded"]
    reasons: list[str]
    checks: dict[str, object]
    stale_targets: dict[str, object]
    ladder: dict[str, object] | None
    dead_letters: dict[str, object]


@health_router.get("/health", response_model=HealthOut, responses={503: {"model": HealthOut}})
async def health(pool: PoolDep, broker: BrokerDep, settings: SettingsDep) -> JSONResponse:
    """200 while this API can serve (database and broker answer), else 503.

    `status` is `degraded` with `reasons` whenever any part of the pipeline is
    unhealthy; `stale_targets` lists active targets without a recent ping, with
    `resolve_error` set when the target's name does not resolve (so it is not probed);
    `ladder` tells the ladder's rounds, lag per tier and discarded marks.
    """
    found = await check_health(pool, broker, settings)
    return JSONResponse(found.body, status_code=200 if found.ready else 503)


@metrics_router.get("/metrics", response_class=PlainTextResponse)
async def metrics(pool: PoolDep, broker: BrokerDep, settings: SettingsDep) -> PlainTextResponse:
    """Fleet, queue, ladder and dependency figures for Prometheus to scrape."""
    text = await metrics_text(pool, broker, settings)
    return PlainTextResponse(text, media_type=CONTENT_TYPE)


@fleet_router.get("/fleet")
async def fleet(pool: PoolDep, settings: SettingsDep) -> dict[str, Any]:
    """Live probers first; each with its shards, targets and counters from its last heartbeat."""
    return fleet_content(await fleet_rows(pool, settings.amqp_prefix))


@storage_router.get("/storage")
async def get_storage(
    pool: PoolDep,
    targets: Annotated[int, Query(ge=1, le=projection.MAX_TARGETS)] = 300,
    interval_s: Annotated[float, Query(ge=MIN_INTERVAL_S, le=MAX_INTERVAL_S)] = 1.0,
    years: Annotated[float, Query(gt=0, le=projection.MAX_YEARS)] = 5.0,
) -> dict[str, Any]:
    """Rows and bytes of every tier now, the costs measured from them, and the
    size of `targets` pinged every `interval_s` kept `years` under the ladder's
    retentions (`projection.total_bytes`) against every ping as a row
    (`projection.raw_only_bytes`)."""
    async with pool.acquire() as conn:
        return await storage_report(conn, targets, interval_s, years)

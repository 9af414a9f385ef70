"""Results as probes left them: raw pings (pages or CSV), the newest result, traceroutes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from api_service.auth import require_admin, require_reader
from api_service.deps import PoolDep, TargetId
from api_service.errors import ErrorOut
from api_service.results import pings
from api_service.results.latest import latest_of, latest_results
from api_service.results.schemas import LatestList, LatestOut, PingPage
from api_service.results.traceroute import TracerouteFailed, latest_trace, trace_target
from api_service.targets.drafts import parse_tags
from api_service.targets.states import parse_state_filter

_READ_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut} for code in (401, 403, 404, 422)
}
latest_router = APIRouter(
    tags=["results"], dependencies=[Depends(require_reader)], responses=_READ_ERRORS
)
pings_router = APIRouter(
    tags=["pings"], dependencies=[Depends(require_reader)], responses=_READ_ERRORS
)
traceroute_router = APIRouter(
    tags=["traceroute"],
    responses={code: {"model": ErrorOut} for code in (401, 403, 404, 422, 503)},
)


@latest_router.get("/results/latest")
async def all_latest(
    pool: PoolDep,
    state: str | None = None,
    tag: Annotated[list[str] | None, Query(description="only targets with all these")] = None,
) -> LatestList:
    """The newest result of every target (live and stopped ones by default), with its
    age and whether the target is stale."""
    found = await latest_results(pool, parse_state_filter(state), parse_tags(tag))
    items = [LatestOut.of(x) for x in found]
    return LatestList(count=len(items), stale=sum(x.stale for x in found), items=items)


@latest_router.get("/targets/{target_id}/latest")
async def one_latest(target_id: TargetId, pool: PoolDep) -> LatestOut:
    return LatestOut.of(await latest_of(pool, target_id))


@pings_router.get(
    "/targets/{target_id}/pings",
    response_model=PingPage,
    responses={200: {"content": {"text/csv": {}}}},
)
async def list_pings(
    request: Request,
    target_id: TargetId,
    pool: PoolDep,
    start: Annotated[datetime | None, Query(alias="from", description="ISO 8601")] = None,
    end: Annotated[datetime | None, Query(alias="to", description="ISO 8601, exclusive")] = None,
    limit: Annotated[int, Query(ge=1, le=pings.MAX_LIMIT)] = pings.DEFAULT_LIMIT,
    cursor: str | None = None,
) -> Response:
    """Pings in [from, to) ordered by time (default: all history up to now).

    JSON answers a page of at most `limit` with `next_cursor`; with
    `Accept: text/csv` the whole range (after `cursor`, if given) is streamed.
    """
    if "text/csv" in request.headers.get("accept", ""):
        return StreamingResponse(
            await pings.csv_chunks(pool, target_id, start, end, cursor),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="target-{target_id}-pings.csv"'},
        )
    page = await pings.page(pool, target_id, start, end, limit=limit, cursor=cursor)
    return JSONResponse(PingPage.content(page))


@traceroute_router.post(
    "/targets/{target_id}/traceroute", status_code=201, dependencies=[Depends(require_admin)]
)
async def run_traceroute(target_id: TargetId, pool: PoolDep) -> dict[str, Any]:
    """Trace the route to the target now (up to 30 hops), store and return it."""
    try:
        return (await trace_target(pool, target_id)).to_json()
    except TracerouteFailed as exc:
        raise HTTPException(503, str(exc)) from exc


@traceroute_router.get("/targets/{target_id}/traceroute", dependencies=[Depends(require_reader)])
async def get_traceroute(target_id: TargetId, pool: PoolDep) -> dict[str, Any]:
    """The latest stored traceroute of the target."""
    return (await latest_trace(pool, target_id)).to_json()

"""/targets/{id}/traceroute: trace the path now (admin), or read the latest trace."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException

from api_service.auth import require_admin, require_reader
from api_service.deps import PoolDep, TargetId
from api_service.errors import ErrorOut
from api_service.traceroute import TracerouteFailed, latest_trace, trace_target

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut} for code in (401, 403, 404, 422, 503)
}
router = APIRouter(tags=["traceroute"], responses=_ERRORS)


@router.post(
    "/targets/{target_id}/traceroute", status_code=201, dependencies=[Depends(require_admin)]
)
async def run_traceroute(target_id: TargetId, pool: PoolDep) -> dict[str, Any]:
    """Trace the route to the target now (up to 30 hops), store and return it."""
    try:
        return (await trace_target(pool, target_id)).to_json()
    except TracerouteFailed as exc:
        raise HTTPException(503, str(exc)) from exc


@router.get("/targets/{target_id}/traceroute", dependencies=[Depends(require_reader)])
async def get_traceroute(target_id: TargetId, pool: PoolDep) -> dict[str, Any]:
    """The latest stored traceroute of the target."""
    return (await latest_trace(pool, target_id)).to_json()

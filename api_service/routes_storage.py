"""GET /storage: bytes per tier now, and the projection for any fleet."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from api_service import storage
from api_service.auth import require_reader
from api_service.deps import PoolDep
from api_service.errors import ErrorOut
from shared.settings import MAX_INTERVAL_S, MIN_INTERVAL_S

router = APIRouter(
    tags=["storage"],
    dependencies=[Depends(require_reader)],
    responses={code: {"model": ErrorOut} for code in (401, 403, 422)},
)


@router.get("/storage")
async def get_storage(
    pool: PoolDep,
    targets: Annotated[int, Query(ge=1, le=storage.MAX_TARGETS)] = 300,
    interval_s: Annotated[float, Query(ge=MIN_INTERVAL_S, le=MAX_INTERVAL_S)] = 1.0,
    years: Annotated[float, Query(gt=0, le=storage.MAX_YEARS)] = 5.0,
) -> dict[str, Any]:
    """Rows and bytes of every tier now, the costs measured from them, and the
    size of `targets` pinged every `interval_s` kept `years` under the ladder's
    retentions (`projection.total_bytes`) against every ping as a row
    (`projection.raw_only_bytes`)."""
    async with pool.acquire() as conn:
        return await storage.storage_report(conn, targets, interval_s, years)

"""/targets/{id}/pings: raw history as keyset pages, or the whole range as CSV."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from api_service import pings
from api_service.auth import require_reader
from api_service.deps import PoolDep, TargetId
from api_service.errors import ErrorOut
from api_service.schemas import PingPage

router = APIRouter(
    tags=["pings"],
    dependencies=[Depends(require_reader)],
    responses={code: {"model": ErrorOut} for code in (401, 403, 404, 422)},
)


@router.get(
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
        return await _csv(pool, target_id, start, end, cursor)
    page = await pings.page(pool, target_id, start, end, limit=limit, cursor=cursor)
    return JSONResponse(PingPage.content(page))


async def _csv(
    pool: PoolDep,
    target_id: int,
    start: datetime | None,
    end: datetime | None,
    cursor: str | None,
) -> StreamingResponse:
    # Everything that can fail with a 4xx is checked before the stream starts.
    lo, hi = pings.time_range(start, end)
    after = None if cursor is None else pings.decode_cursor(cursor, target_id)
    async with pool.acquire() as conn:
        await pings.ensure_target(conn, target_id)

    async def body() -> AsyncIterator[str]:
        async with pool.acquire() as conn:
            async for chunk in pings.stream_csv(conn, target_id, lo, hi, after):
                yield chunk

    return StreamingResponse(
        body(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="target-{target_id}-pings.csv"'},
    )

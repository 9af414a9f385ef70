"""/targets/{id}/series, /segments, /events and /stats: the read side for graphs."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse

from api_service.auth import require_reader
from api_service.deps import PoolDep, TargetId
from api_service.errors import ErrorOut
from api_service.history import events as ev
from api_service.history import series as sr
from api_service.history import stats as st

router = APIRouter(
    tags=["history"],
    dependencies=[Depends(require_reader)],
    responses={code: {"model": ErrorOut} for code in (401, 403, 404, 422)},
)

From = Annotated[
    datetime | None, Query(alias="from", description="ISO 8601; default: `to` minus 1 day")
]
To = Annotated[datetime | None, Query(alias="to", description="ISO 8601, exclusive; default now")]


@router.get("/targets/{target_id}/series")
async def get_series(
    target_id: TargetId,
    pool: PoolDep,
    start: From = None,
    end: To = None,
    points: Annotated[int, Query(ge=1, le=sr.MAX_POINTS)] = sr.DEFAULT_POINTS,
) -> JSONResponse:
    """At most `points` aligned buckets of [from, to), from the cheapest exact-enough tier.

    Each point: start, count, lost, min/avg/max RTT (ms), hops (max; hops_min too).
    A bucket without pings is present with count 0 and null figures. The
    answer names the tier, the bucket width and the covered [from, to); a
    range wholly in the future answers no points.
    """
    result = await sr.series(pool, target_id, start, end, points)
    return JSONResponse(result.content())


@router.get("/targets/{target_id}/segments")
async def get_segments(
    target_id: TargetId,
    pool: PoolDep,
    start: From = None,
    end: To = None,
    level: Annotated[int, Query(ge=1, le=32)] = 1,
    limit: Annotated[int, Query(ge=1, le=ev.MAX_SEGMENTS)] = ev.MAX_SEGMENTS,
) -> JSONResponse:
    """Segments of one level overlapping [from, to); `next_from` when more remain."""
    page = await ev.segments(pool, target_id, start, end, level, limit)
    return JSONResponse(page.content())


@router.get("/targets/{target_id}/events")
async def get_events(
    target_id: TargetId, pool: PoolDep, start: From = None, end: To = None
) -> JSONResponse:
    """Loss runs, hop changes and latency shifts beyond the level-1 tolerance."""
    return JSONResponse((await ev.events(pool, target_id, start, end)).content())


@router.get("/targets/{target_id}/stats")
async def get_stats(
    target_id: TargetId, pool: PoolDep, start: From = None, end: To = None
) -> JSONResponse:
    """Availability, loss %, min/avg/max, p50/p95/p99, jitter and hop changes."""
    return JSONResponse((await st.stats(pool, target_id, start, end)).content())

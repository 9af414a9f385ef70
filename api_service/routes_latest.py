"""/results/latest and /targets/{id}/latest: the newest result of targets at a glance."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from api_service import probe, rules
from api_service.auth import require_reader
from api_service.deps import PoolDep, TargetId
from api_service.errors import ErrorOut
from api_service.latest import STALE_INTERVALS, Detail, Latest, latest_of, latest_results

router = APIRouter(
    tags=["results"],
    dependencies=[Depends(require_reader)],
    responses={code: {"model": ErrorOut} for code in (401, 403, 404, 422)},
)


class DetailOut(BaseModel):
    status: int | None = Field(description="HTTP status code")
    ttfb_ms: float | None = Field(description="time to first byte")
    cert_expires_at: datetime | None = Field(description="https: the certificate's notAfter")
    error: str | None = Field(description="why the probe failed: timeout, refused, tls, ...")

    @classmethod
    def of(cls, detail: Detail | None) -> DetailOut | None:
        if detail is None:
            return None
        ttfb = None if detail.ttfb_us is None else detail.ttfb_us / 1000
        return cls(
            status=detail.status,
            ttfb_ms=ttfb,
            cert_expires_at=detail.cert_expires_at,
            error=detail.error,
        )


class LatestOut(BaseModel):
    id: int
    name: str | None
    kind: str
    target: str = Field(description="what is probed: the IP, hostname or URL")
    state: str
    interval_s: float
    tags: list[str]
    ts: datetime | None = Field(description="send time of the newest result; null: none yet")
    rtt_ms: float | None
    lost: bool | None
    age_s: float | None = Field(description="seconds since that result was sent")
    stale: bool = Field(
        description=f"active and no result for {STALE_INTERVALS} intervals (as in /health)"
    )
    address: str | None = Field(
        description="the IP the newest result was sent to (a name: as resolved then)"
    )
    resolve_error: str | None = Field(
        description="the name does not resolve now (so it is not probed): the newest failure"
    )
    resolve_error_at: datetime | None
    detail: DetailOut | None = Field(
        description="tcp/http: the newest result's status, time to first byte, certificate"
        " expiry and error; null when it had none"
    )

    @classmethod
    def of(cls, latest: Latest) -> LatestOut:
        return cls(
            id=latest.id,
            name=latest.name,
            kind=latest.kind,
            target=latest.probed,
            state=latest.state,
            interval_s=latest.interval_ms / 1000,
            tags=list(latest.tags),
            ts=latest.ts,
            rtt_ms=None if latest.rtt_us is None else latest.rtt_us / 1000,
            lost=latest.lost,
            age_s=None if latest.age_s is None else round(latest.age_s, 3),
            stale=latest.stale,
            address=latest.address,
            resolve_error=latest.resolve_error,
            resolve_error_at=latest.resolve_ts,
            detail=DetailOut.of(latest.detail),
        )


class LatestList(BaseModel):
    count: int
    stale: int = Field(description="how many of the items are stale")
    items: list[LatestOut]


@router.get("/results/latest")
async def all_latest(
    pool: PoolDep,
    state: str | None = None,
    tag: Annotated[list[str] | None, Query(description="only targets with all these")] = None,
) -> LatestList:
    """The newest result of every target (live and stopped ones by default), with its
    age and whether the target is stale."""
    found = await latest_results(pool, rules.parse_state_filter(state), probe.parse_tags(tag))
    items = [LatestOut.of(x) for x in found]
    return LatestList(count=len(items), stale=sum(x.stale for x in found), items=items)


@router.get("/targets/{target_id}/latest")
async def one_latest(target_id: TargetId, pool: PoolDep) -> LatestOut:
    return LatestOut.of(await latest_of(pool, target_id))

"""Response bodies of the result routes: raw pings and the newest result (ms on the wire)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from api_service.results.latest import STALE_INTERVALS, Detail, Latest
from api_service.results.pings import Page
from api_service.times import iso


class PingOut(BaseModel):
    ts: datetime
    rtt_ms: float | None = Field(description="null when lost")
    lost: bool
    hops: int | None
    ttl: int | None


class PingPage(BaseModel):
    items: list[PingOut]
    next_cursor: str | None = Field(
        description="pass as ?cursor= for the next page; null at the end"
    )

    @staticmethod
    def content(page: Page) -> dict[str, object]:
        """The JSON body, built without a model per ping (a page holds up to 10 000)."""
        return {
            "items": [
                {"ts": iso(p.ts), "rtt_ms": p.rtt_ms, "lost": p.lost, "hops": p.hops, "ttl": p.ttl}
                for p in page.items
            ],
            "next_cursor": page.next_cursor,
        }


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

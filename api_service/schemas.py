"""Request and response bodies of the target routes (seconds on the wire)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictStr

from api_service.pings import Page, iso
from api_service.targets import LastPing, Purged, Target

# Unknown fields are refused so a typo ("interval") is not silently ignored;
# strict types so "2" is not taken for a number.
_STRICT = ConfigDict(extra="forbid", strict=True)


class TargetCreate(BaseModel):
    model_config = _STRICT

    address: StrictStr = Field(examples=["192.0.2.10", "2001:db8::1"])
    name: StrictStr | None = None
    interval_s: StrictFloat = Field(1.0, description="seconds between pings, 0.1 to 3600")
    timeout_s: StrictFloat | None = Field(None, description="seconds, 0.05 to 60")


class TargetUpdate(BaseModel):
    model_config = _STRICT

    name: StrictStr | None = None
    interval_s: StrictFloat | None = None
    timeout_s: StrictFloat | None = None


class LastPingOut(BaseModel):
    ts: datetime
    rtt_ms: float | None
    lost: bool


class LastMinuteOut(BaseModel):
    pings: int = Field(description="pings sent in the last minute")
    lost: int
    loss_pct: float | None = Field(description="null when no pings were sent")

    @classmethod
    def of(cls, last: LastPing | None) -> LastMinuteOut:
        sent, lost = (0, 0) if last is None else (last.recent, last.recent_lost)
        return cls(pings=sent, lost=lost, loss_pct=round(100 * lost / sent, 2) if sent else None)


class TargetOut(BaseModel):
    id: int
    address: str
    name: str | None
    interval_s: float
    timeout_s: float
    state: Literal["active", "paused", "stopped", "deleted"]
    rev: int
    created_at: datetime
    updated_at: datetime
    stopped_at: datetime | None
    last_ping: LastPingOut | None
    last_minute: LastMinuteOut

    @classmethod
    def of(cls, target: Target) -> TargetOut:
        last = target.last_ping
        return cls(
            id=target.id,
            address=target.address,
            name=target.name,
            interval_s=target.interval_ms / 1000,
            timeout_s=target.timeout_ms / 1000,
            state=target.state,  # type: ignore[arg-type]
            rev=target.rev,
            created_at=target.created_at,
            updated_at=target.updated_at,
            stopped_at=target.stopped_at,
            last_minute=LastMinuteOut.of(last),
            last_ping=None
            if last is None
            else LastPingOut(
                ts=last.ts,
                rtt_ms=None if last.rtt_us is None else last.rtt_us / 1000,
                lost=last.rtt_us is None,
            ),
        )


class TargetList(BaseModel):
    items: list[TargetOut]


class PurgedOut(BaseModel):
    id: int
    purged: Literal[True] = True
    rows_deleted: dict[str, int] = Field(description="rows removed per history table")

    @classmethod
    def of(cls, purged: Purged) -> PurgedOut:
        return cls(id=purged.id, rows_deleted=purged.rows_deleted)


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


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorOut(BaseModel):
    error: ErrorDetail


class HealthOut(BaseModel):
    status: Literal["ok", "degraded"]
    checks: dict[str, object]

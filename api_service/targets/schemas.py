"""Request and response bodies of the target routes (seconds on the wire)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr

from api_service.errors import ErrorDetail
from api_service.targets.service import LastPing, Purged, Target

# Unknown fields are refused so a typo ("interval") is not silently ignored;
# strict types so "2" is not taken for a number.
_STRICT = ConfigDict(extra="forbid", strict=True)


Kind = Literal["icmp", "tcp", "http"]
Family = Literal["any", "ipv4", "ipv6"]
Method = Literal["GET", "HEAD"]


class _ProbeFields(BaseModel):
    model_config = _STRICT

    name: StrictStr | None = None
    kind: Kind | None = Field(None, description="icmp (default), tcp or http")
    address: StrictStr | None = Field(None, examples=["192.0.2.10", "2001:db8::1"])
    hostname: StrictStr | None = Field(
        None, description="a DNS name the prober resolves (instead of address)"
    )
    family: Family | None = Field(None, description="hostnames: which address family to use")
    port: StrictInt | None = Field(None, description="tcp: the port to connect to")
    url: StrictStr | None = Field(None, description="http: the http:// or https:// URL")
    http_method: Method | None = None
    expect_status: StrictInt | None = Field(None, description="http: the status that means up")
    expect_body: StrictStr | None = Field(None, description="http: a substring the body holds")
    interval_s: StrictFloat | None = Field(
        None, description="seconds between probes (default 1; at least 1 for tcp, 5 for http)"
    )
    timeout_s: StrictFloat | None = Field(None, description="seconds, 0.05 to 60")
    tags: list[StrictStr] | None = None

    def given(self) -> dict[str, Any]:
        """The fields the caller sent, without nulls that mean "the default"."""
        return {
            k: v
            for k, v in self.model_dump(exclude_unset=True).items()
            if v is not None or k in _CLEARABLE
        }


# A null here clears the field; elsewhere a null means "keep" / "the default".
_CLEARABLE = {"name", "expect_status", "expect_body", "tags"}


class TargetCreate(_ProbeFields):
    pass


class TargetUpdate(_ProbeFields):
    pass


class BulkCreate(BaseModel):
    model_config = _STRICT

    # Items are checked one by one (each may fail alone), so they are plain objects here.
    targets: list[Any] = Field(description="target bodies as for POST /targets")


class BulkItemOut(BaseModel):
    index: int
    status: int = Field(description="201 created, or the 4xx the item alone would get")
    target: TargetOut | None = None
    error: ErrorDetail | None = None


class BulkOut(BaseModel):
    created: int
    failed: int
    results: list[BulkItemOut]


class ChangedOut(BaseModel):
    changed: list[int] = Field(description="ids of the targets whose state changed")


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
    kind: Kind
    address: str | None
    hostname: str | None
    family: Family
    port: int | None
    url: str | None
    http_method: Method | None = Field(description="http targets only")
    expect_status: int | None
    expect_body: str | None
    tags: list[str]
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
        p = target.probe
        return cls(
            id=target.id,
            kind=p.kind,  # type: ignore[arg-type]
            address=p.address,
            hostname=p.hostname,
            family=p.family,  # type: ignore[arg-type]
            port=p.port,
            url=p.url,
            http_method=p.http_method if p.kind == "http" else None,  # type: ignore[arg-type]
            expect_status=p.expect_status,
            expect_body=p.expect_body,
            tags=list(target.tags),
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


BulkItemOut.model_rebuild()

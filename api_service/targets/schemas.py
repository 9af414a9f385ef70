"""Request and response bodies of the target routes (seconds on the wire).

The probe fields of both are built from their one definition (PROBE_FIELDS:
shared/target_fields.py and targets/probe.py): their types, defaults and
documentation come from there, so a new field needs no edit here.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr, create_model

from api_service.errors import ErrorDetail
from api_service.targets.probe import PROBE_FIELDS
from api_service.targets.service import LastPing, Purged, Target
from shared.target_fields import HTTP_METHODS, FieldInfo

# Unknown fields are refused so a typo ("interval") is not silently ignored;
# strict types so "2" is not taken for a number.
_STRICT = ConfigDict(extra="forbid", strict=True)
_STRICT_TYPES: dict[type, Any] = {int: StrictInt, str: StrictStr}

# A null here clears the field; elsewhere a null means "keep" / "the default".
_CLEARABLE = {"name", "tags", *(f.name for f in PROBE_FIELDS if f.clearable)}


def _type(f: FieldInfo, strict: bool = False) -> Any:
    """What a field may hold: one of its choices, else its Python type (strict: no "2")."""
    if f.choices:
        return Literal[f.choices]
    return _STRICT_TYPES[f.py_type] if strict else f.py_type


def _asked(f: FieldInfo) -> tuple[Any, Any]:
    """A probe field of a request: optional (null or absent means the default)."""
    return _type(f, strict=True) | None, Field(
        None, description=f.doc, examples=list(f.examples) or None
    )


def _shown(f: FieldInfo) -> tuple[Any, Any]:
    """A probe field of a response: always there, null where the target has none."""
    if f.name == "http_method":  # http's alone: null for other kinds, rather than GET
        return Literal[HTTP_METHODS] | None, Field(description="http targets only")
    return (_type(f) | None if f.nullable else _type(f)), ...


class _TargetBody(BaseModel):
    model_config = _STRICT

    def given(self) -> dict[str, Any]:
        """The fields the caller sent, without nulls that mean "the default"."""
        return {
            k: v
            for k, v in self.model_dump(exclude_unset=True).items()
            if v is not None or k in _CLEARABLE
        }


_ASKED: dict[str, Any] = {
    "name": (StrictStr | None, None),
    **{f.name: _asked(f) for f in PROBE_FIELDS},
    "interval_s": (
        StrictFloat | None,
        Field(
            None, description="seconds between probes (default 1; at least 1 for tcp, 5 for http)"
        ),
    ),
    "timeout_s": (StrictFloat | None, Field(None, description="seconds, 0.05 to 60")),
    "tags": (list[StrictStr] | None, None),
}
_TargetBodyFields = create_model("_TargetBodyFields", __base__=_TargetBody, **_ASKED)


class TargetCreate(_TargetBodyFields):  # type: ignore[misc,valid-type]
    pass


class TargetUpdate(_TargetBodyFields):  # type: ignore[misc,valid-type]
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


_SHOWN: dict[str, Any] = {
    "id": (int, ...),
    **{f.name: _shown(f) for f in PROBE_FIELDS},
    "tags": (list[str], ...),
    "name": (str | None, ...),
    "interval_s": (float, ...),
    "timeout_s": (float, ...),
    "state": (Literal["active", "paused", "stopped", "deleted"], ...),
    "rev": (int, ...),
    "created_at": (datetime, ...),
    "updated_at": (datetime, ...),
    "stopped_at": (datetime | None, ...),
    "last_ping": (LastPingOut | None, ...),
    "last_minute": (LastMinuteOut, ...),
}
_TargetOutFields = create_model("_TargetOutFields", **_SHOWN)


class TargetOut(_TargetOutFields):  # type: ignore[misc,valid-type]
    @classmethod
    def of(cls, target: Target) -> TargetOut:
        last = target.last_ping
        p = target.probe
        probe = {f.name: getattr(p, f.name) for f in PROBE_FIELDS}
        if p.kind != "http":
            probe["http_method"] = None
        return cls(
            id=target.id,
            **probe,
            tags=list(target.tags),
            name=target.name,
            interval_s=target.interval_ms / 1000,
            timeout_s=target.timeout_ms / 1000,
            state=target.state,
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

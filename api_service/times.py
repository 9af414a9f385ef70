"""Times on the wire: the one place that says how a timestamp is written and read.

Most answers write `iso` (UTC, `Z`, microseconds kept). Three older sections
write Python's own `isoformat`, with a `+00:00` offset: /fleet and /traceroute
(`iso_offset`), and /health's ladder (`iso_seconds`, to the second). They are
public as they are; a change of format is a change of the API. Bodies built
by pydantic models (targets, latest results) write their datetimes its way,
UTC with a `Z`.
"""

from __future__ import annotations

from datetime import UTC, datetime

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def iso(ts: datetime) -> str:
    """ISO 8601 in UTC with a Z, microseconds kept."""
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


def iso_offset(ts: datetime) -> str:
    """ISO 8601 with the offset spelt out (`+00:00`), microseconds kept."""
    return ts.isoformat()


def iso_seconds(ts: datetime | None) -> str | None:
    """ISO 8601 with the offset spelt out, to the second; None stays None."""
    return None if ts is None else ts.isoformat(timespec="seconds")


def as_utc(ts: datetime) -> datetime:
    """A naive time is taken as UTC."""
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)

"""A target as asked for: every column checked, before it meets the database.

One function builds a draft from the fields of a request or a targets-file
entry, another applies a change to a stored target's draft; both run every
check again, so no combination can slip in through a partial update. What is
probed is checked by probe.py; name, interval, timeout and tags here. Values
come back normalised (tags sorted, names trimmed).
A tcp or http target whose address is literal must be an allowed probe
destination (shared/destinations.py); a hostname is checked by the prober
once resolved.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

from api_service.targets import probe
from api_service.targets.probe import PROBE_FIELDS, Probe
from shared.errors import InvalidInput
from shared.settings import (
    MAX_INTERVAL_S,
    MAX_TIMEOUT_S,
    MIN_INTERVAL_S,
    MIN_TIMEOUT_S,
    Settings,
)

FIELDS = ("name", *(f.name for f in PROBE_FIELDS), "interval_s", "timeout_s", "tags")
MAX_NAME_LENGTH = 200
MAX_TAGS = 32
MAX_TAG_LENGTH = 64

_TAG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/=+-]*$")


@dataclass(frozen=True, slots=True)
class Draft:
    probe: Probe
    name: str | None
    interval_ms: int
    timeout_ms: int
    tags: tuple[str, ...] = ()

    def fields(self) -> dict[str, Any]:
        """The wire fields that say this target, leaving out defaults (and the method of
        anything but http, which has none)."""
        p = self.probe
        out: dict[str, Any] = {"name": self.name}
        for f in PROBE_FIELDS:
            value = getattr(p, f.name)
            if value != f.default and (f.name != "http_method" or p.kind == "http"):
                out[f.name] = value
        out["interval_s"] = self.interval_ms / 1000
        out["timeout_s"] = self.timeout_ms / 1000
        if self.tags:
            out["tags"] = list(self.tags)
        return out


def _check_range(what: str, value: float, lo: float, hi: float) -> None:
    # Written so that NaN fails too.
    if not (isinstance(value, int | float) and math.isfinite(value) and lo <= value <= hi):
        raise InvalidInput(f"{what} must be between {lo:g} and {hi:g} seconds, got {value!r}")


def interval_ms(interval_s: float, minimum_s: float = MIN_INTERVAL_S, kind: str = "") -> int:
    """Milliseconds between probes; `minimum_s` is the floor of the probe kind."""
    _check_range("interval_s", interval_s, MIN_INTERVAL_S, MAX_INTERVAL_S)
    if interval_s < minimum_s:
        raise InvalidInput(
            f"interval_s of {kind} targets must be at least {minimum_s:g} seconds,"
            f" got {interval_s!r}"
        )
    return round(interval_s * 1000)


def timeout_ms(timeout_s: float) -> int:
    _check_range("timeout_s", timeout_s, MIN_TIMEOUT_S, MAX_TIMEOUT_S)
    return round(timeout_s * 1000)


def clean_name(name: str | None) -> str | None:
    if name is None:
        return None
    name = name.strip()
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidInput(f"name is longer than {MAX_NAME_LENGTH} characters")
    return name or None


def parse_tags(tags: list[str] | None) -> list[str]:
    """Tags as a sorted list without duplicates."""
    if not tags:
        return []
    clean = set()
    for tag in tags:
        if not isinstance(tag, str) or not _TAG.match(tag) or len(tag) > MAX_TAG_LENGTH:
            raise InvalidInput(
                f"tag {tag!r} is not valid: 1-{MAX_TAG_LENGTH} characters, letters, digits"
                " and _.:/=+- (starting with a letter or digit)"
            )
        clean.add(tag)
    if len(clean) > MAX_TAGS:
        raise InvalidInput(f"a target has at most {MAX_TAGS} tags, got {len(clean)}")
    return sorted(clean)


def _probe_of(fields: Mapping[str, Any], settings: Settings) -> Probe:
    given = {f.name: fields[f.name] for f in PROBE_FIELDS if fields.get(f.name) is not None}
    p = probe.parse_probe(**given)
    host = urlsplit(p.url).hostname if p.url else p.address
    if p.kind != "icmp" and host is not None and _is_address(host):
        refusal = settings.probe_destinations.refusal(host)
        if refusal is not None:
            raise InvalidInput(f"{p.describe()} is not an allowed probe destination: {refusal}")
    return p


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _interval(kind: str, interval_s: Any, settings: Settings) -> int:
    floor = {"tcp": settings.min_tcp_interval_s, "http": settings.min_http_interval_s}
    return interval_ms(interval_s, floor.get(kind, MIN_INTERVAL_S), kind)


def draft(fields: Mapping[str, Any], settings: Settings) -> Draft:
    """A new target from its fields (absent or None: the default)."""
    unknown = set(fields) - set(FIELDS)
    if unknown:
        raise InvalidInput(f"unknown field(s): {', '.join(sorted(unknown))}")
    p = _probe_of(fields, settings)
    interval_s = fields.get("interval_s")
    timeout_s = fields.get("timeout_s")
    if timeout_s is None:
        http = p.kind == "http"
        timeout_s = settings.default_http_timeout_s if http else settings.default_timeout_s
    return Draft(
        probe=p,
        name=clean_name(fields.get("name")),
        interval_ms=_interval(p.kind, 1.0 if interval_s is None else interval_s, settings),
        timeout_ms=timeout_ms(timeout_s),
        tags=tuple(parse_tags(fields.get("tags"))),
    )


def changed(current: Draft, changes: Mapping[str, Any], settings: Settings) -> Draft:
    """`current` with `changes` applied (a key present with None clears that field).

    Giving an address drops the hostname and the other way round; switching
    the kind drops what the old kind had and the new one cannot take.
    """
    unknown = set(changes) - set(FIELDS)
    if unknown:
        raise InvalidInput(f"unknown field(s): {', '.join(sorted(unknown))}")
    fields = current.fields()
    kind = changes.get("kind") or fields.get("kind", "icmp")
    if kind != fields.get("kind", "icmp"):
        keep = {"name", "interval_s", "timeout_s", "tags"}
        if kind != "http" and current.probe.kind != "http":
            keep |= {"address", "hostname", "family"}
        fields = {k: v for k, v in fields.items() if k in keep}
    if "address" in changes:
        fields.pop("hostname", None)
        fields.pop("family", None)
    if "hostname" in changes:
        fields.pop("address", None)
    fields.update(changes)
    fields["kind"] = kind
    p = _probe_of(fields, settings)
    return replace(
        current,
        probe=p,
        name=clean_name(fields.get("name")),
        interval_ms=_interval(p.kind, fields["interval_s"], settings),
        timeout_ms=timeout_ms(fields["timeout_s"]),
        tags=tuple(parse_tags(fields.get("tags"))),
    )

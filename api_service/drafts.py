"""A target as asked for: every column checked, before it meets the database.

One function builds a draft from the fields of a request or a targets-file
entry, another applies a change to a stored target's draft; both run every
check again, so no combination can slip in through a partial update. A tcp
or http target whose address is literal must be an allowed probe destination
(shared/destinations.py); a hostname is checked by the prober once resolved.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

from api_service import probe, rules
from api_service.probe import Probe
from shared.errors import InvalidInput
from shared.settings import MIN_INTERVAL_S, Settings

PROBE_FIELDS = (
    "kind",
    "address",
    "hostname",
    "port",
    "url",
    "family",
    "http_method",
    "expect_status",
    "expect_body",
)
FIELDS = ("name", *PROBE_FIELDS, "interval_s", "timeout_s", "tags")


@dataclass(frozen=True, slots=True)
class Draft:
    probe: Probe
    name: str | None
    interval_ms: int
    timeout_ms: int
    tags: tuple[str, ...] = ()

    def fields(self) -> dict[str, Any]:
        """The wire fields that say this target, leaving out defaults."""
        p = self.probe
        out: dict[str, Any] = {"name": self.name}
        if p.kind != "icmp":
            out["kind"] = p.kind
        for key in ("address", "hostname", "port", "url", "expect_status", "expect_body"):
            if getattr(p, key) is not None:
                out[key] = getattr(p, key)
        if p.family != "any":
            out["family"] = p.family
        if p.kind == "http" and p.http_method != "GET":
            out["http_method"] = p.http_method
        out["interval_s"] = self.interval_ms / 1000
        out["timeout_s"] = self.timeout_ms / 1000
        if self.tags:
            out["tags"] = list(self.tags)
        return out


def _probe_of(fields: Mapping[str, Any], settings: Settings) -> Probe:
    given = {k: fields[k] for k in PROBE_FIELDS if fields.get(k) is not None}
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
    return rules.interval_ms(interval_s, floor.get(kind, MIN_INTERVAL_S), kind)


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
        name=rules.clean_name(fields.get("name")),
        interval_ms=_interval(p.kind, 1.0 if interval_s is None else interval_s, settings),
        timeout_ms=rules.timeout_ms(timeout_s),
        tags=tuple(probe.parse_tags(fields.get("tags"))),
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
        name=rules.clean_name(fields.get("name")),
        interval_ms=_interval(p.kind, fields["interval_s"], settings),
        timeout_ms=rules.timeout_ms(fields["timeout_s"]),
        tags=tuple(probe.parse_tags(fields.get("tags"))),
    )

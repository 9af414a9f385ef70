"""What a target probes: an IP or a hostname (icmp, tcp) or a URL (http).

Pure checks shared by the REST routes, bulk creation and the targets file, so
every way in refuses the same input with the same message. Values come back
normalised (addresses in their short form, hostnames lower-case ASCII), so
comparing a stored target with a normalised request tells exactly what changes.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from shared.errors import InvalidInput
from shared.target_fields import (
    FAMILIES,
    HTTP_METHODS,
    OPTIONS,
    PROBE_KINDS,
    FieldInfo,
    ProbeOptions,
    field_infos,
    probe_field,
)

MAX_HOSTNAME_LENGTH = 253
MAX_URL_LENGTH = 2048
MAX_EXPECT_BODY_LENGTH = 1024

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


@dataclass(frozen=True, slots=True, kw_only=True)
class Probe(ProbeOptions):
    """The probe of one target, validated; exactly the columns of its row: where it
    probes (an IP or a hostname; neither for http) and how (shared/target_fields.py)."""

    address: str | None = probe_field(None, examples=("192.0.2.10", "2001:db8::1"), sql="inet")
    hostname: str | None = probe_field(None, "a DNS name the prober resolves (instead of address)")

    def identity(self) -> tuple[object, ...]:
        """What no two live targets may share."""
        return (self.kind, self.address or self.hostname, self.port, self.url, self.family)

    def describe(self) -> str:
        if self.kind == "http":
            return f"url {self.url}"
        where = f"address {self.address}" if self.address else f"hostname {self.hostname}"
        if self.family != "any":
            where += f" ({self.family})"
        return f"tcp {where} port {self.port}" if self.kind == "tcp" else where


# Every column of a probe, in the order the API lists them: the kind, where it
# probes, then how.
_KIND, *_HOW = OPTIONS
_WHERE = tuple(f for f in field_infos(Probe) if f not in OPTIONS)
PROBE_FIELDS: tuple[FieldInfo, ...] = (_KIND, *_WHERE, *_HOW)


def probe_of_row(row: Mapping[str, Any]) -> Probe:
    """The probe of a `targets` row (address read as host(address))."""
    return Probe(**{f.name: row[f.name] for f in PROBE_FIELDS})


def parse_address(raw: str) -> str:
    """Normalise a literal IPv4/IPv6 address; refuse names and non-unicast ones."""
    text = raw.strip()
    if not text:
        raise InvalidInput("address is empty: give a literal IPv4 or IPv6 address")
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise InvalidInput(
            f"address {raw!r} is not a literal IPv4 or IPv6 address (a host name goes in hostname)"
        ) from None
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id is not None:
            raise InvalidInput(
                f"address {raw!r} has a scope id; scoped addresses are not supported"
            )
        # ::ffff:a.b.c.d is an IPv4 host; track it as one.
        if address.ipv4_mapped is not None:
            address = address.ipv4_mapped
    if address.is_unspecified:
        raise InvalidInput(f"address {raw!r} is the unspecified address")
    if address.is_multicast:
        raise InvalidInput(f"address {raw!r} is a multicast address")
    if address == ipaddress.IPv4Address("255.255.255.255"):
        raise InvalidInput(f"address {raw!r} is the broadcast address")
    return str(address)


def parse_hostname(raw: str) -> str:
    """A DNS name (IDNA allowed) in its lower-case ASCII form, without the final dot."""
    text = raw.strip().rstrip(".")
    if not text:
        raise InvalidInput("hostname is empty")
    try:
        ipaddress.ip_address(text)
    except ValueError:
        pass
    else:
        raise InvalidInput(f"hostname {raw!r} is an IP address; give it as address")
    try:
        ascii_name = text.encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise InvalidInput(f"hostname {raw!r} is not a valid DNS name") from None
    labels = ascii_name.split(".")
    if len(ascii_name) > MAX_HOSTNAME_LENGTH or not all(_LABEL.match(x) for x in labels):
        raise InvalidInput(
            f"hostname {raw!r} is not a valid DNS name (labels of letters, digits and"
            f" hyphens, 1-63 characters each, {MAX_HOSTNAME_LENGTH} in all)"
        )
    if labels[-1].isdigit():
        raise InvalidInput(
            f"{raw!r} is neither an IP address nor a DNS name (its last label is numeric)"
        )
    return ascii_name


def parse_url(raw: str) -> str:
    """An http(s) URL with a host; the host normalised like a hostname."""
    text = raw.strip()
    if len(text) > MAX_URL_LENGTH:
        raise InvalidInput(f"url is longer than {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise InvalidInput(f"url {raw!r} is not a valid URL: {exc}") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise InvalidInput(f"url {raw!r} must start with http:// or https://")
    if parts.username is not None or parts.password is not None:
        raise InvalidInput("url must not carry credentials (user:password@)")
    if not parts.hostname:
        raise InvalidInput(f"url {raw!r} has no host")
    try:
        host = parse_address(parts.hostname)
        netloc = f"[{host}]" if ":" in host else host
    except InvalidInput:
        netloc = parse_hostname(parts.hostname)
    if port is not None:
        netloc += f":{port}"
    return urlunsplit((parts.scheme.lower(), netloc, parts.path or "/", parts.query, ""))


def parse_port(port: int) -> int:
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise InvalidInput(f"port must be between 1 and 65535, got {port!r}")
    return port


def parse_probe(
    *,
    kind: str = "icmp",
    address: str | None = None,
    hostname: str | None = None,
    port: int | None = None,
    url: str | None = None,
    family: str | None = None,
    http_method: str | None = None,
    expect_status: int | None = None,
    expect_body: str | None = None,
) -> Probe:
    """Check one combination of probe fields; the message names what is wrong."""
    if kind not in PROBE_KINDS:
        raise InvalidInput(f"kind must be one of {', '.join(PROBE_KINDS)}, got {kind!r}")
    if family is not None and family not in FAMILIES:
        raise InvalidInput(f"family must be one of {', '.join(FAMILIES)}, got {family!r}")
    if kind != "http":
        for field, value in (
            ("url", url),
            ("http_method", http_method),
            ("expect_status", expect_status),
            ("expect_body", expect_body),
        ):
            if value is not None:
                raise InvalidInput(f"{field} is for kind http only, not {kind}")
    if kind == "http":
        return _http_probe(
            address, hostname, port, url, family, http_method, expect_status, expect_body
        )
    if (address is None) == (hostname is None):
        raise InvalidInput(f"{_a(kind)} target needs exactly one of address or hostname")
    if kind == "icmp" and port is not None:
        raise InvalidInput("port is for kind tcp only (an icmp echo has no port)")
    if kind == "tcp" and port is None:
        raise InvalidInput("a tcp target needs a port")
    if address is not None and family not in (None, "any"):
        raise InvalidInput("family applies to hostnames only; an address has its own family")
    return Probe(
        kind=kind,
        address=None if address is None else parse_address(address),
        hostname=None if hostname is None else parse_hostname(hostname),
        port=None if port is None else parse_port(port),
        family=family or "any",
    )


def _http_probe(
    address: str | None,
    hostname: str | None,
    port: int | None,
    url: str | None,
    family: str | None,
    http_method: str | None,
    expect_status: int | None,
    expect_body: str | None,
) -> Probe:
    if url is None:
        raise InvalidInput("an http target needs a url")
    for field, value in (("address", address), ("hostname", hostname), ("port", port)):
        if value is not None:
            raise InvalidInput(f"an http target takes its host and port from url, not {field}")
    method = (http_method or "GET").upper()
    if method not in HTTP_METHODS:
        raise InvalidInput(f"http_method must be GET or HEAD, got {http_method!r}")
    if expect_status is not None and (
        isinstance(expect_status, bool) or not 100 <= expect_status <= 599
    ):
        raise InvalidInput(f"expect_status must be between 100 and 599, got {expect_status!r}")
    if expect_body is not None:
        if not expect_body:
            raise InvalidInput("expect_body is empty; leave it out to accept any body")
        if len(expect_body) > MAX_EXPECT_BODY_LENGTH:
            raise InvalidInput(f"expect_body is longer than {MAX_EXPECT_BODY_LENGTH} characters")
        if method == "HEAD":
            raise InvalidInput("expect_body needs http_method GET (a HEAD answer has no body)")
    clean_url = parse_url(url)
    if family not in (None, "any"):
        try:
            ipaddress.ip_address(urlsplit(clean_url).hostname or "")
        except ValueError:
            pass
        else:
            raise InvalidInput("family applies to hostnames only; the url's host is an address")
    return Probe(
        kind="http",
        url=clean_url,
        family=family or "any",
        http_method=method,
        expect_status=expect_status,
        expect_body=expect_body,
    )


def _a(kind: str) -> str:
    return f"an {kind}" if kind == "icmp" else f"a {kind}"

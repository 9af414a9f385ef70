"""Turning a hostname into the address to probe.

`HostResolver` reads an /etc/hosts-style override file first (names pinned by
the operator, or by tests that must not reach any public resolver), then the
system resolver through the event loop's `getaddrinfo` (a thread, so a slow
DNS server never blocks pinging). getaddrinfo does not tell the DNS TTL, so
its answers carry none and the caller re-resolves on its own interval.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

log = logging.getLogger(__name__)

# getaddrinfo error codes worth a readable name in the stored record.
_GAI_REASONS = {
    socket.EAI_NONAME: "name not found",
    socket.EAI_AGAIN: "temporary resolver failure",
    socket.EAI_FAIL: "resolver failure",
}
if hasattr(socket, "EAI_NODATA"):
    _GAI_REASONS[socket.EAI_NODATA] = "no address for the name"


class ResolveError(Exception):
    """The name did not resolve (in the wanted family); `str()` is the reason stored."""


@dataclass(frozen=True, slots=True)
class Resolved:
    address: str
    ttl_s: float | None  # the answer's DNS TTL when the resolver knows it


class Resolver(Protocol):
    async def resolve(self, host: str, family: str) -> Resolved: ...


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def pick_address(addresses: Iterable[str], family: str) -> str | None:
    """The first address of `family` (any: the first answer), normalised; None if none."""
    for text in addresses:
        try:
            address = ipaddress.ip_address(text.split("%", 1)[0])
        except ValueError:
            continue
        if family == "any" or (family == "ipv6") == (address.version == 6):
            return str(address)
    return None


def parse_hosts(text: str) -> dict[str, list[str]]:
    """`address name [alias...]` lines, `#` comments; names folded to lower case, in order."""
    table: dict[str, list[str]] = {}
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) < 2 or not is_ip(fields[0]):
            continue
        for name in fields[1:]:
            table.setdefault(name.lower().rstrip("."), []).append(fields[0])
    return table


class HostsFile:
    """An override file, re-read when it changes (operators and tests edit it live)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._stamp: tuple[int, int] | None = None
        self._table: dict[str, list[str]] = {}

    def lookup(self, host: str) -> list[str] | None:
        try:
            stat = os.stat(self._path)
        except OSError:
            self._stamp, self._table = None, {}
            return None
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp != self._stamp:
            try:
                self._table = parse_hosts(self._path.read_text(errors="replace"))
            except OSError as exc:
                log.warning("cannot read the hosts file", extra={"error": repr(exc)})
                return None
            self._stamp = stamp
        return self._table.get(host.lower().rstrip("."))


class HostResolver:
    """The prober's resolver: the override file, then (if allowed) the system's."""

    def __init__(self, hosts_file: Path | None = None, use_system: bool = True) -> None:
        self._hosts = None if hosts_file is None else HostsFile(hosts_file)
        self._use_system = use_system

    async def resolve(self, host: str, family: str) -> Resolved:
        if is_ip(host):
            return Resolved(str(ipaddress.ip_address(host)), None)
        pinned = None if self._hosts is None else self._hosts.lookup(host)
        if pinned is not None:
            return _chosen(pinned, family)
        if not self._use_system:
            raise ResolveError("name not found")
        af = {"ipv4": socket.AF_INET, "ipv6": socket.AF_INET6}.get(family, socket.AF_UNSPEC)
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, None, family=af, type=socket.SOCK_DGRAM)
        except socket.gaierror as exc:
            reason = _GAI_REASONS.get(exc.errno or 0, f"resolver error: {exc.strerror}")
            raise ResolveError(reason) from exc
        except UnicodeError as exc:
            raise ResolveError("invalid name") from exc
        return _chosen((str(info[4][0]) for info in infos), family)


def _chosen(addresses: Iterable[str], family: str) -> Resolved:
    address = pick_address(addresses, family)
    if address is None:
        raise ResolveError(f"no {family} address" if family != "any" else "no address")
    return Resolved(address, None)

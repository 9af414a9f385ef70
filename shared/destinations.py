"""Where tcp and http probes may connect: allowed networks less denied ones.

An HTTP probe reads back a status, whether a body holds a string and a
certificate: pointed at a cloud metadata service or an internal admin page,
that leaks. The prober checks the address it is about to connect to (after
its own DNS resolution, so a name that resolves to a denied address is
refused too) and stores the refusal as the slot's outcome; the API refuses a
literal address in a target at creation. ICMP echo is not restricted.

Denied by default: link-local networks (where the metadata services of the
big clouds answer, 169.254.169.254 among them), the other known metadata
addresses, and the unspecified "this host" range (0.0.0.0 connects to the
prober's own loopback). Loopback and private networks are allowed: watching
services on the prober's host and on the operator's own networks is what a
monitor is for, and the suite's test servers live on 127.0.0.1 and ::1.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

ALLOWED_SETTING = "PINGTRACK_PROBE_ALLOWED_NETWORKS"
DENIED_SETTING = "PINGTRACK_PROBE_DENIED_NETWORKS"

DEFAULT_ALLOWED = ("0.0.0.0/0", "::/0")
DEFAULT_DENIED = (
    "0.0.0.0/8",  # "this host": 0.0.0.0 reaches the prober's loopback
    "::/128",  # the same in IPv6
    "169.254.0.0/16",  # IPv4 link-local: AWS, GCP, Azure, OpenStack, ... metadata
    "fe80::/10",  # IPv6 link-local
    "fd00:ec2::254/128",  # AWS metadata over IPv6
    "100.100.100.200/32",  # Alibaba Cloud metadata
    "168.63.129.16/32",  # Azure host services (WireServer)
    "192.0.0.192/32",  # Oracle Cloud metadata (older instances)
)


def networks(texts: Iterable[str]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(text) for text in texts)


def unwrap(address: IPAddress) -> IPAddress:
    """::ffff:a.b.c.d is the IPv4 host a.b.c.d (and reaches it)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


@dataclass(frozen=True, slots=True)
class Destinations:
    """An address may be probed when an allowed network holds it and no denied one does."""

    allowed: tuple[IPNetwork, ...]
    denied: tuple[IPNetwork, ...]

    @classmethod
    def default(cls) -> Destinations:
        return cls(networks(DEFAULT_ALLOWED), networks(DEFAULT_DENIED))

    def refusal(self, address: str) -> str | None:
        """Why `address` may not be probed (for the operator), or None when it may."""
        try:
            ip = unwrap(ipaddress.ip_address(address.split("%", 1)[0]))
        except ValueError:
            return f"{address[:60]!r} is not an IP address"
        for network in self.denied:
            if ip in network:
                return f"{ip} is in {network} ({DENIED_SETTING})"
        if not any(ip in network for network in self.allowed):
            return f"{ip} is outside the allowed networks ({ALLOWED_SETTING})"
        return None

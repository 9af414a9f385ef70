"""Network-namespace lab hosts for tests: real packets to addresses we own.

    with NetLab() as lab:
        host = lab.host(echo_replies=False)       # a namespace at 198.18.x.y
        ... ping host.address ...

Everything built is removed on exit, even after a failure. Namespaces can be
chained (`lab.namespace()`, `lab.connect(a, b)`, `ns.route(...)`,
`ns.forwarding()`) to make multi-hop paths; `lab.chain(hops)` builds a target
that many routers away, `lab.shortcut` and `lab.route_via` change its path.
Addresses come from 198.18.0.0/15 (reserved for benchmarking), in /30 links
not already routed on this machine.
Needs root and iproute2: mark tests with `needs_netlab`.
"""

from __future__ import annotations

import ipaddress
import itertools
import os
import random
import shutil
import subprocess
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType

import pytest

LAB_NETWORK = ipaddress.ip_network("198.18.0.0/15")

needs_netlab = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None,
    reason="network-namespace labs need root and iproute2 (ip)",
)


class NetLabError(RuntimeError):
    """The lab could not be built, or would route somewhere it must not."""


def _run(args: Sequence[str]) -> str:
    done = subprocess.run(list(args), capture_output=True, text=True, timeout=10, check=False)
    if done.returncode != 0:
        raise NetLabError(f"{' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


@dataclass(frozen=True)
class Namespace:
    name: str

    def run(self, *args: str) -> str:
        """Run a command inside this namespace; its stdout."""
        return _run(["ip", "netns", "exec", self.name, *args])

    def sysctl(self, key: str, value: str) -> None:
        self.run("sysctl", "-qw", f"{key}={value}")

    def forwarding(self) -> None:
        """Make this namespace a router."""
        self.sysctl("net.ipv4.ip_forward", "1")

    def route(self, destination: str, via: str) -> None:
        self.run("ip", "route", "replace", destination, "via", via)

    def popen(self, *args: str) -> subprocess.Popen[str]:
        """Start a command inside this namespace; the caller owns the process."""
        return subprocess.Popen(
            ["ip", "netns", "exec", self.name, *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )


@dataclass(frozen=True)
class Link:
    """A veth pair: side a (None: the root namespace) and side b, one /30 between them."""

    a: Namespace | None
    b: Namespace
    a_device: str
    b_device: str
    a_address: str
    b_address: str
    network: str


@dataclass(frozen=True)
class LabHost:
    """A namespace reachable from the root namespace at `address`."""

    namespace: Namespace
    link: Link

    @property
    def address(self) -> str:
        return self.link.b_address


def route_device(address: str, namespace: Namespace | None = None) -> str:
    """The device `ip route get` picks for `address` (in `namespace`, or the root one)."""
    words = _run(
        [
            *(["ip", "netns", "exec", namespace.name] if namespace else []),
            "ip",
            "route",
            "get",
            address,
        ]
    ).split()
    if "dev" not in words:
        raise NetLabError(f"no route to {address}")
    return words[words.index("dev") + 1]


@dataclass(frozen=True)
class LabPath:
    """A target namespace behind `len(routers)` routers: that many hops from the root."""

    target: Namespace
    routers: tuple[Namespace, ...]
    links: tuple[Link, ...]  # root-r1, r1-r2, ..., rN-target (root-target when no routers)

    @property
    def address(self) -> str:
        return self.links[-1].b_address

    @property
    def hops(self) -> int:
        return len(self.routers)


class NetLab:
    """Owns the namespaces and links it builds, and deletes them on close."""

    def __init__(self) -> None:
        self._tag = uuid.uuid4().hex[:6]
        self._namespaces: list[Namespace] = []
        self._root_devices: list[str] = []
        self._links = 0
        self._networks: list[ipaddress.IPv4Network] = []
        self._root_routes: list[str] = []

    def __enter__(self) -> NetLab:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def namespace(self) -> Namespace:
        ns = Namespace(f"ptlab-{self._tag}-{len(self._namespaces)}")
        _run(["ip", "netns", "add", ns.name])
        self._namespaces.append(ns)
        ns.run("ip", "link", "set", "lo", "up")
        return ns

    def connect(self, a: Namespace | None, b: Namespace) -> Link:
        """A veth pair between `a` (None: root namespace) and `b`, each end addressed."""
        network = self._free_network()
        a_addr, b_addr = (str(h) for h in network.hosts())
        self._links += 1
        a_dev, b_dev = f"pt{self._tag}{self._links}a", f"pt{self._tag}{self._links}b"
        _run(["ip", "link", "add", a_dev, "type", "veth", "peer", "name", b_dev])
        if a is None:
            self._root_devices.append(a_dev)
        else:
            _run(["ip", "link", "set", a_dev, "netns", a.name])
        _run(["ip", "link", "set", b_dev, "netns", b.name])
        for ns, dev, addr in ((a, a_dev, a_addr), (b, b_dev, b_addr)):
            prefix = ["ip", "netns", "exec", ns.name] if ns else []
            _run([*prefix, "ip", "addr", "add", f"{addr}/{network.prefixlen}", "dev", dev])
            _run([*prefix, "ip", "link", "set", dev, "up"])
        return Link(a, b, a_dev, b_dev, a_addr, b_addr, str(network))

    def host(self, *, echo_replies: bool = True) -> LabHost:
        """A namespace one hop from the root namespace, routing back to it.

        With `echo_replies=False` its kernel ignores echo requests: a host
        that never answers.
        """
        ns = self.namespace()
        link = self.connect(None, ns)
        ns.run("ip", "route", "replace", "default", "via", link.a_address)
        if not echo_replies:
            ns.sysctl("net.ipv4.icmp_echo_ignore_all", "1")
        self.check_route(link.b_address, link.a_device)
        return LabHost(ns, link)

    def chain(self, hops: int, *, echo_replies: bool = True) -> LabPath:
        """A target `hops` routers away from the root namespace, routed both ways.

        Routers forward; each routes the target onwards and everything else
        back towards the root. The root gets a host route to the target only.
        """
        routers = [self.namespace() for _ in range(hops)]
        target = self.namespace()
        chain: list[Namespace | None] = [None, *routers, target]
        links = [self.connect(a, b) for a, b in itertools.pairwise(chain)]
        for router in routers:
            router.forwarding()
        for i, router in enumerate(routers):
            router.route("default", links[i].a_address)  # back towards the root
            router.route(f"{links[-1].b_address}/32", links[i + 1].b_address)
        target.route("default", links[-1].a_address)
        if not echo_replies:
            target.sysctl("net.ipv4.icmp_echo_ignore_all", "1")
        path = LabPath(target, tuple(routers), tuple(links))
        if routers:
            self.route_via(path.address, links[0])
        else:
            self.check_route(path.address, links[0].a_device)
        return path

    def shortcut(self, path: LabPath, router: int) -> Link:
        """A direct link from the root to `path.routers[router]`; no route uses it yet."""
        return self.connect(None, path.routers[router])

    def route_via(self, address: str, link: Link) -> None:
        """Route `address` from the root through `link` (root side a), then check it."""
        if link.a is not None:
            raise NetLabError("route_via needs a link from the root namespace")
        _run(
            ["ip", "route", "replace", f"{address}/32", "via", link.b_address, "dev", link.a_device]
        )
        self._root_routes.append(address)
        self.check_route(address, link.a_device)

    def check_route(self, address: str, device: str, namespace: Namespace | None = None) -> None:
        """Refuse to go on unless `address` routes into `device`: lab packets stay in the lab."""
        if ipaddress.ip_address(address) not in LAB_NETWORK:
            raise NetLabError(f"{address} is outside the lab network {LAB_NETWORK}")
        actual = route_device(address, namespace)
        if actual != device:
            raise NetLabError(f"{address} routes via {actual}, not the lab device {device}")

    def _free_network(self) -> ipaddress.IPv4Network:
        routed = [
            ipaddress.ip_network(word, strict=False)
            for line in _run(["ip", "-4", "route", "show", "table", "all"]).splitlines()
            for word in line.split()[:2]  # "local 127.0.0.0/8 ...": the type comes first
            if word[0].isdigit()
        ] + self._networks
        for _ in range(100):
            subnets = LAB_NETWORK.num_addresses // 4
            candidate = ipaddress.IPv4Network(
                (int(LAB_NETWORK.network_address) + 4 * random.randrange(subnets), 30)
            )
            if not any(candidate.overlaps(net) for net in routed):
                self._networks.append(candidate)
                return candidate
        raise NetLabError("no free /30 left in the lab network")

    def close(self) -> None:
        for address in self._root_routes:
            subprocess.run(
                ["ip", "route", "del", f"{address}/32"], capture_output=True, check=False
            )
        self._root_routes.clear()
        for dev in self._root_devices:
            subprocess.run(["ip", "link", "del", dev], capture_output=True, check=False)
        for ns in reversed(self._namespaces):
            subprocess.run(["ip", "netns", "del", ns.name], capture_output=True, check=False)
        self._root_devices.clear()
        self._namespaces.clear()

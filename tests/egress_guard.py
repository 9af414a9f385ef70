"""Egress guard: nothing the suite or a benchmark does may leave the machine.

An nftables table in the root namespace drops and counts, on every interface
but loopback and the suite's own lab veths (`pt*`), ICMP/ICMPv6 echo
requests, TCP SYNs and DNS (UDP/TCP port 53), and remembers where they were
going. Loopback and the namespaces the suite builds stay open; everything
else is a leak. Dropping, not just counting, keeps the rule unbroken even
while a leak is being found.

    python -m tests.egress_guard run -- python bench/writer_bench.py
    python -m tests.egress_guard clean      # remove tables of dead runs

Every script under bench/ calls `ensure_guarded()` first, so it runs guarded
however it is started.
The pytest side is `tests/egress_plugin.py`. Settings (environment):
PINGTRACK_EGRESS_GUARD=off turns it off (refused under CI=true);
PINGTRACK_EGRESS_UPLINKS=dev1,dev2 guards only those interfaces (the guard's
own test points it at a lab veth to prove a leak is caught).
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

TABLE_PREFIX = "pingtrack_egress_"
LAB_DEVICES = "pt*"  # tests/netlab.py names every root-side veth pt<tag><n>a
KINDS = ("icmp", "syn", "dns")
_SETS = {  # set name: (kind, family, key type)
    "icmp4": ("icmp", 4, "ipv4_addr"),
    "icmp6": ("icmp", 6, "ipv6_addr"),
    "syn4": ("syn", 4, "ipv4_addr . inet_service"),
    "syn6": ("syn", 6, "ipv6_addr . inet_service"),
    "dns4": ("dns", 4, "ipv4_addr"),
    "dns6": ("dns", 6, "ipv6_addr"),
}
_DNS = "meta l4proto { tcp, udp } th dport 53"
_SYN = "tcp flags & (syn | ack) == syn"
_CHECKS = "".join(
    f"\n    {rule}"
    for rule in (
        f"meta nfproto ipv4 {_DNS} update @dns4 {{ ip daddr }} counter name c_dns drop",
        f"meta nfproto ipv6 {_DNS} update @dns6 {{ ip6 daddr }} counter name c_dns drop",
        "icmp type echo-request update @icmp4 { ip daddr } counter name c_icmp drop",
        "icmpv6 type echo-request update @icmp6 { ip6 daddr } counter name c_icmp drop",
        f"meta nfproto ipv4 {_SYN} update @syn4 {{ ip daddr . tcp dport }} counter name c_syn drop",
        f"meta nfproto ipv6 {_SYN} update @syn6 {{ ip6 daddr . tcp dport }}"
        " counter name c_syn drop",
    )
)


def under_ci() -> bool:
    """CI=true: the guard and the skip policy are not optional."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def switched_off() -> bool:
    return os.environ.get("PINGTRACK_EGRESS_GUARD", "on").lower() == "off"


class GuardError(RuntimeError):
    """The guard could not be installed or read."""


@dataclass(frozen=True)
class Snapshot:
    """Packets dropped so far, by kind, and every destination seen."""

    packets: dict[str, int] = field(default_factory=dict)
    destinations: frozenset[str] = frozenset()

    @property
    def total(self) -> int:
        return sum(self.packets.values())

    def since(self, before: Snapshot) -> Snapshot:
        return Snapshot(
            {k: n - before.packets.get(k, 0) for k, n in self.packets.items()},
            self.destinations - before.destinations,
        )

    def describe(self) -> str:
        kinds = ", ".join(f"{n} {k}" for k, n in self.packets.items() if n)
        return f"{self.total} packets ({kinds}) to {', '.join(sorted(self.destinations))}"


def _nft(args: Sequence[str], stdin: str | None = None) -> str:
    done = subprocess.run(
        ["nft", *args], input=stdin, capture_output=True, text=True, timeout=20, check=False
    )
    if done.returncode != 0:
        raise GuardError(f"nft {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def _quote(devices: Iterable[str]) -> str:
    return ", ".join(f'"{d}"' for d in devices)


def ruleset(table: str, uplinks: Sequence[str] = (), exempt: Sequence[str] = ()) -> str:
    """The table's nft script: guard `uplinks`, or every interface but lo and the lab's."""
    if uplinks:
        scope = f"oifname != {{ {_quote(uplinks)} }} accept"
    else:
        scope = f'oifname "lo" accept\n    oifname "{LAB_DEVICES}" accept'
    v4 = [a for a in exempt if ipaddress.ip_address(a).version == 4]
    v6 = [a for a in exempt if ipaddress.ip_address(a).version == 6]
    allow = "".join(
        f"\n    {proto} daddr {{ {', '.join(addrs)} }} accept"
        for proto, addrs in (("ip", v4), ("ip6", v6))
        if addrs
    )
    sets = "".join(
        f"\n  set {name} {{ type {key}; flags dynamic; size 65536; }}"
        for name, (_, _, key) in _SETS.items()
    )
    counters = "".join(f"\n  counter c_{kind} {{ }}" for kind in KINDS)
    hooks = "".join(
        f"""
  chain {chain} {{
    type filter hook {hook} priority -10; policy accept;
    {scope}{allow}
    jump check
  }}"""
        for chain, hook in (("leaving", "output"), ("routed", "forward"))
    )
    return f"table inet {table} {{{sets}{counters}\n  chain check {{{_CHECKS}\n  }}{hooks}\n}}\n"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def guard_tables() -> list[str]:
    out = json.loads(_nft(["-j", "list", "tables", "inet"]))
    return [
        item["table"]["name"]
        for item in out.get("nftables", [])
        if "table" in item and item["table"]["name"].startswith(TABLE_PREFIX)
    ]


def remove_stale_tables() -> list[str]:
    """Tables left by runs that died without cleaning up (kill -9)."""
    removed = []
    for name in guard_tables():
        pid = re.fullmatch(rf"{TABLE_PREFIX}(\d+)", name)
        if pid is None or not _alive(int(pid.group(1))):
            _nft(["delete", "table", "inet", name])
            removed.append(name)
    return removed


def service_addresses(urls: Iterable[str]) -> list[str]:
    """Non-loopback addresses of the database/broker the suite is told to use."""
    found: set[str] = set()
    for url in urls:
        host = urlsplit(url).hostname
        if not host:
            continue
        try:
            infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
        except socket.gaierror:
            continue
        for info in infos:
            address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
            if not address.is_loopback:
                found.add(str(address))
    return sorted(found)


class EgressGuard:
    """One nftables table for one run, named after the process that owns it."""

    def __init__(self, uplinks: Sequence[str] = (), exempt: Sequence[str] = ()) -> None:
        self.table = f"{TABLE_PREFIX}{os.getpid()}"
        self.uplinks = tuple(uplinks)
        self.exempt = tuple(exempt)

    @classmethod
    def from_environment(cls, service_urls: Iterable[str] = ()) -> EgressGuard:
        uplinks = [d for d in os.environ.get("PINGTRACK_EGRESS_UPLINKS", "").split(",") if d]
        exempt = service_addresses(service_urls)
        live = os.environ.get("PINGTRACK_LIVE_TARGET", "")
        if live:  # the opt-in live test's one address, asked for by the operator
            exempt.append(str(ipaddress.ip_address(live)))
        return cls(uplinks, exempt)

    def install(self) -> None:
        if shutil.which("nft") is None:
            raise GuardError("nft not found (apt-get install nftables; deploy/setup.sh does)")
        if os.geteuid() != 0:
            raise GuardError("installing an nftables table needs root")
        remove_stale_tables()
        _nft(["-f", "-"], ruleset(self.table, self.uplinks, self.exempt))

    def remove(self) -> None:
        if self.table in guard_tables():
            _nft(["delete", "table", "inet", self.table])

    def snapshot(self) -> Snapshot:
        out = json.loads(_nft(["-j", "list", "table", "inet", self.table]))
        packets: dict[str, int] = {}
        destinations: set[str] = set()
        for item in out.get("nftables", []):
            if "counter" in item:
                packets[item["counter"]["name"].removeprefix("c_")] = item["counter"]["packets"]
            elif "set" in item and item["set"]["name"] in _SETS:
                kind = _SETS[item["set"]["name"]][0]
                for element in item["set"].get("elem", []):
                    destinations.add(_destination(kind, element))
        return Snapshot(packets, frozenset(destinations))


def _destination(kind: str, element: object) -> str:
    if isinstance(element, dict) and "elem" in element:  # elements with timeouts/counters
        element = element["elem"]["val"]
    if isinstance(element, dict) and "concat" in element:
        address, port = element["concat"]
        return f"{kind} {address} port {port}"
    return f"{kind} {element}"


GUARDED = "PINGTRACK_EGRESS_GUARDED"


def ensure_guarded() -> None:
    """Re-run this script under the guard unless it already is (benchmarks call this)."""
    if os.environ.get(GUARDED) == "1":
        return
    if switched_off():
        print("egress guard off (PINGTRACK_EGRESS_GUARD=off)", file=sys.stderr)
        return
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = os.pathsep.join(p for p in (repo, os.environ.get("PYTHONPATH", "")) if p)
    argv = [sys.executable, "-m", "tests.egress_guard", "run", "--", sys.executable, *sys.argv]
    os.execve(sys.executable, argv, {**os.environ, "PYTHONPATH": path})


def run_guarded(command: Sequence[str]) -> int:
    """Run `command` under a guard; fail (exit 3) if it sent anything out."""
    guard = EgressGuard.from_environment()
    try:
        guard.install()
    except GuardError as exc:
        print(f"egress guard: {exc} (PINGTRACK_EGRESS_GUARD=off runs unguarded)", file=sys.stderr)
        return 3
    try:
        code = subprocess.call(list(command), env={**os.environ, GUARDED: "1"})
        leaked = guard.snapshot()
    finally:
        guard.remove()
    if leaked.total:
        print(f"egress guard: {' '.join(command)} sent {leaked.describe()}", file=sys.stderr)
        return code or 3
    print("egress guard: 0 packets left the machine", file=sys.stderr)
    return code


def main(argv: Sequence[str]) -> int:
    if argv[:1] == ["clean"]:
        for name in remove_stale_tables():
            print(f"egress guard: removed stale table {name}")
        return 0
    if argv[:1] == ["run"] and len(argv) > 2 and argv[1] == "--":
        return run_guarded(argv[2:])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

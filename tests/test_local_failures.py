"""Slots the prober cannot send for a reason of its own are counted, never stored as loss.

Real sockets throughout: a local nftables rule (in a namespace the test
builds) makes the kernel refuse sends with EPERM, a namespace with IPv6
switched off has no address to send to ::1 from (EADDRNOTAVAIL), a
descriptor limit keeps the IPv6 socket from opening, and a datagram socket
(one kernel identifier) with the echo replies switched off runs out of
(identifier, sequence) keys.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from api_service.ops.fleet import ProberRow
from api_service.ops.health import FleetState, QueueState, degraded_reasons
from api_service.ops.metrics import fleet_families, render
from prober_service.local_failures import LOCAL_ERRNOS, LOCAL_REASONS, errno_reason
from prober_service.probe_outcome import os_error_reason
from shared.settings import Settings
from tests.api_client import api_client
from tests.conftest import ADMIN_TOKEN, AMQP_URL, eventually
from tests.fault_accounting import account, prober_counts
from tests.fleet_support import fresh_database, insert_targets, stored
from tests.netlab import Namespace, NetLab, needs_netlab
from tests.probe_stack import refused_port
from tests.stack import TEST_ENVIRONMENT
from tests.tcp_proxy import TcpProxy
from writer_service.main import run as run_writer

REPO = Path(__file__).resolve().parent.parent
needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="raw ICMP sockets need root (or CAP_NET_RAW)"
)
pytestmark = pytest.mark.timeout(60)

REFUSED = "127.0.0.2"  # the address the namespace's own firewall refuses


def refuse(ns: Namespace) -> None:
    """The namespace's own firewall drops its output to REFUSED: sends fail with EPERM."""
    ns.run("nft", "add table ip ptlocal")
    ns.run("nft", "add chain ip ptlocal out { type filter hook output priority 0 ; }")
    ns.run("nft", f"add rule ip ptlocal out ip daddr {REFUSED} drop")


def allow(ns: Namespace) -> None:
    ns.run("nft", "delete table ip ptlocal")


def without_ipv6(ns: Namespace) -> None:
    """IPv6 off in the namespace: no ::1, no IPv6 address to send from (EADDRNOTAVAIL)."""
    for device in ("all", "default", "lo"):
        ns.sysctl(f"net.ipv6.conf.{device}.disable_ipv6", "1")


@pytest.fixture
def lab() -> Iterator[NetLab]:
    with NetLab() as built:
        yield built


def run_script(script: str, *argv: str, namespace: Namespace | None = None) -> dict[str, object]:
    """Run `script` in a Python of its own (in `namespace`); what it printed, as JSON."""
    args = [sys.executable, "-c", script, *argv]
    if namespace is not None:
        args = ["ip", "netns", "exec", namespace.name, *args]
    done = subprocess.run(args, capture_output=True, text=True, timeout=40, cwd=REPO)
    assert done.returncode == 0, done.stderr
    out: dict[str, object] = json.loads(done.stdout)
    return out


# Prints what the engine did with each target's pings.
_REPORT = """
    await engine.drain(3.0)
    engine.close()
    print(json.dumps({
        "answered": sorted({r[0] for r in results if r[2] is not None}),
        "lost": sorted({r[0] for r in results if r[2] is None}),
        "results": len(results),
        "sent": engine.sent,
        "local": engine.local.by_reason,
        "local_per_target": engine.local.by_target,
        "send_errors": engine.stats.send_errors,
    }))
"""

REFUSED_SCRIPT = f"""
import asyncio, json
from prober_service.engine import Pinger

async def main():
    results = []
    engine = Pinger(lambda *r: results.append(r), mode="raw")
    engine.open()
    for _ in range(3):
        engine.send(1, "127.0.0.1", False, 1_000_000_000)
        engine.send(2, "{REFUSED}", False, 1_000_000_000)
        engine.send(3, "::1", True, 1_000_000_000)
{_REPORT}
asyncio.run(main())
"""


@needs_netlab
def test_sends_the_kernel_refuses_are_counted_by_reason_not_lost(lab: NetLab) -> None:
    ns = lab.namespace()
    refuse(ns)
    without_ipv6(ns)
    out = run_script(REFUSED_SCRIPT, namespace=ns)
    assert out["answered"] == [1]
    assert out["lost"] == []  # neither the refused address nor IPv6 produced a lost ping
    assert out["results"] == 3
    assert out["sent"] == {"1": 3}
    assert out["local"] == {"eperm": 3, "eaddrnotavail": 3}
    assert out["local_per_target"] == {"2": 3, "3": 3}
    assert out["send_errors"] == 6


NO_IPV6_SOCKET_SCRIPT = f"""
import asyncio, json, os, resource
from prober_service.engine import Pinger

async def main():
    results = []
    engine = Pinger(lambda *r: results.append(r), mode="raw")
    # Room for one descriptor more: the IPv4 socket opens, the IPv6 one fails
    # to, as on a host without IPv6.
    lowest = os.open(os.devnull, os.O_RDONLY)
    os.close(lowest)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowest + 1, hard))
    try:
        engine.open()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert engine.modes == {{"ipv4": "raw"}}, engine.modes
    for _ in range(3):
        engine.send(1, "127.0.0.1", False, 1_000_000_000)
        engine.send(2, "::1", True, 1_000_000_000)
{_REPORT}
asyncio.run(main())
"""


@needs_root
def test_an_ipv6_target_without_an_ipv6_socket_is_counted_not_lost() -> None:
    out = run_script(NO_IPV6_SOCKET_SCRIPT)
    assert (out["answered"], out["lost"], out["results"]) == ([1], [], 3)
    assert out["sent"] == {"1": 3}
    assert out["local"] == {"no_socket": 3}
    assert out["local_per_target"] == {"2": 3}
    assert out["send_errors"] == 0  # the kernel was never asked


NO_IDENTIFIER_SCRIPT = """
import asyncio, json
from prober_service.engine import Pinger
from prober_service.idents import SEQ_SPACE

async def main():
    results = []
    engine = Pinger(lambda *r: results.append(r), mode="dgram")
    engine.open()
    # One kernel identifier: SEQ_SPACE pings in flight take every key.
    for _ in range(SEQ_SPACE):
        engine.send(1, "127.0.0.1", False, 30_000_000_000)
    for _ in range(3):
        engine.send(2, "127.0.0.1", False, 30_000_000_000)
    print(json.dumps({
        "pending": engine.pending_count,
        "results": len(results),
        "sent": engine.sent,
        "local": engine.local.by_reason,
        "local_per_target": engine.local.by_target,
    }))
    engine.close()

asyncio.run(main())
"""


@needs_netlab
def test_pings_beyond_the_free_identifiers_are_counted_not_lost(lab: NetLab) -> None:
    ns = lab.namespace()
    ns.sysctl("net.ipv4.ping_group_range", "0 2147483647")
    ns.sysctl("net.ipv4.icmp_echo_ignore_all", "1")  # every ping stays in flight
    out = run_script(NO_IDENTIFIER_SCRIPT, namespace=ns)
    assert out["pending"] == 1 << 16
    assert out["results"] == 0
    assert out["sent"] == {"1": 1 << 16}
    assert out["local"] == {"no_identifier": 3}
    assert out["local_per_target"] == {"2": 3}


OUT_OF_DESCRIPTORS_SCRIPT = """
import asyncio, json, resource, socket, sys
from prober_service.probe_http import ssl_context
from prober_service.probes import Probes
from shared.codec import TargetSpec

port = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))

async def main():
    results, details = [], []
    probes = Probes(
        lambda *r: results.append(r), details.append,
        limit=4, context=ssl_context(None), body_max=100,
    )
    tcp = TargetSpec(1, "127.0.0.1", 1000, 500, "active", 1, kind="tcp", port=port)
    http = TargetSpec(
        2, "127.0.0.1", 1000, 500, "active", 1, kind="http", url=f"http://127.0.0.1:{port}/"
    )
    held = []
    try:
        while True:
            held.append(socket.socket())
    except OSError:
        pass
    for spec in (tcp, http):
        probes.sender_for(spec)(spec.id, "127.0.0.1", False, 500_000_000)
    await probes.drain(5.0)
    for sock in held:
        sock.close()
    unstored = (len(results), len(details), probes.failed, +probes.sent)
    # With descriptors back, the refusal is the network's answer: stored.
    probes.sender_for(tcp)(1, "127.0.0.1", False, 500_000_000)
    await probes.drain(5.0)
    print(json.dumps({
        "unstored": unstored,
        "local": probes.local.by_reason,
        "local_per_target": probes.local.by_target,
        "stored": [[r[0], r[2]] for r in results],
        "details": [[d.target_id, d.error] for d in details],
        "sent": probes.sent,
    }))

asyncio.run(main())
"""


def test_probes_without_a_free_descriptor_are_counted_not_stored() -> None:
    out = run_script(OUT_OF_DESCRIPTORS_SCRIPT, str(refused_port()))
    # Neither the tcp nor the http probe stored anything, or counted as sent or failed.
    assert out["unstored"] == [0, 0, 0, {}]
    assert out["local"] == {"emfile": 2}
    assert out["local_per_target"] == {"1": 1, "2": 1}
    assert (out["stored"], out["details"]) == ([[1, None]], [[1, "refused"]])
    assert out["sent"] == {"1": 1, "2": 0}


def test_local_probe_reasons_are_the_errno_words_probes_give() -> None:
    """A tcp/http outcome is local exactly when its reason is a local errno's word."""
    for code in LOCAL_ERRNOS:
        assert os_error_reason(OSError(code, "x")) in LOCAL_REASONS
    for code in (errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ECONNRESET):
        assert os_error_reason(OSError(code, "x")) not in LOCAL_REASONS
    assert errno_reason(PermissionError(errno.EPERM, "x")) == "eperm"
    assert errno_reason(BlockingIOError(errno.EAGAIN, "x")) == "eagain"
    assert errno_reason(OSError("no errno")) == "oserror"


def _prober(prober_id: str, age_s: float, stats: dict[str, object]) -> ProberRow:
    now = datetime.now(UTC)
    return ProberRow(prober_id, now, now, age_s, 256, stats)


def test_metrics_count_local_failures_by_prober_and_reason() -> None:
    rows = [
        _prober("p1", 0.5, {"lost": 3, "local_failures": {"no_socket": 2, "eperm": 7}}),
        _prober("p2", 0.5, {"lost": 0, "local_failures": {}}),
        _prober("gone", 600.0, {"local_failures": {"eperm": 9}}),
    ]
    lines = render(fleet_families(rows)).splitlines()
    local = [line for line in lines if "local_failures" in line]
    assert local == [
        "# HELP pingtrack_prober_local_failures_total"
        " Slots not sent for a reason of the prober's own (not losses), by reason.",
        "# TYPE pingtrack_prober_local_failures_total counter",
        'pingtrack_prober_local_failures_total{prober="p1",reason="eperm"} 7',
        'pingtrack_prober_local_failures_total{prober="p1",reason="no_socket"} 2',
    ]
    assert 'pingtrack_prober_lost_total{prober="p1"} 3' in lines


def test_health_names_each_prober_with_local_failures_lately() -> None:
    fleet = FleetState(3, 2, 0, [], {"p1": {"no_socket": 1, "eperm": 4}})
    assert degraded_reasons("ok", "ok", QueueState(0, 1), fleet) == [
        "prober p1: slots not sent for local reasons lately (eperm 4, no_socket 1)"
    ]
    quiet = FleetState(3, 2, 0, [])
    assert degraded_reasons("ok", "ok", QueueState(0, 1), quiet) == []


def via(url: str, host: str, port: int) -> str:
    """`url` with its host and port replaced (its user and password kept)."""
    parts = urlsplit(url)
    user, _, _ = parts.netloc.rpartition("@")
    return urlunsplit(parts._replace(netloc=f"{user}@{host}:{port}" if user else f"{host}:{port}"))


@asynccontextmanager
async def proxied(url: str, listen_host: str) -> AsyncIterator[str]:
    """`url` as reached through a proxy listening on `listen_host`."""
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    async with TcpProxy(parts.hostname, parts.port, listen_host) as proxy:
        yield via(url, listen_host, proxy.port)


def _start_prober(ns: Namespace, env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log:
        return subprocess.Popen(
            ["ip", "netns", "exec", ns.name, sys.executable, "-m", "pingtrack", "prober"],
            env={**os.environ, **TEST_ENVIRONMENT, **env},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )


def _stop_prober(process: subprocess.Popen[bytes], log_path: Path) -> list[dict[str, Any]]:
    """SIGTERM, a clean exit, and the JSON lines it logged."""
    process.send_signal(signal.SIGTERM)
    try:
        code = process.wait(20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise
    text = log_path.read_text(errors="replace")
    assert code == 0, text[-4000:]
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


@asynccontextmanager
async def prober_in(
    ns: Namespace, env: dict[str, str], log_path: Path
) -> AsyncIterator[list[dict[str, Any]]]:
    """`pingtrack prober` inside `ns`; once stopped, the list holds the lines it logged."""
    lines: list[dict[str, Any]] = []
    process = _start_prober(ns, env, log_path)
    try:
        yield lines
    finally:
        lines += await asyncio.to_thread(_stop_prober, process, log_path)


def metric(text: str, name: str) -> dict[str, float]:
    """Samples of one metric by their label text."""
    found = {}
    for line in text.splitlines():
        if line.startswith(name + "{"):
            key, value = line.rsplit(" ", 1)
            found[key[len(name) :]] = float(value)
    return found


@needs_netlab
@pytest.mark.timeout(90)
async def test_a_prober_refused_locally_stores_a_gap_not_loss_and_says_why(
    lab: NetLab, tmp_path: Path
) -> None:
    """A prober in a namespace of its own, reaching PostgreSQL and RabbitMQ through
    proxies on its veth: its firewall refuses one target for a while, IPv6 is off."""
    ns = lab.namespace()
    link = lab.connect(None, ns)
    async with fresh_database() as dsn:
        settings = Settings(
            database_url=dsn,
            amqp_url=AMQP_URL,
            amqp_prefix=f"pt-local-{uuid.uuid4().hex[:8]}",
            admin_token=ADMIN_TOKEN,  # type: ignore[arg-type]
            batch_max_delay_s=0.2,
            schedule_ladder=False,
        )
        answering, refused, ipv6 = await insert_targets(
            dsn, ["127.0.0.1", REFUSED, "::1"], 200, 1000
        )
        without_ipv6(ns)
        stop = asyncio.Event()
        writer = asyncio.create_task(run_writer(settings, stop))
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
        try:
            async with (
                proxied(dsn, link.a_address) as prober_dsn,
                proxied(AMQP_URL, link.a_address) as prober_amqp,
                api_client(settings) as api,
                prober_in(
                    ns,
                    {
                        "PINGTRACK_DATABASE_URL": prober_dsn,
                        "PINGTRACK_AMQP_URL": prober_amqp,
                        "PINGTRACK_AMQP_PREFIX": settings.amqp_prefix,
                        "PINGTRACK_PROBER_ID": "local-prober",
                        "PINGTRACK_ICMP_MODE": "raw",
                        "PINGTRACK_BATCH_MAX_DELAY_S": "0.2",
                        "PINGTRACK_RECONCILE_INTERVAL_S": "0.3",
                        "PINGTRACK_SPOOL_DIR": str(tmp_path / "spool"),
                        "PINGTRACK_LOG_LEVEL": "INFO",
                    },
                    tmp_path / "prober.log",
                ) as logged,
            ):

                async def stored_at_least(target_id: int, n: int) -> bool:
                    return len(await stored(pool, target_id)) >= n

                await eventually(lambda: stored_at_least(refused, 5), timeout=30, interval=0.2)
                refuse(ns)  # for a while: a gap in the target's pings, not a loss

                async def refusals_shown() -> tuple[str, dict[str, object]] | None:
                    text = (await api.get("/metrics")).text
                    counts = metric(text, "pingtrack_prober_local_failures_total")
                    if counts.get('{prober="local-prober",reason="eperm"}', 0) < 5:
                        return None
                    return text, (await api.get("/health")).json()

                shown = await eventually(refusals_shown, timeout=15, interval=0.2)
                assert isinstance(shown, tuple)
                text, health = shown
                allow(ns)
                before = len(await stored(pool, refused))
                await eventually(
                    lambda: stored_at_least(refused, before + 5), timeout=15, interval=0.2
                )
            stopped = [line for line in logged if line.get("msg") == "prober stopped"]
            assert len(stopped) == 1, logged[-5:]
            line = stopped[0]
            sent = {int(k): v for k, v in line["sent_per_target"].items()}

            async def all_stored() -> bool:
                counts = {tid: len(await stored(pool, tid)) for tid in sent}
                return counts == sent

            await eventually(all_stored, timeout=10, interval=0.2)
            rows = {tid: await stored(pool, tid) for tid in (answering, refused, ipv6)}
            async with api_client(settings) as api:
                stats = {tid: (await api.get(f"/targets/{tid}/stats")).json() for tid in rows}
                events = (await api.get(f"/targets/{refused}/events")).json()
        finally:
            stop.set()
            await writer
            await pool.close()

    # What /metrics and /health said while the firewall refused.
    counts = metric(text, "pingtrack_prober_local_failures_total")
    assert counts['{prober="local-prober",reason="eaddrnotavail"}'] > 0
    assert metric(text, "pingtrack_prober_lost_total") == {'{prober="local-prober"}': 0}
    assert health["status"] == "degraded"
    (said,) = [r for r in health["reasons"] if r.startswith("prober local-prober:")]
    assert "eperm" in said and "eaddrnotavail" in said
    assert ipv6 in [t["id"] for t in health["stale_targets"]["items"]]

    # Nothing stored as lost: the refused target has a gap, IPv6 nothing at all.
    assert all(r.rtt_ms is not None for found in rows.values() for r in found)
    assert rows[ipv6] == []
    local = line["local_failures"]
    unsent = {int(k): v for k, v in line["unsent_per_target"].items()}
    assert isinstance(local, dict) and set(local) == {"eperm", "eaddrnotavail"}
    assert unsent == {refused: local["eperm"], ipv6: local["eaddrnotavail"]}
    assert line["lost"] == 0

    # The gap is exactly the slots announced as not sent; every slot sent is stored.
    counts_of = prober_counts([json.dumps(line)])
    ts = [r.ts for r in rows[refused]]
    gap = account(refused, ts, 0, 0.2, counts_of)
    assert gap.missing == gap.announced >= 5
    assert gap.sent == gap.stored and gap.sound
    assert account(answering, [r.ts for r in rows[answering]], 0, 0.2, counts_of).sound

    # Loss statistics and events see no loss.
    assert (stats[refused]["lost"], stats[refused]["loss_pct"]) == (0, 0.0)
    assert stats[refused]["count"] == len(rows[refused])
    assert (stats[ipv6]["count"], stats[ipv6]["lost"]) == (0, 0)
    assert [e for e in events["events"] if e["kind"] == "loss"] == []

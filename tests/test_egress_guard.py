"""The egress guard catches a leak, and the skip policy a skip: both proven in child runs.

The leak is real but goes nowhere: the child run's guard treats a lab veth as
the uplink, the child pings the namespace behind it, and the namespace's own
counters show the echo request never arrived.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.egress_guard import TABLE_PREFIX, Snapshot, _destination, guard_tables, ruleset
from tests.netlab import Namespace, NetLab, needs_netlab

REPO = Path(__file__).resolve().parent.parent

PING_ONCE = """
from icmplib import ping

def test_pings_the_uplink_on_purpose():
    ping({address!r}, count=1, timeout=1, privileged=True)
"""


@dataclass
class Child:
    pid: int
    returncode: int
    stdout: str
    stderr: str


def child_pytest(test_dir: Path, env: dict[str, str]) -> Child:
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    args += ["-p", "tests.egress_plugin", "-p", "tests.skip_policy", "--rootdir", str(test_dir)]
    args += ["-o", "asyncio_default_fixture_loop_scope=function", str(test_dir)]
    with subprocess.Popen(
        args,
        cwd=test_dir,
        env={**os.environ, "PYTHONPATH": str(REPO), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        stdout, stderr = process.communicate(timeout=60)
    return Child(process.pid, process.returncode, stdout, stderr)


def echoes_received(namespace: Namespace) -> int:
    lines = [line.split() for line in namespace.run("cat", "/proc/net/snmp").splitlines()]
    names, values = (line for line in lines if line[0] == "Icmp:")
    return int(values[names.index("InEchos")])


@needs_netlab
@pytest.mark.root
def test_a_run_that_pings_out_is_failed_and_the_ping_never_arrives(tmp_path: Path) -> None:
    with NetLab() as lab:
        host = lab.host()
        before = echoes_received(host.namespace)
        (tmp_path / "test_leak.py").write_text(PING_ONCE.format(address=host.address))
        child = child_pytest(tmp_path, {"PINGTRACK_EGRESS_UPLINKS": host.link.a_device})
        after = echoes_received(host.namespace)
        # The lab itself works: unguarded, the same ping arrives.
        subprocess.run(
            [
                sys.executable,
                "-c",
                PING_ONCE.format(address=host.address) + "\ntest_pings_the_uplink_on_purpose()",
            ],
            check=True,
            timeout=10,
        )
        arrived = echoes_received(host.namespace)

    output = child.stdout + child.stderr
    assert child.returncode == 1, output
    assert "egress guard: FAILED, 1 packets (1 icmp)" in output, output
    assert (
        f"test_leak.py::test_pings_the_uplink_on_purpose: 1 packets (1 icmp) to icmp {host.address}"
        in output
    )
    assert after == before, "the guarded echo request reached the namespace"
    assert arrived == after + 1
    assert f"{TABLE_PREFIX}{child.pid}" not in guard_tables()  # the child removed its own


@needs_netlab
@pytest.mark.root
def test_a_clean_run_reports_zero_and_passes(tmp_path: Path) -> None:
    (tmp_path / "test_clean.py").write_text("def test_nothing_leaves():\n    assert True\n")
    child = child_pytest(tmp_path, {})
    assert child.returncode == 0, child.stdout + child.stderr
    assert "egress guard: 0 packets left the machine" in child.stdout


SKIPS = """
import pytest

def test_skipped():
    pytest.skip("a service is missing")
"""


@needs_netlab
@pytest.mark.root
@pytest.mark.parametrize(("ci", "code"), [("true", 1), ("", 0)])
def test_an_unlisted_skip_fails_the_run_only_under_ci(tmp_path: Path, ci: str, code: int) -> None:
    (tmp_path / "test_skips.py").write_text(SKIPS)
    child = child_pytest(tmp_path, {"CI": ci})
    assert child.returncode == code, child.stdout + child.stderr
    if code:
        assert "skipped under CI=true" in child.stdout
        assert "a service is missing" in child.stdout


def test_leaks_are_told_by_kind_and_destination() -> None:
    before = Snapshot({"icmp": 2, "syn": 0, "dns": 1}, frozenset({"icmp 198.18.0.9"}))
    now = Snapshot(
        {"icmp": 3, "syn": 1, "dns": 1},
        frozenset({"icmp 198.18.0.9", _destination("syn", {"concat": ["2001:db8::1", 443]})}),
    )
    new = now.since(before)
    assert new.total == 2
    assert new.describe() == "2 packets (1 icmp, 1 syn) to syn 2001:db8::1 port 443"


def test_the_ruleset_guards_named_uplinks_or_everything_but_loopback_and_the_lab() -> None:
    everything = ruleset("t", exempt=["192.0.2.7", "2001:db8::7"])
    assert 'oifname "lo" accept' in everything and 'oifname "pt*" accept' in everything
    assert "ip daddr { 192.0.2.7 } accept" in everything
    assert "ip6 daddr { 2001:db8::7 } accept" in everything
    named = ruleset("t", uplinks=["ptx1a"])
    assert 'oifname != { "ptx1a" } accept' in named and '"lo"' not in named

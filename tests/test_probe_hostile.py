"""Targets that misbehave on purpose: every probe slot still ends in one stored outcome.

The hostile server (tests/hostile_server.py) listens on 127.0.0.1 and ::1 only.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from prober_service.probe_http import http_probe, ssl_context
from prober_service.probe_outcome import ProbeOutcome
from prober_service.probes import Probes
from shared.codec import ProbeDetail, TargetSpec
from shared.destinations import networks
from shared.settings import Settings
from tests.conftest import eventually
from tests.hostile_server import hostile_server
from tests.probe_stack import Targets, prober_and_writer, writer_running

pytestmark = pytest.mark.timeout(60)

PLAIN = ssl_context(None)
REPO = Path(__file__).resolve().parent.parent
TIMEOUT_S = 0.8
BODY_MAX = 65_536
LINE = "protocol: status or header line too long"

# play -> (status, reason) every slot of it must end in; rtt is set when reason is None.
EXPECTED: dict[str, tuple[int | None, str | None]] = {
    "ok": (200, None),
    "long-status-line": (None, LINE),
    "long-header-line": (None, LINE),
    "negative-chunk": (None, "protocol: bad chunk size"),
    "superscript-length": (None, "protocol: bad Content-Length"),
    "huge-chunk": (200, None),  # the body cap ends it, long before the timeout
    "endless-body": (200, None),
    "slow-drip": (None, "timeout"),
    "reset-mid-body": (200, "reset"),
    "not-http": (None, "protocol: not an HTTP status line"),
    "silent-close": (None, "protocol: closed before answering"),
    # Not a success (no expect_status says 101); nothing follows, nothing is waited for.
    "switch-and-hold": (101, "status"),
    # aiohttp passes any three digits on; a result message cannot carry them.
    "status-700": (None, "protocol: status code out of range"),
}


@pytest.fixture
def database_url(own_database_url: str) -> str:
    """A prober runs here: a database of this test's own, holding only its targets."""
    return own_database_url


def spec(url: str, **fields: object) -> TargetSpec:
    return TargetSpec(1, "", 5000, 800, "active", 1, kind="http", url=url, **fields)  # type: ignore[arg-type]


async def probe(url: str, address: str = "127.0.0.1", **fields: object) -> ProbeOutcome:
    return await http_probe(spec(url, **fields), address, TIMEOUT_S, PLAIN, BODY_MAX)


@pytest.mark.parametrize("play", sorted(EXPECTED))
async def test_each_hostile_answer_ends_in_its_reason(play: str) -> None:
    loop = asyncio.get_running_loop()
    async with hostile_server() as server:
        started = loop.time()
        outcome = await probe(server.url(play))
        took = loop.time() - started
    assert (outcome.status, outcome.error) == EXPECTED[play]
    assert (outcome.rtt_us is not None) == (outcome.error is None)
    if outcome.error != "timeout":
        assert took < TIMEOUT_S / 2, f"{play} took {took:.2f} s"


@pytest.mark.parametrize("play", ["huge-chunk", "endless-body"])
async def test_an_endless_body_is_read_up_to_the_cap_and_judged(play: str) -> None:
    async with hostile_server() as server:
        found = await probe(server.url(play), expect_body="xxxx")
        absent = await probe(server.url(play), expect_body="hello")
    assert (found.status, found.error) == (200, None)
    assert found.rtt_us is not None and found.ttfb_us is not None
    assert found.ttfb_us <= found.rtt_us < TIMEOUT_S * 1e6 / 2
    assert (absent.status, absent.error, absent.rtt_us) == (200, "body", None)


async def test_bytes_that_are_not_tls_fail_with_tls() -> None:
    async with hostile_server() as server:
        outcome = await probe(server.tls_url)
    assert (outcome.rtt_us, outcome.status, outcome.error) == (None, None, "tls")
    assert outcome.cert_expires_us is None


async def test_hostile_server_on_ipv6_loopback() -> None:
    async with hostile_server("::1") as server:
        long_line = await probe(server.url("long-status-line"), "::1")
        fine = await probe(server.url("ok"), "::1")
    assert long_line.error == LINE
    assert (fine.status, fine.error) == (200, None)


async def test_the_hostile_server_refuses_to_listen_off_loopback() -> None:
    with pytest.raises(ValueError, match="loopback only"):
        async with hostile_server("0.0.0.0"):
            pass


_OUT_OF_DESCRIPTORS = """
import asyncio, resource, socket, sys
from prober_service.probe_tcp import tcp_connect
port = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
async def main():
    held = []
    try:
        while True:
            held.append(socket.socket())
    except OSError:
        pass
    outcome = await tcp_connect("127.0.0.1", port, False, 1.0)
    for sock in held:
        sock.close()
    print(outcome.error)
asyncio.run(main())
"""


async def test_tcp_probe_without_a_free_descriptor_ends_in_emfile() -> None:
    """socket() itself fails: that is the slot's outcome, not an escaped OSError."""
    async with hostile_server() as server:
        done = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-c", _OUT_OF_DESCRIPTORS, str(server.port)],
            capture_output=True,
            text=True,
            timeout=20,
            cwd=REPO,
        )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "emfile"


async def test_a_probe_that_raises_is_still_one_result_with_the_exception_named() -> None:
    """A port no socket takes (70000) makes the TCP probe raise OverflowError."""
    results: list[int | None] = []
    details: list[ProbeDetail] = []
    probes = Probes(
        lambda tid, ts, rtt, ttl, hops: results.append(rtt),
        details.append,
        limit=4,
        context=PLAIN,
        body_max=100,
    )
    target = TargetSpec(7, "127.0.0.1", 1000, 500, "active", 1, kind="tcp", port=70_000)
    probes.sender_for(target)(7, "127.0.0.1", False, 500_000_000)
    await probes.drain(5.0)
    assert (results, probes.sent[7], probes.failed) == ([None], 1, 1)
    assert [(d.target_id, d.error) for d in details] == [(7, "error: OverflowError")]


def _stored_reasons(rows: list[asyncpg.Record]) -> set[tuple[int | None, str | None, bool]]:
    return {(r["status"], r["error"], r["rtt_us"] is not None) for r in rows}


@pytest.mark.skipif(os.geteuid() != 0, reason="the prober's ICMP sockets need root")
async def test_every_slot_of_a_hostile_target_is_stored_once_with_its_reason(
    settings: Settings, pool: asyncpg.Pool, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.2 metadata.pingtrack.test\n")
    tuned = settings.model_copy(
        update={
            "prober_id": "hostile-test",
            "hosts_file": hosts,
            "resolve_system": False,
            # 127.0.0.2 stands in for a metadata address: denied, and never connected to.
            "probe_denied_networks": networks(["169.254.0.0/16", "127.0.0.2/32"]),
        }
    )
    caplog.set_level(logging.INFO, logger="prober_service.main")
    targets = Targets(pool)
    async with hostile_server() as server:
        urls = {play: server.url(play) for play in EXPECTED}
        urls["tls-garbage"] = server.tls_url
        urls["denied-by-name"] = f"http://metadata.pingtrack.test:{server.port}/ok"
        ids = {
            name: await targets.add(kind="http", url=url, timeout_ms=round(TIMEOUT_S * 1000))
            for name, url in urls.items()
        }
        ids["denied-tcp"] = await targets.add(address="127.0.0.2", kind="tcp", port=server.port)
        try:
            async with prober_and_writer(tuned):

                async def two_slots_each() -> bool:
                    n = await pool.fetchval(
                        "SELECT count(*) FROM (SELECT target_id FROM pings"
                        " WHERE target_id = ANY($1) GROUP BY 1 HAVING count(*) >= 2) AS done",
                        list(ids.values()),
                    )
                    return bool(n == len(ids))

                await eventually(two_slots_each, timeout=20)
        finally:
            await targets.end()
    stopped = [r for r in caplog.records if r.getMessage() == "prober stopped"]
    assert len(stopped) == 1
    sent = {int(k): v for k, v in stopped[0].__dict__["sent_per_target"].items()}

    async def all_stored() -> bool:
        n = await pool.fetchval(
            "SELECT count(*) FROM pings WHERE target_id = ANY($1)", list(ids.values())
        )
        return bool(n >= sum(sent[i] for i in ids.values()))

    # The prober's last batch may still be queued when the first writer stops.
    async with writer_running(tuned):
        await eventually(all_stored, timeout=10)
    rows = await pool.fetch(
        "SELECT p.target_id, p.rtt_us, d.status, d.error FROM pings p"
        " LEFT JOIN probe_details d USING (target_id, ts) WHERE p.target_id = ANY($1)",
        list(ids.values()),
    )
    by_target: dict[int, list[asyncpg.Record]] = {}
    for row in rows:
        by_target.setdefault(row["target_id"], []).append(row)
    # One stored result per slot the prober started, for every target.
    assert {name: len(by_target[i]) for name, i in ids.items()} == {
        name: sent[i] for name, i in ids.items()
    }
    expected = {name: {(s, r, r is None)} for name, (s, r) in EXPECTED.items()}
    denied = "denied: 127.0.0.2 is in 127.0.0.2/32 (PINGTRACK_PROBE_DENIED_NETWORKS)"
    expected |= {
        "tls-garbage": {(None, "tls", False)},
        "denied-by-name": {(None, denied, False)},
        "denied-tcp": {(None, denied, False)},
    }
    assert {name: _stored_reasons(by_target[i]) for name, i in ids.items()} == expected
    escaped = [r for r in caplog.records if "never retrieved" in r.getMessage()]
    assert escaped == []

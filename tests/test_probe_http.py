"""HTTP(S) probes against servers on 127.0.0.1: status, reasons, TTFB, certificate expiry."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import asyncpg
import pytest

from prober_service.probe_http import http_probe, ssl_context
from prober_service.probe_outcome import judge
from prober_service.probes import Probes
from shared.codec import ProbeDetail, TargetSpec
from shared.settings import Settings
from tests.conftest import eventually
from tests.probe_stack import (
    Certificate,
    Handler,
    Targets,
    prober_and_writer,
    refused_port,
    responder,
    self_signed,
    serve,
    server_context,
)

pytestmark = pytest.mark.timeout(40)


@pytest.fixture
def database_url(own_database_url: str) -> str:
    """A prober runs here: a database of this test's own, holding only its targets."""
    return own_database_url


PLAIN = ssl_context(None)


def spec(url: str, **fields: object) -> TargetSpec:
    return TargetSpec(1, "", 5000, 1000, "active", 1, kind="http", url=url, **fields)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    return self_signed(tmp_path_factory.mktemp("tls"), names="IP:127.0.0.1,DNS:tls.pingtrack.test")


def recording(seen: list[bytes]) -> Handler:
    """An HTTP handler that keeps the request head it was sent and answers 204."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = b""
        while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
            head += line
        seen.append(head)
        writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        await writer.drain()
        writer.close()

    return handle


async def test_request_goes_to_the_resolved_address_with_the_urls_host_path_and_query() -> None:
    seen: list[bytes] = []
    async with serve(recording(seen)) as server:
        url = f"http://a.test:{server.port}/x/y?q=1#frag"
        outcome = await http_probe(spec(url, http_method="HEAD"), "127.0.0.1", 2.0, PLAIN, 100)
    assert (outcome.status, outcome.error) == (204, None)
    request_line, *fields = seen[0].decode().split("\r\n")[:-1]
    assert request_line == "HEAD /x/y?q=1 HTTP/1.1"
    assert {
        name.lower(): value
        for name, _, value in (field.partition(": ") for field in fields)
        if name.lower() in ("host", "user-agent", "accept-encoding", "connection")
    } == {
        "host": f"a.test:{server.port}",
        "user-agent": "pingtrack-probe/1",
        "accept-encoding": "identity",
        "connection": "close",
    }


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (b"SSH-2.0-OpenSSH\r\n", "protocol: not an HTTP status line"),
        (b"HTTP/1.1 abc\r\n\r\n", "protocol: not an HTTP status line"),
        (b"HTTP/1.1 700 X\r\nContent-Length: 0\r\n\r\n", "protocol: status code out of range"),
        # A body after an answer that said it was complete (HEAD gets none).
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\nextra",
            "protocol: data after the answer",
        ),
    ],
)
async def test_a_non_http_answer_is_a_protocol_error(answer: bytes, reason: str) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readline()
        writer.write(answer)
        await writer.drain()
        writer.close()

    async with serve(handle) as server:
        outcome = await http_probe(
            spec(f"http://127.0.0.1:{server.port}/"), "127.0.0.1", 2.0, PLAIN, 100
        )
    assert (outcome.rtt_us, outcome.status, outcome.error) == (None, None, reason)


@pytest.mark.parametrize(
    ("status", "body", "expect_status", "expect_body", "verdict"),
    [
        (200, b"", None, None, None),
        (302, b"", None, None, None),
        (404, b"", None, None, "status"),
        (500, b"", None, None, "status"),
        (404, b"", 404, None, None),
        (200, b"", 204, None, "status"),
        (200, b"all ok", None, "ok", None),
        (200, b"all fine", None, "ok", "body"),
    ],
)
def test_expectations_decide_success(
    status: int,
    body: bytes,
    expect_status: int | None,
    expect_body: str | None,
    verdict: str | None,
) -> None:
    assert judge(status, body, expect_status, expect_body) == verdict


async def test_healthy_server_gives_status_ttfb_and_total_time() -> None:
    async with serve(responder(200, b"hello pingtrack", delay_s=0.05)) as server:
        url = f"http://127.0.0.1:{server.port}/health"
        outcome = await http_probe(
            spec(url, expect_body="pingtrack"), "127.0.0.1", 2.0, PLAIN, 1000
        )
    assert (outcome.status, outcome.error) == (200, None)
    assert outcome.ttfb_us is not None and outcome.ttfb_us >= 50_000
    assert outcome.rtt_us is not None and outcome.rtt_us >= outcome.ttfb_us
    assert outcome.cert_expires_us is None


async def test_server_error_fails_with_its_status() -> None:
    async with serve(responder(500, b"boom")) as server:
        outcome = await http_probe(
            spec(f"http://127.0.0.1:{server.port}/"), "127.0.0.1", 2.0, PLAIN, 1000
        )
    assert (outcome.rtt_us, outcome.status, outcome.error) == (None, 500, "status")
    assert outcome.ttfb_us is not None


async def test_missing_body_substring_fails_with_body() -> None:
    async with serve(responder(200, b"maintenance")) as server:
        url = f"http://127.0.0.1:{server.port}/"
        outcome = await http_probe(spec(url, expect_body="ready"), "127.0.0.1", 2.0, PLAIN, 1000)
    assert (outcome.rtt_us, outcome.status, outcome.error) == (None, 200, "body")


async def test_head_reads_no_body() -> None:
    async with serve(responder(200, b"ignored")) as server:
        url = f"http://127.0.0.1:{server.port}/"
        outcome = await http_probe(spec(url, http_method="HEAD"), "127.0.0.1", 2.0, PLAIN, 1000)
    assert (outcome.status, outcome.error) == (200, None)


async def test_server_hanging_past_the_timeout_fails_with_timeout() -> None:
    async with serve(responder(200, delay_s=3.0)) as server:
        started = asyncio.get_running_loop().time()
        outcome = await http_probe(
            spec(f"http://127.0.0.1:{server.port}/"), "127.0.0.1", 0.3, PLAIN, 1000
        )
        took = asyncio.get_running_loop().time() - started
    assert (outcome.rtt_us, outcome.status, outcome.error) == (None, None, "timeout")
    assert 0.3 <= took < 1.0


async def test_refused_connection_fails_with_refused() -> None:
    url = f"http://127.0.0.1:{refused_port()}/"
    outcome = await http_probe(spec(url), "127.0.0.1", 1.0, PLAIN, 1000)
    assert (outcome.rtt_us, outcome.error) == (None, "refused")


async def test_https_records_the_certificate_expiry(certificate: Certificate) -> None:
    async with serve(responder(200, b"secure"), server_context(certificate)) as server:
        url = f"https://127.0.0.1:{server.port}/"
        outcome = await http_probe(spec(url), "127.0.0.1", 2.0, ssl_context(certificate.cert), 100)
    assert (outcome.status, outcome.error) == (200, None)
    assert outcome.cert_expires_us == certificate.not_after_us


async def test_untrusted_certificate_fails_with_tls(certificate: Certificate) -> None:
    async with serve(responder(200), server_context(certificate)) as server:
        outcome = await http_probe(
            spec(f"https://127.0.0.1:{server.port}/"), "127.0.0.1", 2.0, PLAIN, 100
        )
    assert (outcome.rtt_us, outcome.status, outcome.error) == (None, None, "tls")


@pytest.mark.skipif(os.geteuid() != 0, reason="the prober's ICMP sockets need root")
async def test_http_targets_are_stored_with_status_reason_and_expiry(
    settings: Settings, pool: asyncpg.Pool, certificate: Certificate, tmp_path: Path
) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 tls.pingtrack.test\n")
    tuned = settings.model_copy(
        update={
            "prober_id": "http-test",
            "hosts_file": hosts,
            "resolve_system": False,
            "http_ca_file": certificate.cert,
        }
    )
    targets = Targets(pool)
    async with (
        serve(responder(200, b"ok")) as healthy,
        serve(responder(500)) as failing,
        serve(responder(200, delay_s=2.0)) as hanging,
        serve(responder(200, b"ok"), server_context(certificate)) as secure,
    ):
        urls = {
            "healthy": f"http://127.0.0.1:{healthy.port}/",
            "failing": f"http://127.0.0.1:{failing.port}/",
            "hanging": f"http://127.0.0.1:{hanging.port}/",
            "refused": f"http://127.0.0.1:{refused_port()}/",
            # By name: the prober resolves it, connects to the address, checks the name.
            "secure": f"https://tls.pingtrack.test:{secure.port}/",
        }
        ids = {
            name: await targets.add(kind="http", url=url, timeout_ms=300)
            for name, url in urls.items()
        }
        try:
            async with prober_and_writer(tuned):

                async def all_stored() -> bool:
                    n = await pool.fetchval(
                        "SELECT count(DISTINCT target_id) FROM pings WHERE target_id = ANY($1)",
                        list(ids.values()),
                    )
                    return bool(n == len(ids))

                await eventually(all_stored, timeout=15)
        finally:
            await targets.end()
    rows = {
        r["target_id"]: r
        for r in await pool.fetch(
            "SELECT DISTINCT ON (p.target_id) p.target_id, p.rtt_us, d.status, d.ttfb_us,"
            " d.error, (extract(epoch FROM d.cert_expires_at) * 1e6)::bigint AS expires_us"
            " FROM pings p LEFT JOIN probe_details d USING (target_id, ts)"
            " WHERE p.target_id = ANY($1) ORDER BY p.target_id, p.ts",
            list(ids.values()),
        )
    }
    got = {name: (rows[i]["status"], rows[i]["error"]) for name, i in ids.items()}
    assert got == {
        "healthy": (200, None),
        "failing": (500, "status"),
        "hanging": (None, "timeout"),
        "refused": (None, "refused"),
        "secure": (200, None),
    }
    for name in ("healthy", "secure"):
        assert rows[ids[name]]["rtt_us"] > 0 and rows[ids[name]]["ttfb_us"] > 0
    for name in ("failing", "hanging", "refused"):
        assert rows[ids[name]]["rtt_us"] is None
    assert rows[ids["secure"]]["expires_us"] == certificate.not_after_us
    address = await pool.fetchval(
        "SELECT host(address) FROM target_addresses WHERE target_id = $1", ids["secure"]
    )
    assert address == "127.0.0.1"


async def test_probes_beyond_the_concurrency_limit_are_skipped_not_failed() -> None:
    results: list[tuple[int, int | None]] = []
    details: list[ProbeDetail] = []
    probes = Probes(
        lambda tid, ts, rtt, ttl, hops: results.append((tid, rtt)),
        details.append,
        limit=1,
        context=PLAIN,
        body_max=100,
    )
    async with serve(responder(200, b"ok", delay_s=0.2)) as server:
        target = spec(f"http://127.0.0.1:{server.port}/")
        send = probes.sender_for(target)
        send(1, "127.0.0.1", False, 2_000_000_000)
        send(1, "127.0.0.1", False, 2_000_000_000)
        assert (probes.in_flight, probes.busy) == (1, 1)
        await probes.drain(5.0)
    assert len(results) == 1 and results[0][1] is not None
    assert [(d.status, d.error) for d in details] == [(200, None)]
    assert probes.sent.total() == 1

"""HTTP probe timings: the aiohttp probe against a bare asyncio-streams client, same server.

    .venv/bin/python bench/http_probe_bench.py --probes 2000

The question: does the probe on aiohttp (a session, a pinned resolver and
trace hooks per probe) report the same connect time and TTFB as a minimal
client would, or does the library add to what is measured? The reference is
the hand-written client the probe had before: `asyncio.open_connection`,
write the request, `readline` the status line (TTFB), read the head and the
body. Both time from just before the connection starts; both run one after
the other against one server on 127.0.0.1 (plain, then TLS with a
self-signed certificate), alternating probe by probe so drift hits both.
The server runs in a process of its own: in the client's event loop, every
microsecond the client spends would delay the server's answer too.

Printed per client and scheme: p50 / p95 of connect (TCP, plus TLS for
https), TTFB, RTT (to the last body byte) and the wall time of the whole
call (what the probe costs beyond what it measures: session set-up and
teardown), in microseconds; then the CPU time of one probe in the client.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import ssl
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _calibration import print_header

from prober_service.probe_http import http_probe, ssl_context
from shared.codec import TargetSpec
from tests.egress_guard import ensure_guarded
from tests.probe_stack import Certificate, responder, self_signed, serve, server_context

BODY = b"ok " * 100
Timings = tuple[int, int, int, int]  # connect, ttfb, rtt, wall (µs)


def _us(start: int, end: int) -> int:
    return (end - start) // 1000


async def streams_probe(url: str, port: int, context: ssl.SSLContext | None) -> Timings:
    """The reference: the probe's former hand-written client, with a connect mark."""
    wall = start = time.monotonic_ns()
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=context, server_hostname="127.0.0.1" if context else None
    )
    connected = time.monotonic_ns()
    request = f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    writer.write(request.encode())
    await writer.drain()
    await reader.readline()
    first = time.monotonic_ns()
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    await reader.readexactly(length)
    done = time.monotonic_ns()
    writer.close()
    await writer.wait_closed()
    return (
        _us(start, connected),
        _us(start, first),
        _us(start, done),
        _us(wall, time.monotonic_ns()),
    )


PLAIN = ssl_context(None)


async def aiohttp_probe(url: str, port: int, context: ssl.SSLContext | None) -> Timings:
    spec = TargetSpec(1, "", 5000, 2000, "active", 1, kind="http", url=url)
    wall = time.monotonic_ns()
    outcome = await http_probe(spec, "127.0.0.1", 2.0, context or PLAIN, 65_536)
    took = _us(wall, time.monotonic_ns())
    assert outcome.error is None, outcome
    assert outcome.connect_us and outcome.ttfb_us and outcome.rtt_us
    return outcome.connect_us, outcome.ttfb_us, outcome.rtt_us, took


Client = Callable[[str, int, ssl.SSLContext | None], Awaitable[Timings]]


def _line(name: str, runs: list[Timings]) -> str:
    cells = []
    for label, column in zip(
        ("connect", "ttfb", "rtt", "wall"), zip(*runs, strict=True), strict=True
    ):
        ordered = sorted(column)
        p95 = ordered[int(0.95 * (len(ordered) - 1))]
        cells.append(f"{label} {statistics.median(ordered):7.0f} / {p95:6d}")
    return f"{name:<16}" + "   ".join(cells)


def _serve_forever(cert: Certificate | None, ports: multiprocessing.Queue[int]) -> None:
    async def run() -> None:
        async with serve(responder(200, BODY), cert and server_context(cert)) as server:
            ports.put(server.port)
            await asyncio.Event().wait()

    asyncio.run(run())


async def measure(scheme: str, probes: int, certs: Path) -> None:
    cert = self_signed(certs) if scheme == "https" else None
    client_tls = None if cert is None else ssl_context(cert.cert)
    clients: dict[str, Client] = {"streams (old)": streams_probe, "aiohttp (new)": aiohttp_probe}
    runs: dict[str, list[Timings]] = {name: [] for name in clients}
    cpu_ns = dict.fromkeys(clients, 0)
    ports: multiprocessing.Queue[int] = multiprocessing.Queue()
    server = multiprocessing.Process(target=_serve_forever, args=(cert, ports), daemon=True)
    server.start()
    try:
        port = await asyncio.to_thread(ports.get, True, 30)
        url = f"{scheme}://127.0.0.1:{port}/"
        for client in clients.values():  # warm-up: imports, first handshakes
            for _ in range(20):
                await client(url, port, client_tls)
        for _ in range(probes):
            for name, client in clients.items():
                cpu = time.process_time_ns()
                runs[name].append(await client(url, port, client_tls))
                cpu_ns[name] += time.process_time_ns() - cpu
    finally:
        server.terminate()
        server.join(10)
    print(f"{scheme}: {probes} probes each, µs p50 / p95", flush=True)
    for name, timings in runs.items():
        cpu_us = cpu_ns[name] / probes / 1000
        print(f"  {_line(name, timings)}   cpu {cpu_us:5.0f} per probe", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--probes", type=int, default=2000)
    args = parser.parse_args()
    print_header()
    with tempfile.TemporaryDirectory() as certs:
        for scheme in ("http", "https"):
            asyncio.run(measure(scheme, args.probes, Path(certs)))


if __name__ == "__main__":
    ensure_guarded()  # nothing a benchmark does may leave the machine
    main()

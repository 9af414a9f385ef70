"""The publisher and its spool against the real broker: outages, crashes and a full disk."""

from __future__ import annotations

import asyncio
import errno
import logging
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import aiormq
import aiormq.abc
import pytest

from api_service.ops.fleet import ProberRow
from api_service.ops.metrics import fleet_families, render
from prober_service.publisher import Publisher
from prober_service.spool import Spool
from prober_service.spool_dir import prober_directory
from prober_service.spool_frames import Entry, decode_frame, scan
from shared.broker import BrokerLink, declare_results
from shared.codec import decode_batch
from shared.constants import Topology
from shared.settings import Settings
from tests.conftest import AMQP_URL, eventually
from tests.tcp_proxy import TcpProxy

pytestmark = pytest.mark.timeout(60)

TARGET = 777_001


@dataclass
class Tap:
    """The results queue as a writer sees it: bodies, ids and results, in delivery order."""

    channel: aiormq.abc.AbstractChannel
    bodies: list[bytes] = field(default_factory=list)
    message_ids: list[str] = field(default_factory=list)

    async def on_message(self, message: aiormq.abc.DeliveredMessage) -> None:
        self.bodies.append(message.body)
        self.message_ids.append(str(message.header.properties.message_id))
        assert message.delivery_tag is not None
        await self.channel.basic_ack(message.delivery_tag)

    @property
    def ts(self) -> list[int]:
        return [ts for body in self.bodies for ts in decode_batch(body).ts]


@pytest.fixture
async def tap(amqp_prefix: str) -> AsyncIterator[Tap]:
    connection = await aiormq.connect(AMQP_URL)
    channel = await connection.channel()
    topology = Topology(amqp_prefix)
    await declare_results(channel, topology)
    tap = Tap(channel)
    await channel.basic_consume(topology.results_queue, tap.on_message)
    yield tap
    await connection.close()


@pytest.fixture
def settings(amqp_prefix: str, tmp_path: Path) -> Settings:
    return Settings(
        amqp_url=AMQP_URL,
        amqp_prefix=amqp_prefix,
        spool_dir=tmp_path / "spool",
        batch_max_delay_s=0.05,
        batch_max_results=50,
        buffer_max_results=1000,
    )


@dataclass
class Running:
    publisher: Publisher
    task: asyncio.Task[None]

    async def sigterm(self, flush_s: float) -> None:
        """What the prober does on SIGTERM: run() cancelled, then close()."""
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        await self.publisher.close(flush_s)


@asynccontextmanager
async def running(
    settings: Settings, url: str, prober_id: str = "p1", spool: Spool | None = None
) -> AsyncIterator[Running]:
    """A publisher, running until the block ends; then, unless stopped by `sigterm`,
    what a kill leaves: run() cancelled, no close(), the spool's lock let go."""
    link = BrokerLink(url)
    publisher = Publisher(link, Topology(settings.amqp_prefix), settings, prober_id, spool=spool)
    await publisher.open()
    task = asyncio.create_task(publisher.run())
    try:
        yield Running(publisher, task)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        publisher.release()
        await link.close()


def feed(publisher: Publisher, start: int, count: int, base: int) -> list[int]:
    stamps = [base + i for i in range(start, start + count)]
    for ts in stamps:
        publisher.add(TARGET, ts, 250, 64, 0)
    return stamps


def spool_of(settings: Settings, prober_id: str) -> Path:
    return prober_directory(settings.spool_dir, settings.amqp_prefix, prober_id)


async def test_a_crash_during_an_outage_loses_nothing_spooled_and_replays_it_once_in_order(
    settings: Settings, tap: Tap
) -> None:
    base = time.time_ns() // 1000
    async with TcpProxy("127.0.0.1", 5672) as proxy:
        url = AMQP_URL.replace("127.0.0.1:5672", f"127.0.0.1:{proxy.port}")
        await proxy.cut()
        async with running(settings, url) as run:
            first = run.publisher
            sent = []
            for round_ in range(10):
                sent += feed(first, round_ * 30, 30, base)
                await asyncio.sleep(0.06)
            await eventually(lambda: _spooled(first, len(sent)), timeout=5)
            spooled = first.spool_figures()
        # The context's end is the crash: run() cancelled, no close(), the lock let go.
        assert spooled["spool_batches"] >= 10 and tap.bodies == []
        await proxy.resume()
        async with running(settings, url) as run:
            second = run.publisher
            await eventually(lambda: _published(second, len(sent)), timeout=15)
            more = feed(second, 300, 20, base)
            await eventually(lambda: _published(second, len(sent) + 20), timeout=5)
        # Every result once, the spooled ones first and in order, then the new ones.
        assert tap.ts == sent + more
        assert len(set(tap.message_ids)) == len(tap.message_ids)
        assert [str(decode_batch(b).prober) for b in tap.bodies] == ["p1"] * len(tap.bodies)


async def _spooled(publisher: Publisher, results: int) -> bool:
    return publisher.spool_figures()["spool_results"] == results


async def _published(publisher: Publisher, results: int) -> bool:
    return publisher.published_results == results and publisher.buffered == 0


def entries_on_disk(directory: Path) -> list[Entry]:
    found = []
    for segment in sorted(directory.glob("*.seg")):
        data = segment.read_bytes()
        found += [decode_frame(data[f.offset : f.offset + f.size]) for f in scan(data).frames]
    return found


async def test_a_batch_keeps_its_id_and_bytes_from_spool_to_broker(
    settings: Settings, tap: Tap
) -> None:
    base = time.time_ns() // 1000
    async with TcpProxy("127.0.0.1", 5672) as proxy:
        url = AMQP_URL.replace("127.0.0.1:5672", f"127.0.0.1:{proxy.port}")
        await proxy.cut()
        async with running(settings, url) as run:
            publisher = run.publisher
            feed(publisher, 0, 120, base)
            await eventually(lambda: _spooled(publisher, 120), timeout=5)
            on_disk = entries_on_disk(spool_of(settings, "p1"))
            await proxy.resume()
            await eventually(lambda: _published(publisher, 120), timeout=15)
            assert entries_on_disk(spool_of(settings, "p1")) == []  # confirmed: gone
    assert len(on_disk) >= 3
    assert tap.bodies == [e.payload for e in on_disk]
    assert tap.message_ids == [str(uuid.UUID(bytes=e.batch_id)) for e in on_disk]


async def test_stopping_while_the_broker_is_away_keeps_the_rest_for_the_next_start(
    settings: Settings, tap: Tap, caplog: pytest.LogCaptureFixture
) -> None:
    base = time.time_ns() // 1000
    async with TcpProxy("127.0.0.1", 5672) as proxy:
        url = AMQP_URL.replace("127.0.0.1:5672", f"127.0.0.1:{proxy.port}")
        await proxy.cut()
        async with running(settings, url) as run:
            publisher = run.publisher
            sent = feed(publisher, 0, 75, base)  # the last 25 are still in the open batch
            started = time.monotonic()
            with caplog.at_level(logging.WARNING, logger="prober_service.publisher"):
                await run.sigterm(0.5)
            assert time.monotonic() - started < 2
            assert "results not published before shutdown" in caplog.text
            assert publisher.buffered == 75 and publisher.dropped_results == 0
        assert len(entries_on_disk(spool_of(settings, "p1"))) == 2
        await proxy.resume()
        async with running(settings, url) as run:
            await eventually(lambda: _published(run.publisher, 75), timeout=15)
            await run.sigterm(5)
        assert not spool_of(settings, "p1").exists()  # drained and closed: nothing left
    assert tap.ts == sent


class RefusingDisk(Spool):
    """A spool on a disk that is full: every append fails as a full disk fails."""

    async def append(self, entry: Entry) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")


async def test_a_disk_that_refuses_writes_does_not_stop_the_results(
    settings: Settings, tap: Tap, caplog: pytest.LogCaptureFixture
) -> None:
    base = time.time_ns() // 1000
    spool = RefusingDisk(spool_of(settings, "p1"), settings.spool_max_bytes)
    with caplog.at_level(logging.WARNING, logger="prober_service.publisher"):
        async with running(settings, AMQP_URL, spool=spool) as run:
            publisher = run.publisher
            sent = feed(publisher, 0, 120, base)
            await eventually(lambda: _published(publisher, 120), timeout=15)
    assert "writing the spool failed; results wait in memory" in caplog.text
    assert sorted(tap.ts) == sent


async def test_spool_figures_reach_the_metrics_through_the_heartbeat_stats(
    settings: Settings,
) -> None:
    base = time.time_ns() // 1000
    async with TcpProxy("127.0.0.1", 5672) as proxy:
        url = AMQP_URL.replace("127.0.0.1:5672", f"127.0.0.1:{proxy.port}")
        await proxy.cut()
        async with running(settings, url) as run:
            publisher = run.publisher
            feed(publisher, 0, 100, base)
            await eventually(lambda: _spooled(publisher, 100), timeout=5)
            stats = publisher.spool_figures()
    now = datetime.now(UTC)
    row = ProberRow("p1", now, now, 0.5, 256, {**stats, "dropped_results": 0})
    text = render(fleet_families([row]))
    assert f'pingtrack_prober_spool_batches{{prober="p1"}} {stats["spool_batches"]}' in text
    assert f'pingtrack_prober_spool_bytes{{prober="p1"}} {stats["spool_bytes"]}' in text
    assert 'pingtrack_prober_spool_dropped_batches_total{prober="p1"} 0' in text
    assert 'pingtrack_prober_spool_corrupt_total{prober="p1"} 0' in text

"""/metrics and /fleet show the live probers, their targets and send rate."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator

import pytest

from api_service.ops.metrics import Family, render
from prober_service.main import run
from shared.settings import Settings
from tests.api_client import api_client
from tests.conftest import ADMIN_TOKEN, AMQP_URL, eventually
from tests.fleet_support import fresh_database, insert_targets, result_tap


def test_render_writes_help_type_and_escaped_labels() -> None:
    family = Family("pingtrack_x", "gauge", "An example.")
    family.add(3, prober='a"b')
    family.add(0.25, prober="c")
    assert render([family]) == (
        "# HELP pingtrack_x An example.\n"
        "# TYPE pingtrack_x gauge\n"
        'pingtrack_x{prober="a\\"b"} 3\n'
        'pingtrack_x{prober="c"} 0.25\n'
    )


def samples(text: str, name: str) -> dict[str, float]:
    """Samples of one metric by their label text."""
    found = {}
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            key, value = line.rsplit(" ", 1)
            found[key[len(name) :]] = float(value)
    return found


@pytest.fixture
async def fleet_settings() -> AsyncIterator[Settings]:
    async with fresh_database() as dsn:
        yield Settings(
            database_url=dsn,
            amqp_url=AMQP_URL,
            amqp_prefix=f"pt-metrics-{uuid.uuid4().hex[:8]}",
            admin_token=ADMIN_TOKEN,  # type: ignore[arg-type]
            prober_id="metrics-prober",
            batch_max_delay_s=0.2,
        )


@pytest.mark.skipif(os.geteuid() != 0, reason="the prober's raw ICMP sockets need root")
@pytest.mark.timeout(30)
async def test_metrics_show_a_live_prober_its_targets_and_send_rate(
    fleet_settings: Settings,
) -> None:
    await insert_targets(fleet_settings.database_url, [f"127.0.8.{i}" for i in range(1, 21)], 200)
    stop = asyncio.Event()
    async with result_tap(fleet_settings.amqp_prefix), api_client(fleet_settings) as api:
        prober = asyncio.create_task(run(fleet_settings, stop))
        try:

            async def rate_reported() -> str | None:
                # 20 targets at 0.2 s: 100 pings/s, once a heartbeat window saw
                # all of them sending (the first one also covers the start-up).
                text = (await api.get("/metrics")).text
                rates = samples(text, "pingtrack_prober_send_rate")
                return text if 80 <= rates.get('{prober="metrics-prober"}', 0) <= 120 else None

            text = await eventually(rate_reported, timeout=10, interval=0.3)
            assert isinstance(text, str)
            assert samples(text, "pingtrack_probers_live") == {"": 1}
            assert samples(text, "pingtrack_prober_targets") == {'{prober="metrics-prober"}': 20}
            assert samples(text, "pingtrack_prober_shards") == {'{prober="metrics-prober"}': 256}
            assert samples(text, "pingtrack_dependency_up") == {
                '{dependency="broker"}': 1,
                '{dependency="database"}': 1,
            }
            assert "pingtrack_results_queue_depth " in text

            fleet = (await api.get("/fleet")).json()
            assert fleet["live"] == 1
            assert fleet["probers"][0]["id"] == "metrics-prober"
            assert fleet["probers"][0]["stats"]["targets"] == 20
            health = (await api.get("/health")).json()
            assert health["checks"]["live_probers"] == 1
        finally:
            stop.set()
            await prober
        # A clean stop removes the prober at once.
        text = (await api.get("/metrics")).text
        assert samples(text, "pingtrack_probers_live") == {"": 0}
        assert (await api.get("/fleet")).json() == {"live": 0, "probers": []}

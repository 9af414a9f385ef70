"""On-demand traceroute: lab targets 1, 2 and 3 routers away, through the API and the CLI."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from typer.testing import CliRunner

from api_service.results.traceroute import Hop, Trace
from pingtrack.cli import app
from pingtrack.cli_fleet import trace_table
from shared.settings import Settings
from tests.api_client import ADMIN, api_client
from tests.conftest import ADMIN_TOKEN, AMQP_URL
from tests.fleet_support import fresh_database
from tests.netlab import NetLab, needs_netlab


def test_hop_count_is_the_routers_before_a_reached_target() -> None:
    hops = [Hop(1, "198.18.0.1", 0.1), Hop(2, "198.18.0.5", 0.2), Hop(3, "198.18.0.9", 0.3)]
    trace = Trace(1, "198.18.0.9", None, True, hops)  # type: ignore[arg-type]
    assert trace.hop_count == 2
    assert Trace(1, "198.18.0.9", None, False, hops[:2]).hop_count is None  # type: ignore[arg-type]


def test_the_cli_table_lists_every_hop() -> None:
    trace = Trace(7, "198.18.0.9", None, True, [Hop(1, "198.18.0.9", 0.25)])  # type: ignore[arg-type]
    table = trace_table(trace)
    assert table.row_count == 1 and "0 hops" in str(table.title)


@pytest.fixture
async def trace_settings() -> AsyncIterator[Settings]:
    # A database of its own: no prober of another test may ever load these lab targets.
    async with fresh_database() as dsn:
        yield Settings(
            database_url=dsn,
            amqp_url=AMQP_URL,
            amqp_prefix=f"pt-trace-{uuid.uuid4().hex[:8]}",
            admin_token=ADMIN_TOKEN,  # type: ignore[arg-type]
        )


@needs_netlab
@pytest.mark.slow
@pytest.mark.timeout(60)
async def test_traceroute_counts_the_routers_to_lab_targets(trace_settings: Settings) -> None:
    with NetLab() as lab:
        paths = [lab.chain(hops) for hops in (1, 2, 3)]
        async with api_client(trace_settings) as api:
            for path in paths:
                created = await api.post("/targets", json={"address": path.address}, headers=ADMIN)
                assert created.status_code == 201, created.text
                tid = created.json()["id"]
                await api.post(f"/targets/{tid}/pause", headers=ADMIN)

                traced = await api.post(f"/targets/{tid}/traceroute", headers=ADMIN)
                assert traced.status_code == 201, traced.text
                body = traced.json()
                assert body["reached"] is True and body["hop_count"] == path.hops
                # Each router answers from the address it received the probe on.
                expected = [link.b_address for link in path.links]
                assert [(h["ttl"], h["address"]) for h in body["hops"]] == list(
                    enumerate(expected, 1)
                )
                stored = await api.get(f"/targets/{tid}/traceroute")
                assert stored.status_code == 200 and stored.json() == body

            # The CLI runs the same trace and prints it.
            env = {
                "PINGTRACK_DATABASE_URL": trace_settings.database_url,
                "PINGTRACK_AMQP_PREFIX": trace_settings.amqp_prefix,
                "COLUMNS": "200",
            }
            result = await asyncio.to_thread(
                CliRunner().invoke, app, ["traceroute", str(tid)], env=env, catch_exceptions=False
            )
            assert result.exit_code == 0, result.output
            assert "3 hops" in result.output and paths[-1].address in result.output

            unknown = await api.post("/targets/999999/traceroute", headers=ADMIN)
            assert unknown.status_code == 404
            anonymous = await api.post(f"/targets/{tid}/traceroute")
            assert anonymous.status_code == 401

"""The whole spine as an operator runs it: `pingtrack up`, then the REST API."""

from __future__ import annotations

import asyncio
import itertools
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.constants import Topology
from tests.conftest import (
    ADMIN_TOKEN,
    AMQP_URL,
    _delete_broker_names,
    cloned_database,
    eventually,
)
from tests.netlab import NetLab, needs_netlab
from tests.stack import ServiceProcess, free_port, wait_healthy

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="raw ICMP needs root or CAP_NET_RAW"),
]
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture(scope="module")
async def database_url(template_url: str) -> AsyncIterator[str]:
    """The stack's prober pings every active target here: only this module's."""
    async with cloned_database(template_url) as dsn:
        yield dsn


@pytest.fixture(scope="module")
def stack(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    prefix = f"pt-e2e-{uuid.uuid4().hex[:8]}"
    port = free_port()
    process = start_stack(database_url, prefix, port, tmp_path_factory.mktemp("e2e") / "up.log")
    try:
        yield f"http://127.0.0.1:{port}"
        assert process.stop() == 0, process.log()
    finally:
        if process.process and process.process.poll() is None:
            process.kill()
        asyncio.run(_delete_broker_names(Topology(prefix)))


@pytest.fixture
async def api(stack: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack, timeout=10) as client:
        yield client


async def add_target(api: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    response = await api.post("/targets", json=body, headers=AUTH)
    assert response.status_code == 201, response.text
    target: dict[str, Any] = response.json()
    return target


async def pings(api: httpx.AsyncClient, target_id: int) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 1000}
        if cursor:
            params["cursor"] = cursor
        response = await api.get(f"/targets/{target_id}/pings", params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        items += page["items"]
        cursor = page["next_cursor"]
        if not cursor:
            return items


def times(items: list[dict[str, Any]]) -> list[float]:
    return [datetime.fromisoformat(p["ts"]).timestamp() for p in items]


async def ping_count_reaches(
    api: httpx.AsyncClient, target_id: int, n: int, timeout: float
) -> list[dict[str, Any]]:
    async def check() -> list[dict[str, Any]] | None:
        items = await pings(api, target_id)
        return items if len(items) >= n else None

    result = await eventually(check, timeout=timeout, interval=0.2)
    assert isinstance(result, list)
    return result


async def stored_until(api: httpx.AsyncClient, witness: int, mark: float) -> None:
    """Wait until a ping of the witness target sent after `mark` is stored.

    The one prober publishes its results in order and the writer stores them in
    order, so by then every ping it sent (and had answered) before `mark` is stored.
    """

    async def check() -> bool:
        return any(t > mark for t in times(await pings(api, witness)))

    await eventually(check, timeout=mark - datetime.now().timestamp() + 10, interval=0.2)


@pytest.mark.parametrize("address", ["127.0.0.1", "::1"])
async def test_loopback_is_pinged_every_second_and_every_ping_stored(
    api: httpx.AsyncClient, address: str
) -> None:
    loop = asyncio.get_running_loop()
    added_at = loop.time()
    target = await add_target(api, address=address, interval_s=1)
    await ping_count_reaches(api, target["id"], 1, timeout=3.0)
    assert loop.time() - added_at < 3.0

    items = await ping_count_reaches(api, target["id"], 5, timeout=8.0)
    gaps = [b - a for a, b in zip(times(items), times(items)[1:], strict=False)]
    assert all(0.95 < gap < 1.05 for gap in gaps), gaps
    for ping in items:
        assert ping["lost"] is False
        assert 0 < ping["rtt_ms"] < 50
        assert ping["hops"] == 0
        assert ping["ttl"] == 64
    await api.post(f"/targets/{target['id']}/stop", headers=AUTH)


async def test_pause_resume_interval_change_and_stop_follow_at_once(
    api: httpx.AsyncClient,
) -> None:
    target = await add_target(api, address="127.0.0.2", interval_s=0.5)
    tid = target["id"]
    witness = await add_target(api, address="127.0.0.4", interval_s=0.2)
    await ping_count_reaches(api, tid, 3, timeout=5.0)

    paused = await api.post(f"/targets/{tid}/pause", headers=AUTH)
    assert paused.status_code == 200 and paused.json()["state"] == "paused"
    paused_at = datetime.now().timestamp()
    await stored_until(api, witness["id"], paused_at + 0.5)  # any in-flight batch landed
    before = await pings(api, tid)
    assert max(times(before)) <= paused_at + 0.5  # nothing sent after one interval
    await stored_until(api, witness["id"], paused_at + 3.5)  # and nothing later either
    assert len(await pings(api, tid)) == len(before)

    resumed = await api.post(f"/targets/{tid}/resume", headers=AUTH)
    assert resumed.json()["state"] == "active"
    await ping_count_reaches(api, tid, len(before) + 2, timeout=4.0)

    patched = await api.patch(f"/targets/{tid}", json={"interval_s": 0.2}, headers=AUTH)
    assert patched.status_code == 200 and patched.json()["interval_s"] == 0.2
    changed_at = datetime.now().timestamp()
    items = await ping_count_reaches(api, tid, len(before) + 15, timeout=6.0)
    fast = [t for t in times(items) if t > changed_at + 0.5]
    gaps = [b - a for a, b in itertools.pairwise(fast)]
    assert gaps and all(0.17 < gap < 0.23 for gap in gaps), gaps

    stopped = await api.post(f"/targets/{tid}/stop", headers=AUTH)
    assert stopped.json()["state"] == "stopped"
    stopped_at = datetime.now().timestamp()
    await stored_until(api, witness["id"], stopped_at + 1.5)
    await api.post(f"/targets/{witness['id']}/stop", headers=AUTH)
    kept = await pings(api, tid)
    assert len(kept) >= len(items)  # history kept
    assert max(times(kept)) <= stopped_at + 0.2
    listed = (await api.get(f"/targets/{tid}")).json()
    assert listed["state"] == "stopped" and listed["stopped_at"] is not None


def start_stack(database_url: str, prefix: str, port: int, log: Path) -> ServiceProcess:
    process = ServiceProcess(
        "up",
        {
            "PINGTRACK_DATABASE_URL": database_url,
            "PINGTRACK_AMQP_URL": AMQP_URL,
            "PINGTRACK_AMQP_PREFIX": prefix,
            "PINGTRACK_API_HOST": "127.0.0.1",
            "PINGTRACK_API_PORT": str(port),
            "PINGTRACK_WEB_PORT": "0",
            "PINGTRACK_ADMIN_TOKEN": ADMIN_TOKEN,
            "PINGTRACK_BATCH_MAX_DELAY_S": "0.2",
            "PINGTRACK_SCHEDULE_LADDER": "false",
        },
        log,
    )
    process.start()
    wait_healthy(f"http://127.0.0.1:{port}", process)
    return process


async def test_clean_restart_keeps_tracking_and_loses_nothing(
    own_database_url: str, tmp_path: Path
) -> None:
    """SIGTERM flushes every ping already sent; the next start reloads active targets."""
    prefix = f"pt-e2e-{uuid.uuid4().hex[:8]}"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    first = start_stack(own_database_url, prefix, port, tmp_path / "first.log")
    try:
        async with httpx.AsyncClient(base_url=base, timeout=10) as api:
            target = await add_target(api, address="127.0.0.3", interval_s=0.5)
            await ping_count_reaches(api, target["id"], 4, timeout=5.0)
        stopped_at = datetime.now().timestamp()
        assert first.stop() == 0, first.log()

        second = start_stack(own_database_url, prefix, port, tmp_path / "second.log")
        try:
            async with httpx.AsyncClient(base_url=base, timeout=10) as api:
                before = [t for t in times(await pings(api, target["id"])) if t < stopped_at]
                # The last ping sent before SIGTERM was flushed, not dropped.
                assert stopped_at - max(before) < 0.5 + 0.1
                items = await ping_count_reaches(api, target["id"], len(before) + 4, 6.0)
                assert len({p["ts"] for p in items}) == len(items)
                await api.post(f"/targets/{target['id']}/stop", headers=AUTH)
            assert second.stop() == 0, second.log()
        finally:
            if second.process and second.process.poll() is None:
                second.kill()
    finally:
        if first.process and first.process.poll() is None:
            first.kill()
        await _delete_broker_names(Topology(prefix))


@needs_netlab
async def test_a_host_that_never_answers_is_stored_as_lost_pings_at_the_rate(
    api: httpx.AsyncClient,
) -> None:
    with NetLab() as lab:
        silent = lab.host(echo_replies=False).address
        target = await add_target(api, address=silent, interval_s=0.5, timeout_s=0.3)
        items = await ping_count_reaches(api, target["id"], 8, timeout=8.0)
        await api.post(f"/targets/{target['id']}/stop", headers=AUTH)
    assert all(p["lost"] and p["rtt_ms"] is None and p["hops"] is None for p in items)
    gaps = [b - a for a, b in itertools.pairwise(times(items))]
    assert all(0.45 < gap < 0.55 for gap in gaps), gaps

"""api_service.main.run: serves over real HTTP until `stop`, and fails start-up clearly."""

from __future__ import annotations

import asyncio
import signal
import socket

import httpx
import pytest

from api_service.main import run
from shared.errors import ConfigError
from shared.settings import Settings
from tests.stack import free_port


async def _health_when_up(port: int) -> httpx.Response:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        for _ in range(200):
            try:
                return await client.get("/health")
            except httpx.ConnectError:
                await asyncio.sleep(0.05)
    raise AssertionError(f"nothing listens on port {port}")


async def test_run_serves_until_stop_and_leaves_signal_handlers_alone(
    settings: Settings,
) -> None:
    port = free_port()
    handler_before = signal.getsignal(signal.SIGTERM)
    stop = asyncio.Event()
    served = asyncio.create_task(
        run(settings.model_copy(update={"api_host": "127.0.0.1", "api_port": port}), stop)
    )
    try:
        response = await _health_when_up(port)
        assert response.status_code == 200
        assert response.json()["checks"]["database"] == "ok"
        assert signal.getsignal(signal.SIGTERM) is handler_before
    finally:
        stop.set()
        await asyncio.wait_for(served, 10)
    assert served.result() is None


async def test_the_api_is_also_served_on_the_browser_safe_port(settings: Settings) -> None:
    api_port, web_port = free_port(), free_port()
    stop = asyncio.Event()
    update = {"api_host": "127.0.0.1", "api_port": api_port, "web_port": web_port}
    served = asyncio.create_task(run(settings.model_copy(update=update), stop))
    try:
        for port in (api_port, web_port):
            response = await _health_when_up(port)
            assert response.json()["checks"]["database"] == "ok"
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{web_port}") as client:
            assert (await client.get("/openapi.json")).json()["info"]["title"]
    finally:
        stop.set()
        await asyncio.wait_for(served, 10)


async def test_a_cancelled_run_still_shuts_down_and_frees_the_port(settings: Settings) -> None:
    port = free_port()
    served = asyncio.create_task(
        run(
            settings.model_copy(update={"api_host": "127.0.0.1", "api_port": port}), asyncio.Event()
        )
    )
    assert (await _health_when_up(port)).status_code == 200
    served.cancel()
    done, _ = await asyncio.wait({served}, timeout=10)
    assert served in done and served.cancelled()
    with socket.socket() as again:
        # SO_REUSEADDR passes TIME_WAIT but never a socket still listening.
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind(("127.0.0.1", port))
        again.listen()


async def test_an_unreachable_database_fails_start_up_with_a_clear_error(
    settings: Settings,
) -> None:
    broken = settings.model_copy(
        update={
            "database_url": "postgresql://postgres@127.0.0.1:5432/pingtrack_no_such_db",
            "api_host": "127.0.0.1",
            "api_port": free_port(),
        }
    )
    with pytest.raises(ConfigError, match=r"cannot connect to PostgreSQL: .*does not exist"):
        await asyncio.wait_for(run(broken, asyncio.Event()), 10)


async def test_a_port_in_use_fails_start_up_with_a_clear_error(settings: Settings) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = settings.model_copy(update={"api_host": "127.0.0.1", "api_port": port})
        with pytest.raises(ConfigError, match=f"cannot listen on 127.0.0.1:{port}"):
            await asyncio.wait_for(run(busy, asyncio.Event()), 10)

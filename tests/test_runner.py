import asyncio

import pytest

from pingtrack.runner import run_services


async def test_failing_service_stops_the_others_cleanly() -> None:
    closed: list[str] = []

    async def steady(stop: asyncio.Event) -> None:
        await stop.wait()
        closed.append("steady")

    async def broken(stop: asyncio.Event) -> None:
        await asyncio.sleep(0.01)
        raise RuntimeError("boom")

    stop = asyncio.Event()
    with pytest.raises(RuntimeError, match="boom"):
        await asyncio.wait_for(run_services([("a", steady), ("b", broken)], stop), 5)
    assert stop.is_set()
    assert closed == ["steady"]


async def test_stop_event_ends_every_service() -> None:
    finished: list[str] = []

    def service(name: str):  # type: ignore[no-untyped-def]
        async def run(stop: asyncio.Event) -> None:
            await stop.wait()
            finished.append(name)

        return run

    stop = asyncio.Event()
    task = asyncio.create_task(run_services([("x", service("x")), ("y", service("y"))], stop))
    await asyncio.sleep(0.01)
    assert not task.done()
    stop.set()
    await asyncio.wait_for(task, 5)
    assert sorted(finished) == ["x", "y"]


async def test_service_returning_early_stops_the_rest() -> None:
    async def quits(stop: asyncio.Event) -> None:
        return None

    async def waits(stop: asyncio.Event) -> None:
        await stop.wait()

    stop = asyncio.Event()
    await asyncio.wait_for(run_services([("q", quits), ("w", waits)], stop), 5)
    assert stop.is_set()

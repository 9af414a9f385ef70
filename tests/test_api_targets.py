"""Target routes against the real database and broker: rows, revs and commands."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import aiormq
import asyncpg
import httpx
import pytest

from shared.broker import declare_results
from shared.constants import Topology
from shared.settings import Settings
from tests.api_client import ADMIN, CommandTap, Published, api_client, unique_address


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(settings) as client:
        yield client


@pytest.fixture
async def tap(settings: Settings) -> AsyncIterator[CommandTap]:
    async with CommandTap.open(settings) as tap:
        yield tap


async def _row(pool: asyncpg.Pool, target_id: int) -> asyncpg.Record | None:
    return await pool.fetchrow(
        "SELECT host(address) AS address, name, interval_ms, timeout_ms, state, rev, stopped_at"
        " FROM targets WHERE id = $1",
        target_id,
    )


async def _create(client: httpx.AsyncClient, **body: object) -> dict[str, object]:
    response = await client.post(
        "/targets", json={"address": unique_address(), **body}, headers=ADMIN
    )
    assert response.status_code == 201, response.text
    created: dict[str, object] = response.json()
    return created


def _one(published: list[Published], settings: Settings, target_id: int) -> Published:
    assert len(published) == 1, published
    command = published[0]
    assert command.routing_key == Topology(settings.amqp_prefix).target_key(target_id)
    assert command.persistent
    assert command.spec.id == target_id
    return command


async def test_create_stores_the_target_and_publishes_it_once(
    client: httpx.AsyncClient, tap: CommandTap, pool: asyncpg.Pool, settings: Settings
) -> None:
    address = unique_address(6)
    response = await client.post(
        "/targets",
        json={"address": address, "name": "lab", "interval_s": 0.5, "timeout_s": 0.25},
        headers=ADMIN,
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["address"] == address
    assert (body["name"], body["interval_s"], body["timeout_s"]) == ("lab", 0.5, 0.25)
    assert (body["state"], body["rev"], body["last_ping"], body["stopped_at"]) == (
        "active",
        1,
        None,
        None,
    )
    row = await _row(pool, body["id"])
    assert row is not None
    assert (row["address"], row["interval_ms"], row["timeout_ms"], row["state"]) == (
        address,
        500,
        250,
        "active",
    )
    command = _one(await tap.take(), settings, body["id"])
    assert (command.spec.address, command.spec.interval_ms, command.spec.timeout_ms) == (
        address,
        500,
        250,
    )
    assert (command.spec.state, command.spec.rev) == ("active", 1)


async def test_create_applies_default_interval_and_timeout(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    body = await _create(client)
    assert body["interval_s"] == 1.0
    assert body["timeout_s"] == settings.default_timeout_s
    assert body["name"] is None


async def test_a_second_live_target_for_one_address_is_a_conflict_naming_the_first(
    client: httpx.AsyncClient,
) -> None:
    first = await _create(client)
    again = await client.post("/targets", json={"address": first["address"]}, headers=ADMIN)
    assert again.status_code == 409
    assert again.json()["error"] == {
        "code": "conflict",
        "message": f"address {first['address']} is already tracked by target {first['id']}",
    }
    # Once the first is stopped the address may be tracked again.
    await client.post(f"/targets/{first['id']}/stop", headers=ADMIN)
    retry = await client.post("/targets", json={"address": first["address"]}, headers=ADMIN)
    assert retry.status_code == 201


async def test_get_and_list_show_state_and_last_ping(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    quiet, pinged, deleted = [await _create(client) for _ in range(3)]
    ts = datetime.now(UTC).replace(microsecond=123456) - timedelta(minutes=5)
    await pool.executemany(
        "INSERT INTO pings (target_id, ts, rtt_us, ttl, hops) VALUES ($1, $2, $3, 64, 0)",
        [(pinged["id"], ts - timedelta(seconds=1), 1000), (pinged["id"], ts, 2500)],
    )
    await client.delete(f"/targets/{deleted['id']}", headers=ADMIN)

    one = (await client.get(f"/targets/{pinged['id']}")).json()
    assert one["last_ping"] == {
        "ts": ts.isoformat().replace("+00:00", "Z"),
        "rtt_ms": 2.5,
        "lost": False,
    }

    listed = {t["id"]: t for t in (await client.get("/targets")).json()["items"]}
    assert listed[pinged["id"]]["last_ping"]["rtt_ms"] == 2.5
    assert listed[quiet["id"]]["last_ping"] is None
    assert deleted["id"] not in listed

    only_deleted = (await client.get("/targets", params={"state": "deleted"})).json()["items"]
    assert deleted["id"] in {t["id"] for t in only_deleted}
    assert {t["state"] for t in only_deleted} == {"deleted"}
    everything = (await client.get("/targets", params={"state": "all"})).json()["items"]
    assert {quiet["id"], pinged["id"], deleted["id"]} <= {t["id"] for t in everything}


async def test_patch_changes_interval_name_and_timeout_and_publishes_new_rev(
    client: httpx.AsyncClient, tap: CommandTap, pool: asyncpg.Pool, settings: Settings
) -> None:
    created = await _create(client, name="old")
    await tap.take()
    response = await client.patch(
        f"/targets/{created['id']}", json={"interval_s": 2.5, "timeout_s": 0.5}, headers=ADMIN
    )
    assert response.status_code == 200, response.text
    assert (response.json()["interval_s"], response.json()["name"]) == (2.5, "old")
    row = await _row(pool, created["id"])
    assert row is not None
    assert (row["interval_ms"], row["timeout_ms"], row["name"], row["rev"]) == (2500, 500, "old", 2)
    command = _one(await tap.take(), settings, created["id"])
    assert (command.spec.interval_ms, command.spec.rev, command.spec.state) == (2500, 2, "active")

    cleared = await client.patch(f"/targets/{created['id']}", json={"name": None}, headers=ADMIN)
    assert cleared.json()["name"] is None
    row = await _row(pool, created["id"])
    assert row is not None
    assert (row["name"], row["interval_ms"], row["rev"]) == (None, 2500, 3)


async def test_pause_resume_stop_change_state_bump_rev_and_publish_each(
    client: httpx.AsyncClient, tap: CommandTap, pool: asyncpg.Pool, settings: Settings
) -> None:
    target_id = (await _create(client))["id"]
    await tap.take()
    for action, state, rev in (
        ("pause", "paused", 2),
        ("resume", "active", 3),
        ("stop", "stopped", 4),
    ):
        response = await client.post(f"/targets/{target_id}/{action}", headers=ADMIN)
        assert response.status_code == 200, response.text
        assert (response.json()["state"], response.json()["rev"]) == (state, rev)
        row = await _row(pool, target_id)
        assert row is not None
        assert (row["state"], row["rev"]) == (state, rev)
        command = _one(await tap.take(), settings, target_id)
        assert (command.spec.state, command.spec.rev) == (state, rev)
    row = await _row(pool, target_id)
    assert row is not None and row["stopped_at"] is not None
    assert (await client.get(f"/targets/{target_id}")).json()["stopped_at"] is not None


async def test_pausing_a_paused_target_is_a_noop(
    client: httpx.AsyncClient, tap: CommandTap, pool: asyncpg.Pool
) -> None:
    target_id = (await _create(client))["id"]
    await client.post(f"/targets/{target_id}/pause", headers=ADMIN)
    await tap.take()
    again = await client.post(f"/targets/{target_id}/pause", headers=ADMIN)
    assert again.status_code == 200
    assert (again.json()["state"], again.json()["rev"]) == ("paused", 2)
    assert await tap.take() == []
    row = await _row(pool, target_id)
    assert row is not None and row["rev"] == 2


@pytest.mark.parametrize("end_state", ["stop", "delete"])
async def test_resuming_an_ended_target_is_a_conflict(
    client: httpx.AsyncClient, end_state: str
) -> None:
    target_id = (await _create(client))["id"]
    await client.request(
        "DELETE" if end_state == "delete" else "POST",
        f"/targets/{target_id}" if end_state == "delete" else f"/targets/{target_id}/stop",
        headers=ADMIN,
    )
    state = "deleted" if end_state == "delete" else "stopped"
    for action in ("resume", "pause"):
        response = await client.post(f"/targets/{target_id}/{action}", headers=ADMIN)
        assert response.status_code == 409
        assert response.json()["error"]["message"] == (
            f"target {target_id} is {state}; it cannot be {action}d"
        )


async def test_soft_delete_keeps_history_and_publishes_deleted(
    client: httpx.AsyncClient, tap: CommandTap, pool: asyncpg.Pool, settings: Settings
) -> None:
    target_id = (await _create(client))["id"]
    await pool.execute(
        "INSERT INTO pings (target_id, ts, rtt_us) VALUES ($1, now() - interval '1 minute', 900)",
        target_id,
    )
    await tap.take()
    response = await client.delete(f"/targets/{target_id}", headers=ADMIN)
    assert response.status_code == 200
    assert (response.json()["state"], response.json()["rev"]) == ("deleted", 2)
    row = await _row(pool, target_id)
    assert row is not None and (row["state"], row["rev"]) == ("deleted", 2)
    assert await pool.fetchval("SELECT count(*) FROM pings WHERE target_id = $1", target_id) == 1
    command = _one(await tap.take(), settings, target_id)
    assert (command.spec.state, command.spec.rev) == ("deleted", 2)
    # Still readable by id, history included.
    assert (await client.get(f"/targets/{target_id}")).json()["state"] == "deleted"
    assert len((await client.get(f"/targets/{target_id}/pings")).json()["items"]) == 1
    patched = await client.patch(f"/targets/{target_id}", json={"name": "x"}, headers=ADMIN)
    assert patched.status_code == 409


async def test_purge_removes_the_target_and_every_ping(
    client: httpx.AsyncClient, tap: CommandTap, pool: asyncpg.Pool, settings: Settings
) -> None:
    target_id = (await _create(client))["id"]
    # Any table keyed by target_id is history of that target, whichever tier made it.
    tier = f"purge_tier_{settings.amqp_prefix.replace('-', '_')}"
    await pool.execute(f"CREATE TABLE {tier} (target_id bigint NOT NULL, v int)")
    await pool.execute(f"INSERT INTO {tier} VALUES ($1, 1), ($1, 2), ($1 + 1000000, 3)", target_id)
    await pool.execute(
        """INSERT INTO pings (target_id, ts, rtt_us)
           SELECT $1, now() - s * interval '1 second', 1000 FROM generate_series(1, 30) s""",
        target_id,
    )
    await tap.take()
    response = await client.delete(f"/targets/{target_id}", params={"purge": "true"}, headers=ADMIN)
    assert response.status_code == 200
    body = response.json()
    assert (body["id"], body["purged"], body["rows_deleted"]["pings"]) == (target_id, True, 30)
    assert "targets" not in body["rows_deleted"]
    assert body["rows_deleted"][tier] == 2
    assert await pool.fetchval(f"SELECT count(*) FROM {tier}") == 1
    await pool.execute(f"DROP TABLE {tier}")
    assert await _row(pool, target_id) is None
    assert await pool.fetchval("SELECT count(*) FROM pings WHERE target_id = $1", target_id) == 0
    command = _one(await tap.take(), settings, target_id)
    assert (command.spec.state, command.spec.rev) == ("deleted", 2)
    assert (await client.get(f"/targets/{target_id}")).status_code == 404


async def test_a_broker_outage_still_commits_and_answers(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    down = settings.model_copy(update={"amqp_url": "amqp://guest:guest@127.0.0.1:1/"})
    async with api_client(down) as client:
        created = await client.post("/targets", json={"address": unique_address()}, headers=ADMIN)
        assert created.status_code == 201
        target_id = created.json()["id"]
        paused = await client.post(f"/targets/{target_id}/pause", headers=ADMIN)
        assert paused.status_code == 200
        health = await client.get("/health")
    row = await _row(pool, target_id)
    assert row is not None and (row["state"], row["rev"]) == ("paused", 2)
    assert health.status_code == 503
    assert health.json()["status"] == "degraded"
    assert health.json()["checks"]["database"] == "ok"
    assert health.json()["checks"]["broker"].startswith("error")


async def test_health_reports_database_broker_and_queue_depth(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    absent = await client.get("/health")
    assert absent.status_code == 200
    checks = absent.json()["checks"]
    assert (checks["database"], checks["broker"]) == ("ok", "ok")
    assert checks["results_queue_depth"] is None
    # Once the results queue exists its depth is reported.
    connection = await aiormq.connect(settings.amqp_url)
    try:
        channel = await connection.channel()
        topology = Topology(settings.amqp_prefix)
        await declare_results(channel, topology)
        for _ in range(3):
            await channel.basic_publish(
                b"x", exchange=topology.results_exchange, routing_key=topology.results_queue
            )
    finally:
        await connection.close()
    present = await client.get("/health")
    assert present.json()["checks"]["results_queue_depth"] == 3


async def test_openapi_documents_the_routes_and_the_bearer_scheme(
    client: httpx.AsyncClient,
) -> None:
    spec = (await client.get("/openapi.json")).json()
    assert {
        "/health",
        "/targets",
        "/targets/{target_id}",
        "/targets/{target_id}/pause",
        "/targets/{target_id}/resume",
        "/targets/{target_id}/stop",
        "/targets/{target_id}/pings",
    } <= set(spec["paths"])
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert spec["paths"]["/targets"]["post"]["responses"]["201"]

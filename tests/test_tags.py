"""Tags on targets: filters on the list, pause and resume of every target with the tags."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest

from shared.settings import Settings
from tests.api_client import ADMIN, CommandTap, api_client, unique_address


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(settings) as client:
        yield client


async def _create(client: httpx.AsyncClient, tags: list[str]) -> int:
    response = await client.post(
        "/targets", json={"address": unique_address(), "tags": tags}, headers=ADMIN
    )
    assert response.status_code == 201, response.text
    target_id: int = response.json()["id"]
    return target_id


async def _listed(client: httpx.AsyncClient, *tags: str) -> list[int]:
    response = await client.get("/targets", params=[("tag", t) for t in tags])
    assert response.status_code == 200, response.text
    return [t["id"] for t in response.json()["items"]]


async def test_the_list_keeps_targets_carrying_every_given_tag(client: httpx.AsyncClient) -> None:
    site, other = f"site-{uuid.uuid4().hex[:6]}", f"o-{uuid.uuid4().hex[:6]}"
    both = await _create(client, [site, "core"])
    only_site = await _create(client, [site])
    await _create(client, [other, "core"])
    assert await _listed(client, site) == [both, only_site]
    assert await _listed(client, site, "core") == [both]
    assert await _listed(client, site, other) == []
    bad = await client.get("/targets", params={"tag": "has space"})
    assert bad.status_code == 422
    assert "tag 'has space' is not valid" in bad.json()["error"]["message"]


async def test_pause_and_resume_by_tag_change_only_matching_targets_and_publish_each(
    client: httpx.AsyncClient, settings: Settings, pool: asyncpg.Pool
) -> None:
    site = f"site-{uuid.uuid4().hex[:6]}"
    a, b = await _create(client, [site, "edge"]), await _create(client, [site, "edge"])
    untouched = await _create(client, [site])
    stopped = await _create(client, [site, "edge"])
    await client.post(f"/targets/{stopped}/stop", headers=ADMIN)
    async with CommandTap.open(settings) as tap:
        paused = await client.post(
            "/targets/pause", params=[("tag", site), ("tag", "edge")], headers=ADMIN
        )
        assert paused.status_code == 200, paused.text
        assert paused.json() == {"changed": [a, b]}
        states = await pool.fetch(
            "SELECT id, state, rev FROM targets WHERE id = ANY($1::bigint[]) ORDER BY id",
            [a, b, untouched, stopped],
        )
        assert [tuple(r) for r in states] == [
            (a, "paused", 2),
            (b, "paused", 2),
            (untouched, "active", 1),
            (stopped, "stopped", 2),
        ]
        assert sorted((c.spec.id, c.spec.state, c.spec.rev) for c in await tap.take()) == [
            (a, "paused", 2),
            (b, "paused", 2),
        ]
        again = await client.post("/targets/pause", params={"tag": site}, headers=ADMIN)
        assert again.json() == {"changed": [untouched]}
        resumed = await client.post("/targets/resume", params={"tag": "edge"}, headers=ADMIN)
        assert set(resumed.json()["changed"]) >= {a, b}
        assert stopped not in resumed.json()["changed"]


async def test_pause_by_tag_needs_a_tag_and_the_admin_token(client: httpx.AsyncClient) -> None:
    response = await client.post("/targets/pause", headers=ADMIN)
    assert response.status_code == 422
    assert response.json()["error"]["message"] == "give at least one ?tag= to pause by tag"
    assert (await client.post("/targets/resume", params={"tag": "x"})).status_code == 401

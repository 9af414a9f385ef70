"""Hostname, tcp and http targets over the REST API: rows, answers and commands."""

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


@pytest.fixture
async def tap(settings: Settings) -> AsyncIterator[CommandTap]:
    async with CommandTap.open(settings) as tap:
        yield tap


def _host() -> str:
    return f"h{uuid.uuid4().hex[:10]}.example"


async def _post(client: httpx.AsyncClient, body: dict[str, object]) -> httpx.Response:
    return await client.post("/targets", json=body, headers=ADMIN)


async def test_a_hostname_target_is_stored_answered_and_published_with_its_family(
    client: httpx.AsyncClient, tap: CommandTap, pool: asyncpg.Pool
) -> None:
    host = _host()
    response = await _post(client, {"hostname": host.upper(), "family": "ipv6", "tags": ["b", "a"]})
    assert response.status_code == 201, response.text
    body = response.json()
    assert {k: body[k] for k in ("kind", "address", "hostname", "family", "port", "tags")} == {
        "kind": "icmp",
        "address": None,
        "hostname": host,
        "family": "ipv6",
        "port": None,
        "tags": ["a", "b"],
    }
    row = await pool.fetchrow(
        "SELECT address, hostname, family, tags FROM targets WHERE id = $1", body["id"]
    )
    assert tuple(row) == (None, host, "ipv6", ["a", "b"])
    [command] = await tap.take()
    assert (command.spec.address, command.spec.kind, command.spec.family) == (host, "icmp", "ipv6")


async def test_a_tcp_target_publishes_its_port(client: httpx.AsyncClient, tap: CommandTap) -> None:
    address = unique_address()
    response = await _post(client, {"kind": "tcp", "address": address, "port": 443})
    assert response.status_code == 201, response.text
    assert (response.json()["kind"], response.json()["port"]) == ("tcp", 443)
    [command] = await tap.take()
    assert (command.spec.kind, command.spec.address, command.spec.port) == ("tcp", address, 443)


async def test_an_http_target_publishes_every_http_field(
    client: httpx.AsyncClient, tap: CommandTap, settings: Settings
) -> None:
    url = f"https://{_host()}/health"
    response = await _post(
        client,
        {
            "kind": "http",
            "url": url,
            "http_method": "GET",
            "expect_status": 204,
            "expect_body": "ok",
            "interval_s": 30.0,
        },
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["url"], body["http_method"], body["expect_status"], body["expect_body"]) == (
        url,
        "GET",
        204,
        "ok",
    )
    assert body["timeout_s"] == settings.default_http_timeout_s
    [command] = await tap.take()
    spec = command.spec
    assert (spec.kind, spec.url, spec.http_method, spec.expect_status, spec.expect_body) == (
        "http",
        url,
        "GET",
        204,
        "ok",
    )
    assert spec.address == ""  # an http probe has its url, no address


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"kind": "tcp", "address": "127.0.0.1"}, "a tcp target needs a port"),
        (
            {"kind": "http", "url": "http://a.example/", "interval_s": 1.0},
            "interval_s of http targets must be at least 5 seconds, got 1.0",
        ),
        ({"hostname": "not a host"}, "hostname 'not a host' is not a valid DNS name"),
        (
            {"address": "127.0.0.1", "url": "http://a.example/"},
            "url is for kind http only, not icmp",
        ),
        ({"kind": "http", "url": "gopher://a.example/"}, "must start with http:// or https://"),
    ],
)
async def test_wrong_combinations_are_422_with_the_reason(
    client: httpx.AsyncClient, body: dict[str, object], message: str
) -> None:
    response = await _post(client, body)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_input"
    assert message in response.json()["error"]["message"]


async def test_unknown_kind_is_a_validation_error(client: httpx.AsyncClient) -> None:
    response = await _post(client, {"kind": "udp", "address": "127.0.0.1"})
    assert response.status_code == 422
    assert response.json()["error"]["message"].startswith("kind: Input should be")


async def test_identity_is_kind_host_port_and_family(client: httpx.AsyncClient) -> None:
    address, host = unique_address(), _host()
    assert (await _post(client, {"address": address})).status_code == 201
    tcp = await _post(client, {"kind": "tcp", "address": address, "port": 22})
    assert tcp.status_code == 201
    again = await _post(client, {"kind": "tcp", "address": address, "port": 22})
    assert again.status_code == 409
    assert again.json()["error"]["message"] == (
        f"tcp address {address} port 22 is already tracked by target {tcp.json()['id']}"
    )
    assert (await _post(client, {"hostname": host, "family": "ipv4"})).status_code == 201
    assert (await _post(client, {"hostname": host, "family": "ipv6"})).status_code == 201
    dup = await _post(client, {"hostname": host.upper() + ".", "family": "ipv4"})
    assert dup.status_code == 409


async def test_patch_switches_address_to_hostname_and_publishes_the_new_rev(
    client: httpx.AsyncClient, tap: CommandTap, pool: asyncpg.Pool
) -> None:
    created = (await _post(client, {"address": unique_address(), "name": "n"})).json()
    host = _host()
    response = await client.patch(
        f"/targets/{created['id']}", json={"hostname": host, "tags": ["x"]}, headers=ADMIN
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["address"], body["hostname"], body["name"], body["tags"], body["rev"]) == (
        None,
        host,
        "n",
        ["x"],
        2,
    )
    row = await pool.fetchrow(
        "SELECT address, hostname, rev FROM targets WHERE id = $1", created["id"]
    )
    assert tuple(row) == (None, host, 2)
    commands = await tap.take()
    assert [(c.spec.rev, c.spec.address) for c in commands] == [
        (1, created["address"]),
        (2, host),
    ]


async def test_patch_to_an_invalid_shape_changes_nothing(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    created = (await _post(client, {"address": unique_address()})).json()
    response = await client.patch(f"/targets/{created['id']}", json={"kind": "tcp"}, headers=ADMIN)
    assert response.status_code == 422
    assert response.json()["error"]["message"] == "a tcp target needs a port"
    assert await pool.fetchval("SELECT rev FROM targets WHERE id = $1", created["id"]) == 1


async def test_patch_into_anothers_identity_is_a_conflict(client: httpx.AsyncClient) -> None:
    first = (await _post(client, {"address": unique_address()})).json()
    second = (await _post(client, {"address": unique_address()})).json()
    response = await client.patch(
        f"/targets/{second['id']}", json={"address": first["address"]}, headers=ADMIN
    )
    assert response.status_code == 409
    assert response.json()["error"]["message"] == (
        f"address {first['address']} is already tracked by target {first['id']}"
    )

"""Bad requests get a clear 4xx in one error shape, never a 500."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest
from pydantic import SecretStr

from shared.settings import Settings
from tests.api_client import ADMIN, api_client, unique_address


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(settings) as client:
        yield client


def _error(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and body["error"]["code"] == code, body
    message: str = body["error"]["message"]
    return message


@pytest.mark.parametrize(
    ("address", "says"),
    [
        ("example.com", "is not a literal IPv4 or IPv6 address"),
        ("localhost", "is not a literal IPv4 or IPv6 address"),
        ("999.1.1.1", "is not a literal IPv4 or IPv6 address"),
        ("10.0.0.0/8", "is not a literal IPv4 or IPv6 address"),
        ("", "address is empty"),
        ("224.0.0.1", "is a multicast address"),
        ("ff02::1", "is a multicast address"),
        ("0.0.0.0", "is the unspecified address"),
        ("::", "is the unspecified address"),
        ("255.255.255.255", "is the broadcast address"),
    ],
)
async def test_bad_addresses_are_refused_with_the_reason(
    client: httpx.AsyncClient, pool: asyncpg.Pool, address: str, says: str
) -> None:
    before = await pool.fetchval("SELECT count(*) FROM targets")
    response = await client.post("/targets", json={"address": address}, headers=ADMIN)
    assert says in _error(response, 422, "invalid_input")
    assert await pool.fetchval("SELECT count(*) FROM targets") == before


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"interval_s": 0.05}, "interval_s must be between 0.1 and 3600 seconds, got 0.05"),
        ({"interval_s": 3601}, "interval_s must be between 0.1 and 3600 seconds, got 3601"),
        ({"interval_s": "fast"}, "interval_s: Input should be a valid number"),
        ({"interval_s": "2"}, "interval_s: Input should be a valid number"),
        ({"timeout_s": 0.01}, "timeout_s must be between 0.05 and 60 seconds, got 0.01"),
        ({"timeout_s": 61}, "timeout_s must be between 0.05 and 60 seconds, got 61"),
        ({"intervall_s": 2}, "intervall_s: unknown field"),
        ({"name": "x" * 201}, "name is longer than 200 characters"),
    ],
)
async def test_out_of_range_or_mistyped_fields_are_refused(
    client: httpx.AsyncClient, body: dict[str, object], says: str
) -> None:
    response = await client.post(
        "/targets", json={"address": unique_address(), **body}, headers=ADMIN
    )
    assert response.status_code == 422, response.text
    assert says in response.json()["error"]["message"]


async def test_missing_address_names_the_field(client: httpx.AsyncClient) -> None:
    response = await client.post("/targets", json={"name": "x"}, headers=ADMIN)
    assert _error(response, 422, "invalid_input") == (
        "an icmp target needs exactly one of address or hostname"
    )


@pytest.mark.parametrize("payload", [b'{"address": "192.0.2.1"', b"not json", b"[1, 2"])
async def test_malformed_json_is_a_400(client: httpx.AsyncClient, payload: bytes) -> None:
    response = await client.post(
        "/targets",
        content=payload,
        headers={**ADMIN, "Content-Type": "application/json"},
    )
    assert _error(response, 400, "malformed_json").startswith("request body is not valid JSON")


async def test_a_json_body_that_is_not_an_object_is_a_422(client: httpx.AsyncClient) -> None:
    response = await client.post("/targets", json=[1, 2], headers=ADMIN)
    assert "Input should be a valid dictionary" in _error(response, 422, "validation_error")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/targets/987654321"),
        ("PATCH", "/targets/987654321"),
        ("POST", "/targets/987654321/pause"),
        ("POST", "/targets/987654321/resume"),
        ("POST", "/targets/987654321/stop"),
        ("DELETE", "/targets/987654321"),
        ("DELETE", "/targets/987654321?purge=true"),
        ("GET", "/targets/987654321/pings"),
    ],
)
async def test_unknown_ids_are_404(client: httpx.AsyncClient, method: str, path: str) -> None:
    body = {"name": "x"} if method == "PATCH" else None
    response = await client.request(method, path, json=body, headers=ADMIN)
    assert _error(response, 404, "not_found") == "target 987654321 does not exist"


@pytest.mark.parametrize("bad_id", ["abc", "1.5", "0", "-3", "99999999999999999999"])
async def test_non_numeric_or_out_of_range_ids_are_422(
    client: httpx.AsyncClient, bad_id: str
) -> None:
    for response in (
        await client.get(f"/targets/{bad_id}"),
        await client.post(f"/targets/{bad_id}/pause", headers=ADMIN),
    ):
        assert _error(response, 422, "validation_error").startswith("path.target_id: ")


async def test_unknown_state_filter_is_refused(client: httpx.AsyncClient) -> None:
    response = await client.get("/targets", params={"state": "sleeping"})
    assert _error(response, 422, "invalid_input") == (
        "unknown state 'sleeping'; use one of active, paused, stopped, deleted, all"
    )


async def test_patch_without_changes_is_refused(client: httpx.AsyncClient) -> None:
    created = await client.post("/targets", json={"address": unique_address()}, headers=ADMIN)
    response = await client.patch(f"/targets/{created.json()['id']}", json={}, headers=ADMIN)
    assert _error(response, 422, "invalid_input") == ("nothing to change: give at least one field")


async def test_unknown_route_and_method_use_the_error_shape(client: httpx.AsyncClient) -> None:
    _error(await client.get("/nowhere"), 404, "not_found")
    _error(await client.put("/targets", headers=ADMIN), 405, "method_not_allowed")


async def test_writes_need_the_admin_token(client: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    address = unique_address()
    missing = await client.post("/targets", json={"address": address})
    assert _error(missing, 401, "unauthorized") == (
        "missing credentials: send 'Authorization: Bearer <admin token>'"
    )
    assert missing.headers["www-authenticate"] == "Bearer"
    wrong = await client.post(
        "/targets", json={"address": address}, headers={"Authorization": "Bearer nope"}
    )
    assert _error(wrong, 403, "forbidden") == "the token is not the admin token"
    basic = await client.post(
        "/targets", json={"address": address}, headers={"Authorization": "Basic dGVzdA=="}
    )
    _error(basic, 401, "unauthorized")
    for path in ("/targets/1/pause", "/targets/1/resume", "/targets/1/stop"):
        _error(await client.post(path), 401, "unauthorized")
    _error(await client.delete("/targets/1"), 401, "unauthorized")
    _error(await client.patch("/targets/1", json={"name": "x"}), 401, "unauthorized")
    assert (
        await pool.fetchval("SELECT count(*) FROM targets WHERE address = $1::inet", address) == 0
    )
    # Reads are open when no read token is configured.
    assert (await client.get("/targets")).status_code == 200


async def test_writes_are_disabled_without_an_admin_token(settings: Settings) -> None:
    async with api_client(settings.model_copy(update={"admin_token": None})) as client:
        response = await client.post("/targets", json={"address": unique_address()}, headers=ADMIN)
    assert _error(response, 503, "unavailable") == (
        "writes are disabled: PINGTRACK_ADMIN_TOKEN is not set"
    )


async def test_a_read_token_guards_reads_and_the_admin_token_also_opens_them(
    settings: Settings,
) -> None:
    guarded = settings.model_copy(update={"read_token": SecretStr("reader")})
    async with api_client(guarded) as client:
        _error(await client.get("/targets"), 401, "unauthorized")
        _error(await client.get("/targets/1/pings"), 401, "unauthorized")
        wrong = await client.get("/targets", headers={"Authorization": "Bearer nope"})
        _error(wrong, 403, "forbidden")
        reader = {"Authorization": "Bearer reader"}
        assert (await client.get("/targets", headers=reader)).status_code == 200
        assert (await client.get("/targets", headers=ADMIN)).status_code == 200
        # The read token does not open writes.
        write = await client.post("/targets", json={"address": unique_address()}, headers=reader)
        _error(write, 403, "forbidden")
        # Health stays open for probes.
        assert (await client.get("/health")).status_code == 200

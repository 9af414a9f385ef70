"""Access control over every route the app has: enumerated, so new routes are covered."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest
from pydantic import SecretStr

from api_service.app import create_app
from shared.settings import Settings
from tests.api_client import api_client, unique_address

ADMIN_SECRET = "adm-7f3c9a1e-never-in-logs"
READ_SECRET = "rd-52b8e0d4-never-in-logs"
WRONG_SECRET = "wr-0c61aa9f-never-in-logs"
WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
# Served without any token: readiness probes and metric scrapers must not need one.
OPEN_PATHS = {"/health", "/metrics"}


@pytest.fixture
def guarded(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"admin_token": SecretStr(ADMIN_SECRET), "read_token": SecretStr(READ_SECRET)}
    )


@pytest.fixture
async def client(guarded: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(guarded) as client:
        yield client


def routes(settings: Settings) -> list[tuple[str, str]]:
    """(method, path with every path parameter set to 1) of every API route.

    Read from the OpenAPI schema FastAPI builds out of the app's routes (its
    included routers are not plain APIRoutes in `app.routes` any more).
    """
    schema = create_app(settings).openapi()
    return sorted(
        (method.upper(), re.sub(r"\{[^}]+\}", "1", path))
        for path, operations in schema["paths"].items()
        for method in operations
    )


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def error_code(response: httpx.Response) -> tuple[int, str]:
    return response.status_code, response.json()["error"]["code"]


async def test_every_write_route_rejects_missing_and_wrong_tokens(
    client: httpx.AsyncClient, guarded: Settings, pool: asyncpg.Pool
) -> None:
    writes = [(m, p) for m, p in routes(guarded) if m in WRITE_METHODS]
    # The enumeration itself must see the routes we know of.
    assert {
        ("POST", "/targets"),
        ("PATCH", "/targets/1"),
        ("DELETE", "/targets/1"),
        ("POST", "/targets/1/pause"),
        ("POST", "/targets/1/resume"),
        ("POST", "/targets/1/stop"),
    } <= set(writes)
    before = await pool.fetchval("SELECT count(*) FROM targets")
    body = {"address": unique_address(), "name": "x"}
    for method, path in writes:
        for headers, expected in [
            ({}, (401, "unauthorized")),
            (bearer(WRONG_SECRET), (403, "forbidden")),
            (bearer(READ_SECRET), (403, "forbidden")),
            ({"Authorization": f"Basic {ADMIN_SECRET}"}, (401, "unauthorized")),
            (bearer(ADMIN_SECRET[:-1]), (403, "forbidden")),
        ]:
            response = await client.request(method, path, json=body, headers=headers)
            assert error_code(response) == expected, (method, path, headers, response.text)
    assert await pool.fetchval("SELECT count(*) FROM targets") == before


async def test_with_a_read_token_every_read_route_rejects_missing_and_wrong_tokens(
    client: httpx.AsyncClient, guarded: Settings
) -> None:
    reads = [(m, p) for m, p in routes(guarded) if m == "GET" and p not in OPEN_PATHS]
    assert {("GET", "/targets"), ("GET", "/targets/1"), ("GET", "/targets/1/pings")} <= set(reads)
    for method, path in reads:
        missing = await client.request(method, path)
        assert error_code(missing) == (401, "unauthorized"), (path, missing.text)
        wrong = await client.request(method, path, headers=bearer(WRONG_SECRET))
        assert error_code(wrong) == (403, "forbidden"), (path, wrong.text)
        # Either token passes the gate (the answer may then be a 404 or a 422).
        for token in (READ_SECRET, ADMIN_SECRET):
            allowed = await client.request(method, path, headers=bearer(token))
            assert allowed.status_code not in (401, 403), (path, allowed.text)
    assert (await client.get("/health")).status_code == 200


async def test_a_token_that_is_not_ascii_is_refused_not_a_crash(
    client: httpx.AsyncClient,
) -> None:
    headers = [(b"authorization", "Bearer pässwörd".encode("latin-1"))]
    response = await client.post("/targets", json={"address": unique_address()}, headers=headers)
    assert error_code(response) == (403, "forbidden")


async def test_tokens_never_appear_in_logs_or_answers(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    answers = []
    with caplog.at_level(logging.DEBUG):
        for token in (WRONG_SECRET, READ_SECRET, ADMIN_SECRET):
            for method, path in [
                ("POST", "/targets"),
                ("GET", "/targets"),
                ("GET", "/targets/999999999"),
                ("POST", "/targets/999999999/pause"),
            ]:
                body = {"address": unique_address()} if method == "POST" else None
                response = await client.request(method, path, json=body, headers=bearer(token))
                answers.append(response.text + str(response.headers))
    assert caplog.records, "the requests above log at least the HTTP client's lines"
    logged = caplog.text + "".join(str(r.__dict__) for r in caplog.records)
    for secret in (WRONG_SECRET, READ_SECRET, ADMIN_SECRET):
        assert secret not in logged
        assert not any(secret in answer for answer in answers)

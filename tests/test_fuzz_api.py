"""Fuzz the live API from its own OpenAPI schema: no input may cause a 5xx or a crash.

The API runs as its own process on a database of its own: fuzzed writes
create targets with arbitrary addresses, and no prober may ever see them.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import strategies as st

from shared.constants import Topology
from shared.migrate import drop_database, migrate_database
from shared.settings import REPO_ROOT
from tests.conftest import ADMIN_TOKEN, AMQP_URL, _delete_broker_names, _dsn_for
from tests.stack import ServiceProcess, free_port, wait_healthy

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

EXAMPLES_PER_OPERATION = 25
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
# Operations that send packets to a target's address (which the fuzzer picks).
NEVER_FUZZED = ("traceroute",)


@pytest.fixture(scope="module")
def live_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, ServiceProcess]]:
    name = f"pingtrack_fuzz_{uuid.uuid4().hex[:8]}"
    prefix = f"pt-fuzz-{uuid.uuid4().hex[:8]}"
    dsn = _dsn_for(name)
    asyncio.run(migrate_database(dsn, REPO_ROOT / "migrations"))
    port = free_port()
    env = {
        "PINGTRACK_DATABASE_URL": dsn,
        "PINGTRACK_AMQP_URL": AMQP_URL,
        "PINGTRACK_AMQP_PREFIX": prefix,
        "PINGTRACK_API_HOST": "127.0.0.1",
        "PINGTRACK_API_PORT": str(port),
        "PINGTRACK_WEB_PORT": "0",
        "PINGTRACK_ADMIN_TOKEN": ADMIN_TOKEN,
        "PINGTRACK_LOG_LEVEL": "ERROR",
    }
    process = ServiceProcess("api", env, Path(tmp_path_factory.mktemp("fuzz")) / "api.log")
    process.start()
    try:
        base = f"http://127.0.0.1:{port}"
        wait_healthy(base, process)
        # Small ids exist, so fuzzed paths reach real targets too (never pinged: no prober).
        for n in range(1, 4):
            body = {"address": f"198.18.99.{n}", "interval_s": 60.0}
            created = httpx.post(f"{base}/targets", json=body, headers=AUTH, timeout=10)
            assert created.status_code == 201, created.text
        yield base, process
        assert process.stop() == 0, process.log()
    finally:
        if process.process is not None and process.process.poll() is None:
            process.kill()
        asyncio.run(_delete_broker_names(Topology(prefix)))
        asyncio.run(drop_database(dsn))


def test_no_request_built_from_the_schema_gets_a_5xx(
    live_api: tuple[str, ServiceProcess],
) -> None:
    base, process = live_api
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
    failures: list[str] = []
    fuzzed: list[str] = []
    calls: list[int] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if any(word in operation.path for word in NEVER_FUZZED):
            continue
        fuzzed.append(operation.label)

        @hypothesis.settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy(), authorized=st.booleans())
        def probe(case: schemathesis.Case, authorized: bool) -> None:
            headers = AUTH if authorized else {}
            response = case.call(base_url=base, headers=headers, timeout=10)
            calls.append(response.status_code)
            if response.status_code >= 500:
                failures.append(
                    f"{case.operation.label} -> {response.status_code}: {response.text[:300]}\n"
                    f"  {case.as_curl_command(headers=headers)}"
                )

        probe()
    assert {"POST /targets", "GET /targets/{target_id}/pings", "GET /health"} <= set(fuzzed)
    assert not failures, "\n".join(failures[:20])
    # Each operation really was exercised, and not only by rejected requests.
    assert len(calls) >= len(fuzzed) * EXAMPLES_PER_OPERATION // 2
    assert {200, 401, 404, 422} <= set(calls)
    assert process.process is not None and process.process.poll() is None, "the API crashed"

"""Fixtures over the real PostgreSQL and RabbitMQ.

The session gets its own freshly migrated database; every test gets its own
broker names (a unique prefix) and deletes them afterwards.
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import aiormq
import asyncpg
import pytest

from shared.constants import Topology
from shared.migrate import drop_database, migrate_database
from shared.settings import Settings

BASE_DSN = os.environ.get("PINGTRACK_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/")
AMQP_URL = os.environ.get("PINGTRACK_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
ADMIN_TOKEN = "test-admin-token"

# The egress guard and the skip policy hold for every run of the suite.
pytest_plugins = ("tests.egress_plugin", "tests.skip_policy")


def _dsn_for(database: str) -> str:
    return urlunsplit(urlsplit(BASE_DSN)._replace(path="/" + database))


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """CLI commands under test set up logging on the runner's captured stderr; put ours back."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture(scope="session")
def template_url() -> Iterator[str]:
    """A migrated database nobody connects to, cloned for tests that need their own."""
    dsn = _dsn_for(f"pingtrack_test_{os.getpid()}_{uuid.uuid4().hex[:6]}_tpl")
    asyncio.run(migrate_database(dsn, Settings().migrations_dir))
    yield dsn
    asyncio.run(drop_database(dsn))


@asynccontextmanager
async def cloned_database(template: str) -> AsyncIterator[str]:
    """A new database copied from `template` (a quarter second), dropped afterwards."""
    dsn = _dsn_for(f"pingtrack_test_{os.getpid()}_{uuid.uuid4().hex[:8]}")
    name, source = (urlsplit(u).path.lstrip("/") for u in (dsn, template))
    conn = await asyncpg.connect(_dsn_for("postgres"))
    try:
        await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{source}"')
    finally:
        await conn.close()
    try:
        yield dsn
    finally:
        await drop_database(dsn)


@pytest.fixture(scope="session")
async def database_url(template_url: str) -> AsyncIterator[str]:
    """The database most tests share. No prober ever runs on it: tests that start
    one override `database_url` with `own_database_url` (their targets only)."""
    async with cloned_database(template_url) as dsn:
        yield dsn


@pytest.fixture
async def own_database_url(template_url: str) -> AsyncIterator[str]:
    async with cloned_database(template_url) as dsn:
        yield dsn


@pytest.fixture(scope="session")
async def cron_conn() -> AsyncIterator[asyncpg.Connection | None]:
    """A connection to pg_cron's database, or None where pg_cron is not loaded."""
    conn = await asyncpg.connect(_dsn_for("postgres"))
    try:
        cron_db = await conn.fetchval("SELECT current_setting('cron.database_name', true)")
    finally:
        await conn.close()
    if not cron_db:
        yield None
        return
    conn = await asyncpg.connect(_dsn_for(cron_db))
    try:
        yield conn if await conn.fetchval("SELECT to_regclass('cron.job')") else None
    finally:
        await conn.close()


@pytest.fixture(autouse=True)
async def _no_ladder_job_left(
    request: pytest.FixtureRequest, cron_conn: asyncpg.Connection | None
) -> AsyncIterator[None]:
    """A pg_cron round runs in a test database only while a test asks for it."""
    yield
    if cron_conn is None:
        return
    left = await cron_conn.fetch(
        "SELECT jobname, database FROM cron.job WHERE database LIKE 'pingtrack\\_test\\_%'"
        " OR database LIKE 'pingtrack\\_fleet\\_%'"
    )
    assert not left, f"{request.node.nodeid} left pg_cron jobs in test databases: {left}"


@pytest.fixture
def amqp_prefix() -> Iterator[str]:
    prefix = f"pt-test-{uuid.uuid4().hex[:10]}"
    yield prefix
    asyncio.run(_delete_broker_names(Topology(prefix)))


async def _delete_broker_names(topology: Topology) -> None:
    connection = await aiormq.connect(AMQP_URL)
    try:
        channel = await connection.channel()
        for queue in (topology.results_queue, topology.dead_queue):
            await channel.queue_delete(queue)
        for exchange in (
            topology.commands_exchange,
            topology.results_exchange,
            topology.dead_exchange,
        ):
            await channel.exchange_delete(exchange)
    finally:
        await connection.close()


@pytest.fixture
def settings(database_url: str, amqp_prefix: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=database_url,
        amqp_url=AMQP_URL,
        amqp_prefix=amqp_prefix,
        admin_token=ADMIN_TOKEN,  # type: ignore[arg-type]
        web_port=0,  # tests run side by side; each picks its own ports
        batch_max_delay_s=0.2,
        reconcile_interval_s=5.0,
        resolve_system=False,  # names come from the test's hosts file only
        schedule_ladder=False,
        spool_dir=tmp_path / "spool",
        log_level="WARNING",
    )


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=4)
    assert pool is not None
    yield pool
    await pool.close()


async def eventually(
    check: Callable[[], Awaitable[object]], timeout: float = 10.0, interval: float = 0.05
) -> object:
    """Poll `check` until it returns something truthy; fail with its last value at timeout."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await check()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last value {value!r})")
        await asyncio.sleep(interval)

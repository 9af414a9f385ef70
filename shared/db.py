"""PostgreSQL connections: a pool created with retry, closed by its owner."""

from __future__ import annotations

from typing import Any

import asyncpg

from shared.backoff import retry
from shared.settings import Settings

# What a database that is starting, restarting or unreachable raises.
TRANSIENT_DB_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.CannotConnectNowError,
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.InterfaceError,
    asyncpg.AdminShutdownError,
    asyncpg.TooManyConnectionsError,
    TimeoutError,
)


async def create_pool(
    settings: Settings, *, timeout: float | None = 30.0, **kwargs: Any
) -> asyncpg.Pool:
    kwargs.setdefault("min_size", 1)
    kwargs.setdefault("max_size", 10)
    kwargs.setdefault("command_timeout", 60)

    async def attempt() -> asyncpg.Pool:
        return await asyncpg.create_pool(settings.database_url, **kwargs)

    return await retry(
        attempt, what="connect to PostgreSQL", retry_on=TRANSIENT_DB_ERRORS, timeout=timeout
    )

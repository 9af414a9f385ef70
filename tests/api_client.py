"""Helpers for API tests: an in-process client with the app's lifespan, and a
tap on the commands exchange that shows exactly what was published."""

from __future__ import annotations

import itertools
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aiormq
import aiormq.abc
import httpx

from api_service.app import create_app
from shared.broker import declare_commands
from shared.codec import TargetSpec, decode_command
from shared.constants import Topology
from shared.settings import Settings
from tests.conftest import ADMIN_TOKEN

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

# Distinct per call so tests sharing one database do not collide. IPv4 from
# 127.200.0.0 up: loopback, so even a stray probe stays on this machine. IPv6
# has one loopback address, so the documentation range: those targets live only
# in the shared test database, where no prober runs (see conftest.database_url).
_counter = itertools.count(os.getpid() % 50_000 * 64)


def unique_address(family: int = 4) -> str:
    n = next(_counter)
    if family == 6:
        return f"2001:db8:{n >> 16:x}:{n & 0xFFFF:x}::1"
    n %= 55 * 256 * 254  # 127.200.0.0 - 127.254.255.254 without .0 and .255 hosts
    return f"127.{200 + n // (256 * 254)}.{n // 254 % 256}.{n % 254 + 1}"


@asynccontextmanager
async def api_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            yield client


@dataclass
class Published:
    routing_key: str
    spec: TargetSpec
    persistent: bool


class CommandTap:
    """An exclusive queue bound to every routing key of the commands exchange."""

    def __init__(self, channel: aiormq.abc.AbstractChannel, queue: str) -> None:
        self._channel = channel
        self._queue = queue

    @classmethod
    @asynccontextmanager
    async def open(cls, settings: Settings) -> AsyncIterator[CommandTap]:
        connection = await aiormq.connect(settings.amqp_url)
        try:
            channel = await connection.channel()
            topology = Topology(settings.amqp_prefix)
            await declare_commands(channel, topology)
            declared = await channel.queue_declare("", exclusive=True, auto_delete=True)
            assert declared.queue is not None
            await channel.queue_bind(declared.queue, topology.commands_exchange, routing_key="#")
            yield cls(channel, declared.queue)
        finally:
            await connection.close()

    async def take(self) -> list[Published]:
        """Every command queued so far (publishes are confirmed before the API answers)."""
        found = []
        while True:
            message = await self._channel.basic_get(self._queue, no_ack=True)
            if message.delivery_tag is None:  # Basic.GetEmpty
                return found
            found.append(
                Published(
                    routing_key=message.routing_key or "",
                    spec=decode_command(message.body),
                    persistent=message.header.properties.delivery_mode == 2,
                )
            )

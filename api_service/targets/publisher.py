"""Publishes target commands after their change is committed.

The database is the source of truth: when the broker cannot take a command,
the change stays committed and probers pick it up at their next
reconciliation from the database. So a failed publish is logged and counted,
never raised to the caller.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import aiormq
import aiormq.abc
from aiormq import spec as amqp

from shared.broker import BrokerLink, declare_commands
from shared.codec import TargetSpec, encode_command
from shared.constants import CONTENT_TYPE, Topology

log = logging.getLogger(__name__)

# A write waits at most this long for the broker before answering anyway.
PUBLISH_TIMEOUT_S = 3.0
# Commands of one bulk change in flight at once, their confirms awaited together.
MAX_IN_FLIGHT = 256


class NotConfirmed(Exception):
    """The broker refused a command (nack) instead of confirming it."""


class CommandPublisher:
    def __init__(
        self, broker: BrokerLink, topology: Topology, timeout_s: float = PUBLISH_TIMEOUT_S
    ) -> None:
        self._broker = broker
        self._topology = topology
        self._timeout_s = timeout_s
        self._declared_on: aiormq.abc.AbstractChannel | None = None
        self.published = 0
        self.failed = 0

    async def _channel(self) -> aiormq.abc.AbstractChannel:
        channel = await self._broker.channel(timeout=0)
        if channel is not self._declared_on:
            await declare_commands(channel, self._topology)
            self._declared_on = channel
        return channel

    async def _publish(self, spec: TargetSpec) -> None:
        await self._send(await self._channel(), spec)

    async def _send(self, channel: aiormq.abc.AbstractChannel, spec: TargetSpec) -> None:
        confirmation = await channel.basic_publish(
            encode_command(spec),
            exchange=self._topology.commands_exchange,
            routing_key=self._topology.target_key(spec.id),
            properties=amqp.Basic.Properties(delivery_mode=2, content_type=CONTENT_TYPE),
        )
        if not isinstance(confirmation, amqp.Basic.Ack):
            raise NotConfirmed(f"broker answered {confirmation!r}")

    async def publish(self, spec: TargetSpec) -> bool:
        """Publish one command; True when the broker confirmed it."""
        try:
            await asyncio.wait_for(self._publish(spec), self._timeout_s)
        except Exception as exc:  # any broker failure: the database already holds the change
            self.failed += 1
            log.warning(
                "command not published; probers will catch up from the database",
                extra={"target_id": spec.id, "rev": spec.rev, "error": repr(exc)},
            )
            return False
        self.published += 1
        return True

    async def publish_many(self, specs: Sequence[TargetSpec]) -> int:
        """Publish many commands on one channel, up to MAX_IN_FLIGHT awaiting their
        confirms together; return how many the broker confirmed."""
        if not specs:
            return 0
        try:
            channel = await asyncio.wait_for(self._channel(), self._timeout_s)
        except Exception as exc:  # any broker failure: the database already holds the changes
            self._failed_many(len(specs), exc)
            return 0
        confirmed = 0
        for start in range(0, len(specs), MAX_IN_FLIGHT):
            confirmed += await self._send_chunk(channel, specs[start : start + MAX_IN_FLIGHT])
        self.published += confirmed
        return confirmed

    async def _send_chunk(
        self, channel: aiormq.abc.AbstractChannel, chunk: Sequence[TargetSpec]
    ) -> int:
        """Confirms of one chunk, given up only when none arrived for a whole timeout.

        A deadline per message would count a busy event loop (a large bulk
        change, a slow machine) as a broker that does not answer, and drop
        commands the broker was confirming all along.
        """
        pending = {asyncio.ensure_future(self._send(channel, spec)) for spec in chunk}
        errors: list[BaseException] = []
        try:
            while pending:
                done, pending = await asyncio.wait(pending, timeout=self._timeout_s)
                errors.extend(e for task in done if (e := task.exception()) is not None)
                if not done:
                    break
        finally:
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        failed = len(errors) + len(pending)
        if failed:
            self._failed_many(failed, errors[0] if errors else TimeoutError("no confirm"))
        return len(chunk) - failed

    def _failed_many(self, count: int, exc: BaseException) -> None:
        self.failed += count
        log.warning(
            "commands not published; probers will catch up from the database",
            extra={"commands": count, "error": repr(exc)},
        )

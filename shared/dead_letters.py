"""Dead letters: what the writers counted, and the queue itself, looked at and replayed.

Counts: a writer adds up, per reason code, the dead letters the broker
confirmed (messages, and pings where the part's size is known), and adds
them to `dead_letter_reasons` about once a second. They are counters, for
/metrics and /health: they keep growing after the letters were replayed.
What the queue holds now is its depth (a passive declare) and its messages'
headers, read while listing.

The queue: looked at and replayed over AMQP only (basic.get, ack, nack), so
it works on a broker without the management plugin. A message taken and not
acked goes back when it is nacked or its channel closes; replay acks a
dead letter only once the results exchange confirmed its copy. A replayed
dead letter keeps its body and so its batch id (shared/codec.py: a refused
part's id is derived from its message's, and never claimed by the writer
that refused it), so however often the same letter is replayed, or a letter
and its twin from a redelivery, the writer stores it once.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiormq.abc
import asyncpg
import msgpack
from pamqp import commands as spec

from shared.constants import (
    BATCH_ID_HEADER,
    REASON_CODE_HEADER,
    REASON_HEADER,
    REPLAYED_HEADER,
    Topology,
)

CONFIRM_TIMEOUT_S = 30.0

# --------------------------------------------------------------- the counts --


@dataclass(slots=True)
class ReasonCount:
    messages: int = 0
    pings: int = 0
    last_reason: str = ""
    last_at: datetime | None = None  # as the database recorded it


@dataclass(slots=True)
class ReasonTally:
    """Counts not yet in the table, per reason code."""

    counts: dict[str, ReasonCount] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.counts)

    def add(self, code: str, pings: int, reason: str) -> None:
        count = self.counts.setdefault(code, ReasonCount())
        count.messages += 1
        count.pings += pings
        count.last_reason = reason

    def take(self) -> dict[str, ReasonCount]:
        taken, self.counts = self.counts, {}
        return taken

    def put_back(self, taken: dict[str, ReasonCount]) -> None:
        """Counts whose write failed, merged under any added since."""
        for code, old in taken.items():
            new = self.counts.get(code)
            if new is None:
                self.counts[code] = old
            else:
                new.messages += old.messages
                new.pings += old.pings


# The time is the database's, when the counts arrive (within a second of the
# dead letters); a parameter would meet the writer's own timestamptz codec.
_RECORD = """
    INSERT INTO dead_letter_reasons AS d (code, messages, pings, last_at, last_reason)
    SELECT code, messages, pings, now(), last_reason
    FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::text[])
        AS c (code, messages, pings, last_reason)
    ON CONFLICT (code) DO UPDATE SET
        messages = d.messages + excluded.messages,
        pings = d.pings + excluded.pings,
        last_at = excluded.last_at,
        last_reason = excluded.last_reason"""


async def record_reasons(conn: asyncpg.Connection, counts: dict[str, ReasonCount]) -> None:
    codes = sorted(counts)
    await conn.execute(
        _RECORD,
        codes,
        [counts[c].messages for c in codes],
        [counts[c].pings for c in codes],
        [counts[c].last_reason[:1000] for c in codes],
    )


async def read_reasons(pool: asyncpg.Pool) -> dict[str, ReasonCount]:
    """What the writers counted, per reason code (empty before the first one)."""
    rows = await pool.fetch(
        "SELECT code, messages, pings, last_reason, last_at FROM dead_letter_reasons ORDER BY code"
    )
    return {
        row["code"]: ReasonCount(row["messages"], row["pings"], row["last_reason"], row["last_at"])
        for row in rows
    }


# ---------------------------------------------------------------- the queue --


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One message of the dead-letter queue, as taken from it."""

    position: int  # 1 = the head of the queue
    message_id: str
    code: str
    reason: str
    batch_id: str | None  # the message's own batch id, when its body has one
    of_batch: str | None  # the batch it was refused from, for a part
    at: datetime | None  # when it was dead-lettered
    pings: int | None  # pings its body holds, when it decodes as a map
    body: bytes
    headers: dict[str, Any]
    content_type: str | None
    delivery_tag: int

    def matches(self, key: str) -> bool:
        """Selected by `key`: its message id, its batch id or the batch it came from."""
        return key in (self.message_id, self.batch_id, self.of_batch)


def _body_facts(body: bytes) -> tuple[str | None, int | None]:
    """The batch id and number of pings of a body, as far as it decodes."""
    try:
        data = msgpack.unpackb(body, raw=False, strict_map_key=False)
    except Exception:  # any garbage: nothing to tell
        return None, None
    if not isinstance(data, dict):
        return None, None
    raw_id, pings = data.get("id"), data.get("t")
    batch_id = None
    if isinstance(raw_id, bytes) and len(raw_id) == 16:
        batch_id = str(uuid.UUID(bytes=raw_id))
    return batch_id, len(pings) if isinstance(pings, list) else None


def _letter(position: int, message: aiormq.abc.DeliveredMessage) -> DeadLetter:
    props = message.header.properties
    headers = dict(props.headers or {})
    batch_id, pings = _body_facts(message.body)
    x_death = headers.get("x-death")
    code = headers.get(REASON_CODE_HEADER)
    reason = headers.get(REASON_HEADER)
    if code is None and x_death:  # dead-lettered by the broker itself (a reject, a limit)
        first = x_death[0] if isinstance(x_death, list) and x_death else {}
        why = first.get("reason", b"?") if isinstance(first, dict) else b"?"
        code = f"broker:{why.decode() if isinstance(why, bytes) else why}"
    of_batch = headers.get(BATCH_ID_HEADER)
    assert message.delivery_tag is not None
    return DeadLetter(
        position=position,
        message_id=str(props.message_id or ""),
        code=str(code or "unknown"),
        reason=str(reason or ""),
        batch_id=batch_id,
        of_batch=None if of_batch is None or str(of_batch) == batch_id else str(of_batch),
        at=props.timestamp,
        pings=pings,
        body=message.body,
        headers=headers,
        content_type=props.content_type,
        delivery_tag=message.delivery_tag,
    )


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


async def queue_depth(channel: aiormq.abc.AbstractChannel, queue: str) -> int:
    declared = await channel.queue_declare(queue, passive=True)
    return int(declared.message_count or 0)


async def _taken(
    channel: aiormq.abc.AbstractChannel, queue: str, limit: int, held: list[int]
) -> AsyncIterator[DeadLetter]:
    """Up to `limit` messages from the head, each left unacked (its tag in `held`)
    until acked or given back."""
    for position in range(1, limit + 1):
        message = await channel.basic_get(queue, no_ack=False)
        if message.delivery_tag is None:  # get-empty
            return
        held.append(message.delivery_tag)
        yield _letter(position, message)


async def _give_back(channel: aiormq.abc.AbstractChannel, held: list[int]) -> None:
    """Every message still held back to the queue (a closed channel did it already)."""
    if channel.is_closed:
        return
    for tag in held:
        await channel.basic_nack(tag, requeue=True)


Select = Callable[["DeadLetter"], bool]


async def look(
    channel: aiormq.abc.AbstractChannel,
    topology: Topology,
    limit: int | None = None,
    select: Select | None = None,
) -> tuple[int, list[DeadLetter]]:
    """The queue's depth and those of its first `limit` messages (all: None)
    that `select` takes, every message left where it was."""
    depth = await queue_depth(channel, topology.dead_queue)
    held: list[int] = []
    found: list[DeadLetter] = []
    try:
        count = depth if limit is None else min(limit, depth)
        async for letter in _taken(channel, topology.dead_queue, count, held):
            if select is None or select(letter):
                found.append(letter)
    finally:
        await asyncio.shield(_give_back(channel, held))
    return depth, found


@dataclass(slots=True)
class Replayed:
    letters: list[DeadLetter] = field(default_factory=list)  # published and acked
    depth: int = 0  # the queue's depth before

    @property
    def pings(self) -> int:
        return sum(letter.pings or 0 for letter in self.letters)


async def replay(
    channel: aiormq.abc.AbstractChannel,
    topology: Topology,
    select: Select,
    *,
    by: str = "pingtrack dead-letters replay",
) -> Replayed:
    """Publish every selected dead letter back to the results queue; ack each
    once the broker confirmed its copy. Looks at the messages queued when it
    starts (a letter dead-lettered again meanwhile waits for the next replay);
    those not selected stay in the queue. The channel must have publisher
    confirms; a letter the broker did not confirm stays too (and the error is
    raised)."""
    outcome = Replayed(depth=await queue_depth(channel, topology.dead_queue))
    held: list[int] = []
    try:
        async for letter in _taken(channel, topology.dead_queue, outcome.depth, held):
            if not select(letter):
                continue
            await _republish(channel, topology, letter, by)
            await channel.basic_ack(letter.delivery_tag)
            held.remove(letter.delivery_tag)
            outcome.letters.append(letter)
    finally:
        await asyncio.shield(_give_back(channel, held))
    return outcome


async def _republish(
    channel: aiormq.abc.AbstractChannel, topology: Topology, letter: DeadLetter, by: str
) -> None:
    headers = {**letter.headers, REPLAYED_HEADER: f"{_now()} by {by}"}
    confirm = await channel.basic_publish(
        letter.body,
        exchange=topology.results_exchange,
        routing_key=topology.results_queue,
        properties=spec.Basic.Properties(
            headers=headers,
            message_id=letter.message_id or None,
            content_type=letter.content_type,
            timestamp=letter.at,
            delivery_mode=2,
        ),
        mandatory=True,
        timeout=CONFIRM_TIMEOUT_S,
    )
    if not isinstance(confirm, spec.Basic.Ack):
        raise aiormq.exceptions.DeliveryError(None, confirm)  # type: ignore[arg-type]

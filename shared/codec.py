"""Message schemas and their msgpack codec.

Results travel column-wise: one list per field, so a batch of thousands of
pings packs in a few bytes each and decodes without a dict per ping.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, TypeVar

import msgpack

from shared.constants import MAX_RESULTS_MESSAGE_BYTES, MESSAGE_VERSION
from shared.errors import MalformedMessage

T = TypeVar("T")

TARGET_STATES = ("active", "paused", "stopped", "deleted")
PROBE_KINDS = ("icmp", "tcp", "http")
FAMILIES = ("any", "ipv4", "ipv6")


@dataclass(frozen=True, slots=True)
class TargetSpec:
    """What a prober needs to know of a target; `rev` orders the changes.

    `address` is an IP literal or a hostname the prober resolves (in `family`);
    a `tcp` probe connects to address:port, an `http` probe fetches `url`.
    """

    id: int
    address: str
    interval_ms: int
    timeout_ms: int
    state: str
    rev: int
    kind: str = "icmp"
    port: int | None = None
    url: str | None = None
    family: str = "any"
    http_method: str = "GET"
    expect_status: int | None = None
    expect_body: str | None = None

    @property
    def active(self) -> bool:
        return self.state == "active"


@dataclass(slots=True)
class ResultBatch:
    """Results of many pings, columns of equal length.

    ts: send time, microseconds since the Unix epoch (UTC).
    rtt: round trip in microseconds, None when lost.
    ttl: the reply's TTL / hop limit, hops: hop count guessed from it.
    """

    batch_id: bytes = field(default_factory=lambda: uuid.uuid4().bytes)
    prober: str = ""
    target_ids: list[int] = field(default_factory=list)
    ts: list[int] = field(default_factory=list)
    rtt: list[int | None] = field(default_factory=list)
    ttl: list[int | None] = field(default_factory=list)
    hops: list[int | None] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.target_ids)

    def append(
        self, target_id: int, ts: int, rtt: int | None, ttl: int | None, hops: int | None
    ) -> None:
        self.target_ids.append(target_id)
        self.ts.append(ts)
        self.rtt.append(rtt)
        self.ttl.append(ttl)
        self.hops.append(hops)


def encode_batch(batch: ResultBatch) -> bytes:
    body: bytes = msgpack.packb(
        {
            "v": MESSAGE_VERSION,
            "id": batch.batch_id,
            "prober": batch.prober,
            "t": batch.target_ids,
            "ts": batch.ts,
            "rtt": batch.rtt,
            "ttl": batch.ttl,
            "hops": batch.hops,
        },
        use_bin_type=True,
    )
    return body


def _unpack(body: bytes, max_bytes: int) -> dict[str, Any]:
    if len(body) > max_bytes:
        raise MalformedMessage(f"message of {len(body)} bytes exceeds {max_bytes}")
    try:
        data = msgpack.unpackb(body, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated types
        raise MalformedMessage(f"not msgpack: {exc}") from exc
    if not isinstance(data, dict):
        raise MalformedMessage(f"expected a map, got {type(data).__name__}")
    version = data.get("v")
    if version != MESSAGE_VERSION:
        raise MalformedMessage(f"unsupported message version {version!r}")
    return data


def _int_column(
    data: dict[str, Any], key: str, n: int, nullable: bool, lo: int, hi: int
) -> list[Any]:
    column = data.get(key)
    if not isinstance(column, list) or len(column) != n:
        raise MalformedMessage(f"column {key!r} missing or not of length {n}")
    for value in column:
        if value is None:
            if not nullable:
                raise MalformedMessage(f"column {key!r} has a null")
        elif type(value) is not int or not lo <= value <= hi:
            raise MalformedMessage(f"column {key!r} has an invalid value {value!r}")
    return column


# Bounds that any real ping satisfies; anything else is corruption.
_TS_MIN = 946_684_800_000_000  # 2000-01-01
_TS_MAX = 4_102_444_800_000_000  # 2100-01-01
_INT64 = 2**63 - 1
# pings.rtt_us is a PostgreSQL integer: a larger RTT could be decoded but never stored.
MAX_RTT_US = 2_147_483_647


def decode_batch(body: bytes, max_bytes: int = MAX_RESULTS_MESSAGE_BYTES) -> ResultBatch:
    """Decode and validate a results message; raise MalformedMessage with the reason."""
    data = _unpack(body, max_bytes)
    batch_id = data.get("id")
    if not isinstance(batch_id, bytes) or len(batch_id) != 16:
        raise MalformedMessage("batch id must be 16 bytes")
    prober = data.get("prober", "")
    if not isinstance(prober, str):
        raise MalformedMessage("prober must be a string")
    targets = data.get("t")
    if not isinstance(targets, list):
        raise MalformedMessage("column 't' missing")
    n = len(targets)
    return ResultBatch(
        batch_id=batch_id,
        prober=prober,
        target_ids=_int_column(data, "t", n, False, 1, _INT64),
        ts=_int_column(data, "ts", n, False, _TS_MIN, _TS_MAX),
        rtt=_int_column(data, "rtt", n, True, 0, MAX_RTT_US),
        ttl=_int_column(data, "ttl", n, True, 0, 255),
        hops=_int_column(data, "hops", n, True, 0, 255),
    )


def encode_command(spec: TargetSpec) -> bytes:
    body: bytes = msgpack.packb(
        {
            "v": MESSAGE_VERSION,
            "target": {
                "id": spec.id,
                "address": spec.address,
                "interval_ms": spec.interval_ms,
                "timeout_ms": spec.timeout_ms,
                "state": spec.state,
                "rev": spec.rev,
                "kind": spec.kind,
                "port": spec.port,
                "url": spec.url,
                "family": spec.family,
                "http_method": spec.http_method,
                "expect_status": spec.expect_status,
                "expect_body": spec.expect_body,
            },
        },
        use_bin_type=True,
    )
    return body


def decode_command(body: bytes) -> TargetSpec:
    data = _unpack(body, 64 * 1024)
    target = data.get("target")
    if not isinstance(target, dict):
        raise MalformedMessage("command without target")
    try:
        spec = TargetSpec(
            id=int(target["id"]),
            address=str(target["address"]),
            interval_ms=int(target["interval_ms"]),
            timeout_ms=int(target["timeout_ms"]),
            state=str(target["state"]),
            rev=int(target["rev"]),
            kind=str(target.get("kind", "icmp")),
            port=_optional(target, "port", int),
            url=_optional(target, "url", str),
            family=str(target.get("family", "any")),
            http_method=str(target.get("http_method", "GET")),
            expect_status=_optional(target, "expect_status", int),
            expect_body=_optional(target, "expect_body", str),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise MalformedMessage(f"bad target in command: {exc!r}") from exc
    if spec.state not in TARGET_STATES:
        raise MalformedMessage(f"unknown target state {spec.state!r}")
    if spec.kind not in PROBE_KINDS:
        raise MalformedMessage(f"unknown probe kind {spec.kind!r}")
    if spec.family not in FAMILIES:
        raise MalformedMessage(f"unknown address family {spec.family!r}")
    return spec


def _optional(data: dict[str, Any], key: str, kind: type[T]) -> T | None:
    value = data.get(key)
    return None if value is None else kind(value)  # type: ignore[call-arg]

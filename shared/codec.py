"""Message schemas and their msgpack codec.

Results travel column-wise: one list per field, so a batch of thousands of
pings packs in a few bytes each and decodes without a dict per ping.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeVar

import msgpack

from shared.constants import MAX_RESULTS_MESSAGE_BYTES, MESSAGE_VERSION, DeadReason
from shared.errors import MalformedMessage
from shared.target_fields import FAMILIES, PROBE_KINDS, FieldInfo, ProbeOptions, field_infos
from shared.validation import (
    ADDRESS_RULES,
    DETAIL_RULES,
    PING_RULES,
    Invalid,
    Rule,
    Table,
    address_problems,
    column_map,
    columns,
    refuse_together,
    result_key,
    row_problems,
    shown,
)

T = TypeVar("T")

TARGET_STATES = ("active", "paused", "stopped", "deleted")


@dataclass(frozen=True, slots=True)
class TargetSpec(ProbeOptions):
    """What a prober needs to know of a target; `rev` orders the changes.

    `address` is an IP literal or a hostname the prober resolves (in `family`);
    a `tcp` probe connects to address:port, an `http` probe fetches `url`. The
    probe options (kind, port, url, ...) come from ProbeOptions, as keywords.
    """

    id: int
    address: str
    interval_ms: int
    timeout_ms: int
    state: str
    rev: int

    @property
    def active(self) -> bool:
        return self.state == "active"


def _spec_fields() -> tuple[FieldInfo, ...]:
    """TargetSpec's fields as a command carries them: its own first, then the options."""
    every = list(field_infos(TargetSpec))
    return tuple(sorted(every, key=lambda f: not f.required))


SPEC_FIELDS = _spec_fields()


class AddressRecord(NamedTuple):
    """A hostname target's resolution from `ts` on: the address probed, or why none."""

    target_id: int
    ts: int  # µs since the epoch
    address: str | None
    error: str | None


class ProbeDetail(NamedTuple):
    """Kind-specific fields of one tcp/http result; (target_id, ts) is its ping's key."""

    target_id: int
    ts: int
    status: int | None  # HTTP status code
    ttfb: int | None  # time to first byte, µs
    cert_expires: int | None  # TLS certificate notAfter, µs since the epoch
    error: str | None  # why the probe failed: timeout, refused, tls, status, body, ...


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
    # Optional sections (absent from older messages): where hostnames resolved
    # to, and what tcp/http probes saw beyond the RTT.
    addresses: list[AddressRecord] = field(default_factory=list)
    details: list[ProbeDetail] = field(default_factory=list)

    def __len__(self) -> int:
        """The number of ping results (address records and details ride along)."""
        return len(self.target_ids)

    @property
    def empty(self) -> bool:
        return not (self.target_ids or self.addresses or self.details)

    def append(
        self, target_id: int, ts: int, rtt: int | None, ttl: int | None, hops: int | None
    ) -> None:
        self.target_ids.append(target_id)
        self.ts.append(ts)
        self.rtt.append(rtt)
        self.ttl.append(ttl)
        self.hops.append(hops)


def encode_batch(batch: ResultBatch) -> bytes:
    data: dict[str, Any] = {
        "v": MESSAGE_VERSION,
        "id": batch.batch_id,
        "prober": batch.prober,
        "t": batch.target_ids,
        "ts": batch.ts,
        "rtt": batch.rtt,
        "ttl": batch.ttl,
        "hops": batch.hops,
    }
    # Sections only when used: an ICMP batch stays as small as before.
    if batch.addresses:
        data["addr"] = column_map(AddressRecord._fields, batch.addresses)
    if batch.details:
        data["detail"] = column_map(ProbeDetail._fields, batch.details)
    body: bytes = msgpack.packb(data, use_bin_type=True)
    return body


def _unpack(body: bytes, max_bytes: int) -> dict[str, Any]:
    if len(body) > max_bytes:
        raise MalformedMessage(
            f"message of {len(body)} bytes exceeds {max_bytes}", DeadReason.TOO_BIG
        )
    try:
        data = msgpack.unpackb(body, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated types
        why = str(exc) or type(exc).__name__  # some say nothing but their class
        raise MalformedMessage(f"not msgpack: {why}", DeadReason.NOT_MSGPACK) from exc
    if not isinstance(data, dict):
        raise MalformedMessage(f"expected a map, got {type(data).__name__}")
    version = data.get("v")
    if version != MESSAGE_VERSION:
        raise MalformedMessage(
            f"unsupported message version {shown(version)}", DeadReason.BAD_VERSION
        )
    return data


def derived_batch_id(batch_id: bytes, part: str) -> bytes:
    """The id of a batch's refused `part` (a DeadReason): the same on every
    redelivery, so the part is stored once however often it is dead-lettered
    and replayed."""
    return uuid.uuid5(uuid.UUID(bytes=batch_id), part).bytes


def _section(data: dict[str, Any], key: str, rules: dict[str, Rule]) -> Table | None:
    """An optional section: None when absent, its columns when well formed."""
    section = data.get(key)
    if section is None:
        return None
    if not isinstance(section, dict) or not isinstance(section.get("target_id"), list):
        raise MalformedMessage(f"section {key!r} must be a map of columns")
    cols = columns(section, rules, len(section["target_id"]))
    problems = address_problems(cols) if key == "addr" else row_problems(rules, cols)
    return Table(tuple(rules), cols, problems)


def decode_results(
    body: bytes, max_bytes: int = MAX_RESULTS_MESSAGE_BYTES
) -> tuple[ResultBatch, Invalid | None]:
    """Decode a results message: its storable results under its own id, and
    those it holds that no table could take, if any (None when there are none).

    MalformedMessage (with its reason and code) when the message itself is
    not one: not msgpack, too big, another version, not a map of equal-length
    columns. Keys this version does not know are ignored (a newer prober may
    add some); a known optional section that is malformed is an error like
    any column.
    """
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
    cols = columns(data, PING_RULES, len(targets))
    pings = Table(tuple(PING_RULES), cols, row_problems(PING_RULES, cols))
    addresses = _section(data, "addr", ADDRESS_RULES)
    details = _section(data, "detail", DETAIL_RULES)
    if details is not None and (pings.refused or details.refused):
        refuse_together(
            [result_key(t, ts) for t, ts in zip(cols[0], cols[1], strict=True)],
            pings.problems,
            [result_key(t, ts) for t, ts in zip(*details.cols[:2], strict=True)],
            details.problems,
        )
    if pings.refused:
        good = ResultBatch(batch_id=batch_id, prober=prober)
        for row in pings.rows(bad=False):
            good.append(*row)
    else:  # the common case: the columns as they came
        good = ResultBatch(batch_id, prober, *cols)
    good.addresses = [AddressRecord(*r) for r in addresses.rows(bad=False)] if addresses else []
    good.details = [ProbeDetail(*r) for r in details.rows(bad=False)] if details else []
    if not any(table is not None and table.refused for table in (pings, addresses, details)):
        return good, None
    invalid_id = derived_batch_id(batch_id, DeadReason.INVALID_VALUES)
    return good, Invalid(invalid_id, prober, pings, addresses, details, len(targets))


def decode_batch(body: bytes, max_bytes: int = MAX_RESULTS_MESSAGE_BYTES) -> ResultBatch:
    """Decode a results message of which every result can be stored; raise
    MalformedMessage with the reason (the first refused result's) otherwise."""
    batch, invalid = decode_results(body, max_bytes)
    if invalid is not None:
        raise MalformedMessage(invalid.reasons()[0], DeadReason.INVALID_VALUES)
    return batch


def encode_command(spec: TargetSpec) -> bytes:
    target = {f.name: getattr(spec, f.name) for f in SPEC_FIELDS}
    body: bytes = msgpack.packb({"v": MESSAGE_VERSION, "target": target}, use_bin_type=True)
    return body


def decode_command(body: bytes) -> TargetSpec:
    data = _unpack(body, 64 * 1024)
    target = data.get("target")
    if not isinstance(target, dict):
        raise MalformedMessage("command without target")
    try:
        spec = TargetSpec(**{f.name: f.read(target) for f in SPEC_FIELDS})
    except (KeyError, TypeError, ValueError) as exc:
        raise MalformedMessage(f"bad target in command: {exc!r}") from exc
    if spec.state not in TARGET_STATES:
        raise MalformedMessage(f"unknown target state {spec.state!r}")
    if spec.kind not in PROBE_KINDS:
        raise MalformedMessage(f"unknown probe kind {spec.kind!r}")
    if spec.family not in FAMILIES:
        raise MalformedMessage(f"unknown address family {spec.family!r}")
    return spec

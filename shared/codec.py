"""Message schemas and their msgpack codec.

Results travel column-wise: one list per field, so a batch of thousands of
pings packs in a few bytes each and decodes without a dict per ping.
"""

from __future__ import annotations

import ipaddress
import uuid
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import msgpack

from shared.constants import MAX_RESULTS_MESSAGE_BYTES, MESSAGE_VERSION
from shared.errors import MalformedMessage
from shared.target_fields import FAMILIES, PROBE_KINDS, FieldInfo, ProbeOptions, field_infos

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


def _columns(fields: tuple[str, ...], rows: list[Any]) -> dict[str, list[Any]]:
    return {name: [row[i] for row in rows] for i, name in enumerate(fields)}


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
        data["addr"] = _columns(AddressRecord._fields, batch.addresses)
    if batch.details:
        data["detail"] = _columns(ProbeDetail._fields, batch.details)
    body: bytes = msgpack.packb(data, use_bin_type=True)
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


_TS_MAX_CERT = 253_402_300_799_000_000  # 9999-12-31, the latest X.509 date
MAX_TEXT = 500


def _str_column(data: dict[str, Any], key: str, n: int, max_len: int) -> list[str | None]:
    column = data.get(key)
    if not isinstance(column, list) or len(column) != n:
        raise MalformedMessage(f"column {key!r} missing or not of length {n}")
    for value in column:
        if value is not None and (type(value) is not str or len(value) > max_len):
            raise MalformedMessage(f"column {key!r} has an invalid value {value!r:.80}")
    return column


def _section(data: dict[str, Any], key: str) -> tuple[dict[str, Any], int] | None:
    """An optional section: None when absent, its columns and length when well formed."""
    section = data.get(key)
    if section is None:
        return None
    if not isinstance(section, dict) or not isinstance(section.get("target_id"), list):
        raise MalformedMessage(f"section {key!r} must be a map of columns")
    return section, len(section["target_id"])


def _addresses(data: dict[str, Any]) -> list[AddressRecord]:
    found = _section(data, "addr")
    if found is None:
        return []
    s, n = found
    targets = _int_column(s, "target_id", n, False, 1, _INT64)
    ts = _int_column(s, "ts", n, False, _TS_MIN, _TS_MAX)
    addresses = _str_column(s, "address", n, 45)
    errors = _str_column(s, "error", n, MAX_TEXT)
    for address, error in zip(addresses, errors, strict=True):
        if (address is None) == (error is None):
            raise MalformedMessage("an address record needs an address or an error, not both")
        if address is not None:
            try:
                ipaddress.ip_address(address)
            except ValueError:
                raise MalformedMessage(f"not an IP address: {address!r:.60}") from None
    return [AddressRecord(*row) for row in zip(targets, ts, addresses, errors, strict=True)]


def _details(data: dict[str, Any]) -> list[ProbeDetail]:
    found = _section(data, "detail")
    if found is None:
        return []
    s, n = found
    columns = (
        _int_column(s, "target_id", n, False, 1, _INT64),
        _int_column(s, "ts", n, False, _TS_MIN, _TS_MAX),
        _int_column(s, "status", n, True, 100, 599),
        _int_column(s, "ttfb", n, True, 0, MAX_RTT_US),
        _int_column(s, "cert_expires", n, True, 0, _TS_MAX_CERT),
        _str_column(s, "error", n, MAX_TEXT),
    )
    return [ProbeDetail(*row) for row in zip(*columns, strict=True)]


def decode_batch(body: bytes, max_bytes: int = MAX_RESULTS_MESSAGE_BYTES) -> ResultBatch:
    """Decode and validate a results message; raise MalformedMessage with the reason.

    Keys this version does not know are ignored (a newer prober may add some);
    a known optional section that is malformed is an error like any column.
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
    n = len(targets)
    return ResultBatch(
        batch_id=batch_id,
        prober=prober,
        target_ids=_int_column(data, "t", n, False, 1, _INT64),
        ts=_int_column(data, "ts", n, False, _TS_MIN, _TS_MAX),
        rtt=_int_column(data, "rtt", n, True, 0, MAX_RTT_US),
        ttl=_int_column(data, "ttl", n, True, 0, 255),
        hops=_int_column(data, "hops", n, True, 0, 255),
        addresses=_addresses(data),
        details=_details(data),
    )


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

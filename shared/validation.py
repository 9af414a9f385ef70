"""Which results of a decoded message can be stored: the rule of each column,
and a reason for every row that breaks one.

The codec (shared/codec.py) checks a message's shape: a map of columns of
equal length. This module judges the values, one row at a time, so that a
bad value refuses its own row and not the batch around it. Every bound is
one the table behind the column holds (pings, target_addresses,
probe_details): what passes here can be stored.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgpack

from shared.constants import MESSAGE_VERSION, DeadReason
from shared.errors import MalformedMessage

# Bounds that any real ping satisfies; anything else is corruption.
TS_MIN = 946_684_800_000_000  # 2000-01-01
TS_MAX = 4_102_444_800_000_000  # 2100-01-01
INT64 = 2**63 - 1
# pings.rtt_us is a PostgreSQL integer: a larger RTT could be decoded but never stored.
MAX_RTT_US = 2_147_483_647
TS_MAX_CERT = 253_402_300_799_000_000  # 9999-12-31, the latest X.509 date
MAX_TEXT = 500
MAX_ADDRESS = 45
_SHOWN = 80  # characters of a bad value quoted in a reason


@dataclass(frozen=True, slots=True)
class Integer:
    nullable: bool
    lo: int
    hi: int

    def all_kept(self, column: list[Any]) -> bool:
        """Whether every value keeps the rule: the common case, checked fast."""
        lo, hi, nullable = self.lo, self.hi, self.nullable
        for value in column:
            if value is None:
                if not nullable:
                    return False
            elif type(value) is not int or not lo <= value <= hi:
                return False
        return True

    def problem(self, key: str, value: Any) -> str | None:
        if value is None:
            return None if self.nullable else f"column {key!r} has a null"
        if type(value) is not int or not self.lo <= value <= self.hi:
            return f"column {key!r} has an invalid value {shown(value)}"
        return None


@dataclass(frozen=True, slots=True)
class Text:
    """Optional text; PostgreSQL text holds no NUL character."""

    max_len: int

    def all_kept(self, column: list[Any]) -> bool:
        return all(self.problem("", value) is None for value in column)

    def problem(self, key: str, value: Any) -> str | None:
        if value is None:
            return None
        if type(value) is not str or len(value) > self.max_len or "\x00" in value:
            return f"column {key!r} has an invalid value {shown(value)}"
        return None


Rule = Integer | Text
TARGET_ID = Integer(False, 1, INT64)
TIMESTAMP = Integer(False, TS_MIN, TS_MAX)
PING_RULES: dict[str, Rule] = {
    "t": TARGET_ID,
    "ts": TIMESTAMP,
    "rtt": Integer(True, 0, MAX_RTT_US),
    "ttl": Integer(True, 0, 255),
    "hops": Integer(True, 0, 255),
}
ADDRESS_RULES: dict[str, Rule] = {
    "target_id": TARGET_ID,
    "ts": TIMESTAMP,
    "address": Text(MAX_ADDRESS),
    "error": Text(MAX_TEXT),
}
DETAIL_RULES: dict[str, Rule] = {
    "target_id": TARGET_ID,
    "ts": TIMESTAMP,
    "status": Integer(True, 100, 599),
    "ttfb": Integer(True, 0, MAX_RTT_US),
    "cert_expires": Integer(True, 0, TS_MAX_CERT),
    "error": Text(MAX_TEXT),
}


def shown(value: Any) -> str:
    """A bad value as a reason quotes it: a container by its size (its repr could
    be megabytes, or nested deeper than repr recurses), anything else cut short."""
    if isinstance(value, list | dict):
        return f"<{type(value).__name__} of {len(value)}>"
    return repr(value)[:_SHOWN]


def columns(data: dict[str, Any], rules: dict[str, Rule], n: int) -> list[list[Any]]:
    """The columns `rules` names, each a list of `n` values; MalformedMessage otherwise."""
    found = []
    for key in rules:
        column = data.get(key)
        if not isinstance(column, list) or len(column) != n:
            raise MalformedMessage(
                f"column {key!r} missing or not of length {n}", DeadReason.BAD_SHAPE
            )
        found.append(column)
    return found


def row_problems(rules: dict[str, Rule], cols: Sequence[list[Any]]) -> list[str | None]:
    """Per row: None when every value keeps its column's rule, else why not.
    A column whose values all keep its rule is checked in one fast pass."""
    problems: list[str | None] = [None] * (len(cols[0]) if cols else 0)
    for (key, rule), column in zip(rules.items(), cols, strict=True):
        if rule.all_kept(column):
            continue
        for i, value in enumerate(column):
            problem = rule.problem(key, value)
            if problem is not None:
                found = problems[i]
                problems[i] = problem if found is None else f"{found}; {problem}"
    return problems


def address_problems(cols: Sequence[list[Any]]) -> list[str | None]:
    """Row problems of address records, with their own rule: an IP address (one
    PostgreSQL's inet takes: no zone) or an error, exactly one of them."""
    problems = row_problems(ADDRESS_RULES, cols)
    for i, (address, error) in enumerate(zip(cols[2], cols[3], strict=True)):
        if problems[i] is not None:
            continue
        if (address is None) == (error is None):
            problems[i] = "an address record needs an address or an error, not both"
        elif address is not None and not _inet(address):
            problems[i] = f"not an IP address: {shown(address)}"
    return problems


def _inet(text: str) -> bool:
    if "%" in text:  # Python takes a zone (fe80::1%eth0); inet does not
        return False
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def result_key(target_id: Any, ts: Any) -> tuple[int, int] | None:
    """What joins a ping and its probe detail, when both values are integers."""
    if type(target_id) is int and type(ts) is int:
        return target_id, ts
    return None


def refuse_together(
    ping_keys: Sequence[tuple[int, int] | None],
    ping_problems: list[str | None],
    detail_keys: Sequence[tuple[int, int] | None],
    detail_problems: list[str | None],
) -> None:
    """A ping and its probe detail are one result: a problem of either refuses
    both. Fills in the other's problem in place ("with its ping: …")."""
    refused: dict[tuple[int, int], str] = {}
    for keys, problems, what in (
        (ping_keys, ping_problems, "ping"),
        (detail_keys, detail_problems, "probe detail"),
    ):
        for key, problem in zip(keys, problems, strict=True):
            if key is not None and problem is not None:
                refused.setdefault(key, f"with its {what}: {problem}")
    if not refused:
        return
    for keys, problems in ((ping_keys, ping_problems), (detail_keys, detail_problems)):
        for i, key in enumerate(keys):
            if problems[i] is None and key in refused:
                problems[i] = refused[key]


def column_map(fields: tuple[str, ...], rows: list[Any]) -> dict[str, list[Any]]:
    """Rows -> the column map a message carries: one list per field."""
    return {name: [row[i] for row in rows] for i, name in enumerate(fields)}


@dataclass(slots=True)
class Table:
    """Raw columns of one kind of result (pings, address records, probe
    details), as decoded, with a problem or None per row."""

    keys: tuple[str, ...]
    cols: list[list[Any]]
    problems: list[str | None]

    @property
    def refused(self) -> bool:
        return self.problems.count(None) != len(self.problems)

    def rows(self, bad: bool) -> list[tuple[Any, ...]]:
        return [
            row
            for row, problem in zip(zip(*self.cols, strict=True), self.problems, strict=True)
            if (problem is not None) == bad
        ]

    def reasons(self) -> list[str]:
        return [problem for problem in self.problems if problem is not None]


@dataclass(slots=True)
class Invalid:
    """The results of a message whose values cannot be stored, as they came (raw
    values), with the reason of each: a message of their own under
    `derived_batch_id(…, "invalid_values")`."""

    batch_id: bytes
    prober: str
    pings: Table
    addresses: Table | None
    details: Table | None
    total: int  # pings in the whole message

    def __len__(self) -> int:
        return len(self.pings.reasons())

    def reasons(self) -> list[str]:
        return [*self.pings.reasons(), *_reasons_of(self.addresses), *_reasons_of(self.details)]

    def summary(self) -> str:
        """One line: how many of what, and each distinct reason with its count."""
        counts = Counter(self.reasons())
        extra = [
            f"{n} {what}"
            for n, what in (
                (len(_reasons_of(self.details)), "probe details"),
                (len(_reasons_of(self.addresses)), "addresses"),
            )
            if n
        ]
        return (
            f"{DeadReason.INVALID_VALUES}: {len(self)} of {self.total} pings"
            f"{' (with ' + ', '.join(extra) + ')' if extra else ''} refused: "
            + "; ".join(f"{reason} ({n})" for reason, n in counts.most_common())
        )

    def encode(self) -> bytes:
        """A results message of these results, their reasons beside them under
        `why` (a key the decoder ignores)."""
        data: dict[str, Any] = {"v": MESSAGE_VERSION, "id": self.batch_id, "prober": self.prober}
        why: dict[str, list[str]] = {"t": self.pings.reasons()}
        data.update(column_map(self.pings.keys, self.pings.rows(bad=True)))
        for name, table in (("addr", self.addresses), ("detail", self.details)):
            if table is not None and table.reasons():
                data[name] = column_map(table.keys, table.rows(bad=True))
                why[name] = table.reasons()
        data["why"] = why
        body: bytes = msgpack.packb(data, use_bin_type=True)
        return body


def _reasons_of(table: Table | None) -> list[str]:
    return [] if table is None else table.reasons()

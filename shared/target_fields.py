"""How a target is probed, written once: the probe fields beyond where it probes.

`ProbeOptions` declares each field with its type, its default, the line the
API documents it with, and (`choices`, `sql`) what it may hold. Everything
that lists these fields derives the list from here: the command a prober
receives (`codec.TargetSpec`, which extends it, and its msgpack codec), the
prober's and the API's column lists and row readers, bulk insertion, the
API's request and response bodies, the targets file. The API's `Probe`
(api_service/targets/probe.py) extends it with where a target probes
(`address` or `hostname`), which probers receive merged as TargetSpec.address.

Adding a field is a line here and a numbered migration adding its column
(plus its check in api_service/targets/probe.py, if it needs one).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

PROBE_KINDS = ("icmp", "tcp", "http")
FAMILIES = ("any", "ipv4", "ipv6")
HTTP_METHODS = ("GET", "HEAD")

_SQL_TYPES = {int: "int", str: "text"}


def probe_field(
    default: Any,
    doc: str | None = None,
    *,
    choices: tuple[str, ...] = (),
    examples: tuple[str, ...] = (),
    sql: str | None = None,
    clearable: bool = False,
) -> Any:
    """One probe field of a dataclass: `doc` and `examples` describe it in the API,
    `choices` are all it may be, `sql` its column type when not that of its Python
    type, `clearable` that a PATCH with null clears it (for others null keeps it)."""
    meta = {"doc": doc, "choices": choices, "examples": examples, "sql": sql}
    return dataclasses.field(default=default, metadata=meta | {"clearable": clearable})


@dataclass(frozen=True, slots=True, kw_only=True)
class ProbeOptions:
    """How a target is probed; the columns of its row of the same names."""

    kind: str = probe_field("icmp", "icmp (default), tcp or http", choices=PROBE_KINDS)
    family: str = probe_field("any", "hostnames: which address family to use", choices=FAMILIES)
    port: int | None = probe_field(None, "tcp: the port to connect to")
    url: str | None = probe_field(None, "http: the http:// or https:// URL")
    http_method: str = probe_field("GET", choices=HTTP_METHODS)
    expect_status: int | None = probe_field(None, "http: the status that means up", clearable=True)
    expect_body: str | None = probe_field(None, "http: a substring the body holds", clearable=True)


@dataclass(frozen=True, slots=True)
class FieldInfo:
    """One field of a dataclass built from probe fields, as its derivations need it."""

    name: str
    py_type: type  # int or str
    nullable: bool
    required: bool  # no default
    default: Any
    doc: str | None = None
    choices: tuple[str, ...] = ()
    examples: tuple[str, ...] = ()
    sql: str = "text"  # the column's type
    clearable: bool = False

    def column(self, table: str = "") -> str:
        """SQL that reads the column as Python takes it (an inet as its bare text)."""
        ref = f"{table}.{self.name}" if table else self.name
        return f"host({ref}) AS {self.name}" if self.sql == "inet" else ref

    def read(self, data: Mapping[str, Any]) -> Any:
        """This field's value from a decoded message: converted to its type, the
        default when absent; KeyError when required and absent."""
        value = data[self.name] if self.required else data.get(self.name, self.default)
        return None if value is None and self.nullable else self.py_type(value)


def field_infos(cls: type) -> Iterator[FieldInfo]:
    """Every field of the dataclass `cls`, in declaration order (a base's first)."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        args = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
        base = next(a for a in args if a is not type(None))
        meta = f.metadata
        yield FieldInfo(
            name=f.name,
            py_type=base,
            nullable=type(None) in args,
            required=f.default is dataclasses.MISSING,
            default=None if f.default is dataclasses.MISSING else f.default,
            doc=meta.get("doc"),
            choices=meta.get("choices", ()),
            examples=meta.get("examples", ()),
            sql=meta.get("sql") or _SQL_TYPES[base],
            clearable=meta.get("clearable", False),
        )


OPTIONS = tuple(field_infos(ProbeOptions))


def options_of(probe: ProbeOptions) -> dict[str, Any]:
    """The probe options of any dataclass extending ProbeOptions, by name."""
    return {f.name: getattr(probe, f.name) for f in OPTIONS}

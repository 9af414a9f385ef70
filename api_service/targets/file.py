"""The declarative targets file (YAML): read it whole with line numbers, write it back.

PyYAML's composer gives every key and value node its line, so each error
names the line of the field at fault, and repeated keys (which a plain
`safe_load` silently collapses) are caught. The file is written fresh on
export, never edited in place, so a round-trip parser that keeps comments
(ruamel.yaml) would buy nothing here.

    version: 1
    targets:
      - name: gateway
        address: 192.0.2.1
        interval_s: 1
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import yaml
from pydantic import ValidationError

from api_service.targets import drafts
from api_service.targets.drafts import Draft
from api_service.targets.schemas import TargetCreate
from api_service.targets.service import Target
from shared.errors import InvalidInput
from shared.settings import Settings

VERSION = 1
ENTRY_KEYS = (*drafts.FIELDS, "paused")


class FileInvalid(InvalidInput):
    """The file cannot be applied; `errors` holds one line-numbered message each."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__(f"{len(errors)} error(s) in the targets file:\n" + "\n".join(errors))
        self.errors = errors


@dataclass(frozen=True, slots=True)
class Entry:
    name: str
    draft: Draft
    paused: bool | None  # None: the file leaves pausing to the operator
    line: int


def effective_name(target: Target) -> str:
    """The name a target answers to in a file; unnamed ones are `target-<id>`."""
    return target.name or f"target-{target.id}"


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


def _pairs(node: yaml.MappingNode, what: str, errors: list[str]) -> dict[str, yaml.Node]:
    """Key -> value node of a mapping of plain string keys; repeated keys are errors."""
    found: dict[str, yaml.Node] = {}
    keys: dict[str, yaml.Node] = {}
    for key, value in node.value:
        if not isinstance(key, yaml.ScalarNode):
            errors.append(f"line {_line(key)}: {what} keys must be plain words")
            continue
        if key.value in found:
            errors.append(
                f"line {_line(key)}: {key.value!r} repeats the key of line {_line(keys[key.value])}"
            )
            continue
        found[key.value] = value
        keys[key.value] = key
    return found


def _error_line(message: str, entry: dict[str, yaml.Node], fallback: int) -> int:
    """The line of the first field the message speaks of, else the entry's."""
    for key, value in entry.items():
        if re.search(rf"\b{re.escape(key)}\b", message):
            return _line(value)
    return fallback


def _entry(
    node: yaml.Node, loader: yaml.SafeLoader, settings: Settings, errors: list[str]
) -> Entry | None:
    if not isinstance(node, yaml.MappingNode):
        errors.append(f"line {_line(node)}: each target is a mapping of fields")
        return None
    before = len(errors)
    nodes = _pairs(node, "target", errors)
    for key, value in nodes.items():
        if key not in ENTRY_KEYS:
            errors.append(f"line {_line(value)}: unknown field {key!r}")
    if len(errors) > before:
        return None
    fields = {k: loader.construct_object(v, deep=True) for k, v in nodes.items()}
    name = fields.get("name")
    label = f"line {_line(node)}"
    if not isinstance(name, str) or not name.strip():
        errors.append(f"{label}: every target needs a name (a non-empty string)")
        return None
    paused = fields.pop("paused", None)
    if paused is not None and not isinstance(paused, bool):
        errors.append(f"line {_line(nodes['paused'])}: paused must be true or false")
        return None
    try:
        given = TargetCreate.model_validate(fields).given()
        draft = drafts.draft(given, settings)
    except ValidationError as exc:
        for err in exc.errors():
            key = str(err["loc"][0]) if err["loc"] else ""
            where = _line(nodes[key]) if key in nodes else _line(node)
            errors.append(f"line {where} ({name}): {key}: {err['msg']}")
        return None
    except InvalidInput as exc:
        errors.append(f"line {_error_line(str(exc), nodes, _line(node))} ({name}): {exc}")
        return None
    return Entry(draft.name or name, draft, paused, _line(node))


def load(text: str, settings: Settings) -> list[Entry]:
    """Every entry of the file, or FileInvalid listing every error found."""
    loader = yaml.SafeLoader(text)
    try:
        return _load(loader, settings)
    finally:
        loader.dispose()


def _load(loader: yaml.SafeLoader, settings: Settings) -> list[Entry]:
    try:
        root = loader.get_single_node()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "the file"
        problem = getattr(exc, "problem", None) or str(exc)
        raise FileInvalid([f"{where}: not valid YAML: {problem}"]) from None
    if not isinstance(root, yaml.MappingNode):
        raise FileInvalid(["line 1: the file must be a mapping with a 'targets' list"])
    errors: list[str] = []
    top = _pairs(root, "top-level", errors)
    for key, value in top.items():
        if key not in ("version", "targets"):
            errors.append(f"line {_line(value)}: unknown top-level key {key!r}")
    version = top.get("version")
    if version is not None and version.value != str(VERSION):
        errors.append(f"line {_line(version)}: version must be {VERSION}")
    listed = top.get("targets")
    if not isinstance(listed, yaml.SequenceNode):
        line = _line(listed) if listed is not None else 1
        errors.append(f"line {line}: 'targets' must be a list of targets")
        raise FileInvalid(errors)
    entries = [e for n in listed.value if (e := _entry(n, loader, settings, errors)) is not None]
    errors.extend(_duplicates(entries))
    if errors:
        raise FileInvalid(sorted(errors, key=_line_number))
    return entries


def _line_number(message: str) -> int:
    match = re.match(r"line (\d+)", message)
    return int(match.group(1)) if match else 0


def _duplicates(entries: Iterable[Entry]) -> list[str]:
    errors = []
    names: dict[str, Entry] = {}
    probes: dict[tuple[object, ...], Entry] = {}
    for entry in entries:
        if entry.name in names:
            first = names[entry.name]
            errors.append(
                f"line {entry.line}: name {entry.name!r} is also used at line {first.line}"
            )
        names.setdefault(entry.name, entry)
        key = entry.draft.probe.identity()
        if key in probes:
            first = probes[key]
            errors.append(
                f"line {entry.line} ({entry.name}): {entry.draft.probe.describe()} is also"
                f" probed by {first.name!r} at line {first.line}"
            )
        probes.setdefault(key, entry)
    return errors


# The order an entry lists its keys in: what is probed, what is expected of
# it, then the address family and the method. Kept as files have always been
# written, so an export of unchanged targets reads the same; a key not named
# here comes after the probe fields.
_KEY_ORDER = (
    *("name", "kind", "address", "hostname", "port", "url", "expect_status", "expect_body"),
    *("family", "http_method", "interval_s", "timeout_s", "tags", "paused"),
)


def _key_rank(key: str) -> int:
    return _KEY_ORDER.index(key) if key in _KEY_ORDER else _KEY_ORDER.index("interval_s")


def entry_fields(draft: Draft, paused: bool | None = None) -> dict[str, Any]:
    """A file entry's fields: name first, defaults left out."""
    fields = draft.fields()
    if paused:
        fields["paused"] = True
    return dict(sorted(fields.items(), key=lambda item: _key_rank(item[0])))


def dump(targets: Iterable[Target]) -> str:
    """The targets as a file that `load` reads back to the same drafts."""
    entries = []
    seen: dict[str, int] = {}
    for target in targets:
        name = effective_name(target)
        if name in seen:
            raise InvalidInput(
                f"targets {seen[name]} and {target.id} are both named {name!r};"
                " rename one so the file can name each target once"
            )
        seen[name] = target.id
        fields = entry_fields(target.draft(), target.state == "paused")
        fields["name"] = name
        entries.append(fields)
    body = {"version": VERSION, "targets": entries}
    text: str = yaml.safe_dump(body, sort_keys=False, allow_unicode=True, width=100)
    return text

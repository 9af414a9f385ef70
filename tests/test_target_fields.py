"""A target's probe fields, written once (shared/target_fields.py): every place that lists
them follows the definition, so a field added there reaches all of them."""

from __future__ import annotations

import asyncpg
import pytest

from api_service.app import create_app
from api_service.targets.probe import PROBE_FIELDS, Probe
from api_service.targets.service import DRAFT_COLUMNS
from shared.codec import SPEC_FIELDS, TargetSpec, decode_command, encode_command
from shared.settings import Settings
from shared.target_fields import OPTIONS, FieldInfo, options_of

NAMES = [f.name for f in PROBE_FIELDS]


def _unusual(f: FieldInfo) -> object:
    """A value of the field's type that is not its default."""
    if f.choices:
        return f.choices[-1]
    return 123 if f.py_type is int else "x"


def test_probes_list_kind_then_where_then_how() -> None:
    assert NAMES[:3] == ["kind", "address", "hostname"]
    assert set(NAMES) == {f.name for f in OPTIONS} | {"address", "hostname"}
    assert {f.name for f in PROBE_FIELDS} == set(Probe.__dataclass_fields__)


def test_a_command_carries_every_option_and_reads_back_the_same() -> None:
    options = {f.name: _unusual(f) for f in OPTIONS}
    spec = TargetSpec(9, "db.example", 1000, 500, "paused", 4, **options)  # type: ignore[arg-type]
    assert decode_command(encode_command(spec)) == spec
    assert [f.name for f in SPEC_FIELDS][:6] == [
        *("id", "address", "interval_ms", "timeout_ms", "state", "rev")
    ]


def test_a_probe_s_options_are_what_its_command_carries() -> None:
    probe = Probe(address="192.0.2.1", **{f.name: _unusual(f) for f in OPTIONS})  # type: ignore[arg-type]
    spec = TargetSpec(1, "192.0.2.1", 1000, 500, "active", 1, **options_of(probe))
    assert options_of(spec) == options_of(probe)


@pytest.mark.parametrize("body", ["TargetCreate", "TargetUpdate", "TargetOut"])
def test_the_api_bodies_list_every_probe_field_in_order(body: str) -> None:
    schemas = create_app(Settings()).openapi()["components"]["schemas"]
    listed = [name for name in schemas[body]["properties"] if name in NAMES]
    assert listed == NAMES


async def test_every_column_written_or_read_is_a_column_of_targets(pool: asyncpg.Pool) -> None:
    columns = {
        r["column_name"]
        for r in await pool.fetch(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_schema = current_schema() AND table_name = 'targets'"
        )
    }
    assert {name for name, _ in DRAFT_COLUMNS} <= columns
    assert {f.name for f in SPEC_FIELDS} <= columns

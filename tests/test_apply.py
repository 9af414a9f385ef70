"""`pingtrack apply` and `pingtrack export` against a database of their own and the broker."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from click.testing import Result
from typer.testing import CliRunner

from pingtrack.cli import app
from shared.constants import Topology
from shared.settings import Settings
from tests.api_client import CommandTap
from tests.conftest import AMQP_URL, _delete_broker_names
from tests.fleet_support import fresh_database

FIRST = """\
targets:
  - name: gateway
    address: 192.0.2.1
    tags: [core]
  - name: db
    kind: tcp
    hostname: db.example
    port: 5432
  - name: web
    kind: http
    url: https://www.example/health
    interval_s: 30
"""
# gateway: interval and tags change; db: gone (pruned); web: unchanged; api: new.
SECOND = """\
targets:
  - name: gateway
    address: 192.0.2.1
    interval_s: 2
  - name: web
    kind: http
    url: https://www.example/health
    interval_s: 30
  - name: api
    hostname: api.example
    family: ipv6
    paused: true
"""
BROKEN = """\
targets:
  - name: gateway
    address: 192.0.2.77
  - name: web
    kind: http
    url: ftp://www.example/
  - name: extra
    address: 192.0.2.1
    port: 80
"""


@pytest.fixture
async def own() -> AsyncIterator[tuple[Settings, asyncpg.Pool]]:
    """A database of its own: --prune stops every live target of its database."""
    async with fresh_database() as dsn:
        settings = Settings(
            database_url=dsn, amqp_url=AMQP_URL, amqp_prefix=f"pt-apply-{uuid.uuid4().hex[:8]}"
        )
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
        try:
            yield settings, pool
        finally:
            await pool.close()
            await _delete_broker_names(Topology(settings.amqp_prefix))


def _env(settings: Settings) -> dict[str, str]:
    return {
        "PINGTRACK_DATABASE_URL": settings.database_url,
        "PINGTRACK_AMQP_URL": settings.amqp_url,
        "PINGTRACK_AMQP_PREFIX": settings.amqp_prefix,
        "PINGTRACK_LOG_FORMAT": "text",
        "COLUMNS": "200",
    }


async def pingtrack(settings: Settings, *args: str) -> Result:
    return await asyncio.to_thread(
        CliRunner().invoke, app, list(args), env=_env(settings), catch_exceptions=False
    )


def _file(tmp_path: Path, text: str) -> str:
    path = tmp_path / f"{uuid.uuid4().hex[:6]}.yaml"
    path.write_text(text)
    return str(path)


async def _rows(pool: asyncpg.Pool) -> dict[str, tuple[object, ...]]:
    rows = await pool.fetch(
        "SELECT id, name, state, rev, interval_ms, tags, kind, family FROM targets ORDER BY id"
    )
    return {r["name"]: tuple(r) for r in rows}


async def test_apply_creates_updates_and_prunes_exactly_as_its_plan_said(
    own: tuple[Settings, asyncpg.Pool], tmp_path: Path
) -> None:
    settings, pool = own
    async with CommandTap.open(settings) as tap:
        first = await pingtrack(settings, "apply", _file(tmp_path, FIRST))
        assert first.exit_code == 0, first.output
        assert "plan: 3 to create, 0 to update, 0 to stop, 0 unchanged" in first.output
        assert "applied: 3 created, 0 updated, 0 stopped" in first.output
        created = await _rows(pool)
        assert {n: r[2:5] for n, r in created.items()} == {
            "gateway": ("active", 1, 1000),
            "db": ("active", 1, 1000),
            "web": ("active", 1, 30000),
        }
        assert sorted(c.spec.kind for c in await tap.take()) == ["http", "icmp", "tcp"]

        second = _file(tmp_path, SECOND)
        dry = await pingtrack(settings, "apply", second, "--prune", "--dry-run")
        assert dry.exit_code == 0, dry.output
        plan_lines = [line for line in dry.output.splitlines() if line[:1] in "+~-="]
        gw, web, db = created["gateway"][0], created["web"][0], created["db"][0]
        assert plan_lines == [
            f"~ update gateway (id {gw}): interval_s 1.0 -> 2.0; tags ['core'] -> (none)",
            f"= unchanged web (id {web})",
            "+ create api: hostname api.example (ipv6)",
            f"- stop db (id {db}): tcp db.example:5432",
        ]
        assert "dry run: nothing changed" in dry.output
        assert await _rows(pool) == created
        assert await tap.take() == []

        applied = await pingtrack(settings, "apply", second, "--prune")
        assert applied.exit_code == 0, applied.output
        assert [line for line in applied.output.splitlines() if line[:1] in "+~-="] == plan_lines
        assert "applied: 1 created, 1 updated, 1 stopped" in applied.output
        after = await _rows(pool)
        assert after["gateway"][2:6] == ("active", 2, 2000, [])
        assert after["web"] == created["web"]
        assert after["db"][2:4] == ("stopped", 2)
        assert after["api"][2:4] == ("paused", 2)  # created, then paused as the file says
        assert after["api"][6:] == ("icmp", "ipv6")
        commands = {(c.spec.id, c.spec.state, c.spec.rev) for c in await tap.take()}
        api = after["api"][0]
        assert commands == {
            (gw, "active", 2),
            (db, "stopped", 2),
            (api, "active", 1),
            (api, "paused", 2),
        }

    again = await pingtrack(settings, "apply", second, "--prune")
    assert "plan: 0 to create, 0 to update, 0 to stop, 3 unchanged" in again.output
    assert "nothing to change" in again.output


async def test_a_file_with_errors_changes_nothing_and_names_the_lines(
    own: tuple[Settings, asyncpg.Pool], tmp_path: Path
) -> None:
    settings, pool = own
    assert (await pingtrack(settings, "apply", _file(tmp_path, FIRST))).exit_code == 0
    before = await _rows(pool)
    result = await pingtrack(settings, "apply", _file(tmp_path, BROKEN), "--prune")
    assert result.exit_code == 2
    assert "2 error(s) in the targets file" in result.output
    assert "line 6 (web): url 'ftp://www.example/' must start with http:// or https://" in (
        result.output
    )
    assert "line 9 (extra): port is for kind tcp only" in result.output
    assert "line 8 (extra): address 192.0.2.1 is already tracked by target" not in result.output
    assert "plan:" not in result.output
    assert await _rows(pool) == before


async def test_a_file_that_takes_an_unlisted_targets_probe_is_refused_whole(
    own: tuple[Settings, asyncpg.Pool], tmp_path: Path
) -> None:
    settings, pool = own
    assert (await pingtrack(settings, "apply", _file(tmp_path, FIRST))).exit_code == 0
    before = await _rows(pool)
    clash = "targets:\n  - name: new\n    address: 192.0.2.1\n  - name: fine\n    address: ::1\n"
    result = await pingtrack(settings, "apply", _file(tmp_path, clash))
    assert result.exit_code == 2
    assert (
        f"line 2 (new): address 192.0.2.1 is already tracked by target {before['gateway'][0]}"
        " (gateway), which is not in the file" in result.output
    )
    assert await _rows(pool) == before


async def test_export_writes_a_file_that_apply_finds_unchanged(
    own: tuple[Settings, asyncpg.Pool], tmp_path: Path
) -> None:
    settings, pool = own
    assert (await pingtrack(settings, "apply", _file(tmp_path, SECOND))).exit_code == 0
    await pool.execute(
        "INSERT INTO targets (address, interval_ms, timeout_ms, tags)"
        " VALUES ('192.0.2.50', 1500, 700, '{x,y}')"
    )
    exported = tmp_path / "exported.yaml"
    result = await pingtrack(settings, "export", "--output", str(exported))
    assert result.exit_code == 0, result.output
    assert "wrote 4 target(s)" in result.output
    text = exported.read_text()
    assert "name: target-" in text and "paused: true" in text
    check = await pingtrack(settings, "apply", str(exported), "--prune", "--dry-run")
    assert check.exit_code == 0, check.output
    assert "plan: 0 to create, 0 to update, 0 to stop, 4 unchanged" in check.output
    stdout = await pingtrack(settings, "export")
    assert stdout.output == text

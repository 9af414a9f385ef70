"""The targets file on its own: what it accepts, the lines it blames, the plan it leads to."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime

import pytest

from api_service.targets import drafts
from api_service.targets import file as targets_file
from api_service.targets.apply import Change, plan
from api_service.targets.file import FileInvalid, load
from api_service.targets.service import Target
from shared.settings import REPO_ROOT, Settings

SETTINGS = Settings()
NOW = datetime(2024, 1, 1, tzinfo=UTC)

GOOD = """\
version: 1
targets:
  - name: gateway
    address: 192.0.2.1
    interval_s: 1
    tags: [core, lab]
  - name: db
    kind: tcp
    hostname: DB.example
    port: 5432
    family: ipv4
  - name: web
    kind: http
    url: https://www.example/health
    http_method: HEAD
    expect_status: 204
    interval_s: 30
    paused: true
"""


def _target(target_id: int, name: str | None, state: str = "active", **fields: object) -> Target:
    d = drafts.draft({"name": name, **fields}, SETTINGS)
    return Target(
        id=target_id,
        address=d.probe.address,
        name=d.name,
        interval_ms=d.interval_ms,
        timeout_ms=d.timeout_ms,
        state=state,
        rev=1,
        created_at=NOW,
        updated_at=NOW,
        stopped_at=None,
        last_ping=None,
        probe=d.probe,
        tags=d.tags,
    )


def test_a_good_file_gives_one_entry_per_target_with_its_line() -> None:
    entries = load(GOOD, SETTINGS)
    assert [(e.name, e.line, e.paused) for e in entries] == [
        ("gateway", 3, None),
        ("db", 7, None),
        ("web", 12, True),
    ]
    assert entries[0].draft.tags == ("core", "lab")
    assert entries[1].draft.probe.hostname == "db.example"
    assert (entries[2].draft.probe.http_method, entries[2].draft.interval_ms) == ("HEAD", 30000)


def _errors(text: str) -> list[str]:
    with pytest.raises(FileInvalid) as caught:
        load(textwrap.dedent(text), SETTINGS)
    return caught.value.errors


def test_every_error_of_a_file_is_reported_with_its_line() -> None:
    errors = _errors(
        """\
        targets:
          - name: a
            address: 192.0.2.1
          - name: b
            kind: tcp
            address: 192.0.2.2
          - name: a
            address: 192.0.2.3
          - name: c
            address: 192.0.2.4
            interval: 5
          - address: 192.0.2.5
          - name: d
            address: 192.0.2.1
          - name: e
            kind: http
            url: https://e.example/
            interval_s: 2
          - name: f
            address: 192.0.2.6
            port: "80"
        """
    )
    assert errors == [
        "line 4 (b): a tcp target needs a port",
        "line 7: name 'a' is also used at line 2",
        "line 11: unknown field 'interval'",
        "line 12: every target needs a name (a non-empty string)",
        "line 13 (d): address 192.0.2.1 is also probed by 'a' at line 2",
        "line 18 (e): interval_s of http targets must be at least 5 seconds, got 2.0",
        "line 21 (f): port: Input should be a valid integer",
    ]


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("targets:\n  - name: a\n    address: [1\n", "line 4: not valid YAML"),
        ("- name: a\n", "line 1: the file must be a mapping with a 'targets' list"),
        ("targets: {}\n", "line 1: 'targets' must be a list of targets"),
        ("version: 2\ntargets: []\n", "line 1: version must be 1"),
        ("targets: []\nextra: 1\n", "line 2: unknown top-level key 'extra'"),
        (
            "targets:\n  - name: a\n    address: 192.0.2.1\n    address: 192.0.2.2\n",
            "line 4: 'address' repeats the key of line 3",
        ),
        (
            "targets:\n  - name: a\n    address: 192.0.2.1\n    paused: maybe\n",
            "line 4: paused must be true or false",
        ),
    ],
)
def test_malformed_files_name_the_line(text: str, error: str) -> None:
    assert _errors(text)[0].startswith(error)


def test_export_then_load_gives_the_same_targets() -> None:
    live = [
        _target(1, "gateway", address="192.0.2.1", tags=["core"]),
        _target(2, None, hostname="a.example", family="ipv6", interval_s=0.5, timeout_s=0.2),
        _target(
            3,
            "web",
            "paused",
            kind="http",
            url="https://w.example/x?y=1",
            expect_body="ok",
            interval_s=60,
        ),
    ]
    text = targets_file.dump(live)
    entries = load(text, SETTINGS)
    assert [e.name for e in entries] == ["gateway", "target-2", "web"]
    the_plan = plan(entries, live, prune=True)
    assert [s.action for s in the_plan.steps] == ["unchanged"] * 3


def test_the_plan_matches_by_name_and_lists_each_changed_field() -> None:
    live = [
        _target(1, "gateway", address="192.0.2.1"),
        _target(2, "db", kind="tcp", hostname="db.example", port=5432),
        _target(3, "old", address="192.0.2.9"),
    ]
    entries = load(GOOD, SETTINGS)
    kept = plan(entries, live, prune=False)
    assert [(s.action, s.name) for s in kept.steps] == [
        ("update", "gateway"),
        ("update", "db"),
        ("create", "web"),
    ]
    assert kept.steps[0].changes == (Change("tags", None, ["core", "lab"]),)
    assert kept.steps[1].changes == (Change("family", None, "ipv4"),)
    pruned = plan(entries, live, prune=True)
    assert [(s.action, s.name) for s in pruned.of("stop")] == [("stop", "old")]


def test_a_plan_that_could_not_run_whole_is_refused() -> None:
    twins = [_target(1, "x", address="192.0.2.1"), _target(2, "x", address="192.0.2.2")]
    with pytest.raises(FileInvalid, match="targets 1 and 2 are both named 'x'"):
        plan([], twins, prune=False)
    holder = [_target(7, "other", address="192.0.2.1")]
    entries = load(GOOD, SETTINGS)
    with pytest.raises(FileInvalid) as caught:
        plan(entries, holder, prune=False)
    assert caught.value.errors == [
        "line 3 (gateway): address 192.0.2.1 is already tracked by target 7 (other), which is"
        " not in the file; add it, or apply with --prune to stop it"
    ]
    assert [s.action for s in plan(entries, holder, prune=True).steps] == [
        "create",
        "create",
        "create",
        "stop",
    ]


def test_the_documented_example_is_a_valid_file() -> None:
    doc = (REPO_ROOT / "docs" / "targets-file.md").read_text()
    example = doc.split("```yaml\n", 1)[1].split("```", 1)[0]
    assert [e.name for e in load(example, SETTINGS)] == [
        "gateway",
        "resolver-v6",
        "db",
        "shop",
        "search",
    ]

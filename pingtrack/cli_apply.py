"""`pingtrack apply FILE` and `pingtrack export`: targets kept in a YAML file.

apply reads and checks the whole file before touching the database, prints
its plan, and (without --dry-run) carries out exactly that plan.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from api_service.targets import file as targets_file
from api_service.targets.apply import Outcome, Plan, Step, execute, plan
from api_service.targets.service import Target, Targets
from api_service.targets.states import LIVE_STATES
from pingtrack.cli_targets import _call, _fail, _settings, console, probed
from shared.errors import InvalidInput

_MARK = {"create": "[green]+ create[/]", "update": "[yellow]~ update[/]", "stop": "[red]- stop[/]"}


def _value(value: Any) -> str:
    return "(none)" if value is None else str(value)


def describe(step: Step) -> str:
    """One line of the plan."""
    if step.action == "create":
        assert step.entry is not None
        what = step.entry.draft.probe.describe()
        return f"{_MARK['create']} {escape(step.name)}: {escape(what)}"
    assert step.target is not None
    head = f"{escape(step.name)} (id {step.target.id})"
    if step.action == "update":
        parts = "; ".join(f"{c.field} {_value(c.old)} -> {_value(c.new)}" for c in step.changes)
        return f"{_MARK['update']} {head}: {escape(parts)}"
    if step.action == "stop":
        return f"{_MARK['stop']} {head}: {escape(probed(step.target))}"
    return f"[dim]= unchanged {head}[/]"


def summary(the_plan: Plan) -> str:
    counts = {a: len(the_plan.of(a)) for a in ("create", "update", "stop", "unchanged")}
    return (
        f"plan: {counts['create']} to create, {counts['update']} to update,"
        f" {counts['stop']} to stop, {counts['unchanged']} unchanged"
    )


async def _live(targets: Targets) -> list[Target]:
    return [t for t in await targets.list("all") if t.state in LIVE_STATES]


def apply_command(
    path: Path = typer.Argument(..., exists=True, dir_okay=False, help="the targets file"),
    prune: bool = typer.Option(False, "--prune", help="stop live targets the file lacks"),
    dry_run: bool = typer.Option(False, "--dry-run", help="print the plan, change nothing"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="leave unchanged targets out"),
) -> None:
    """Create, update and (with --prune) stop targets so they match FILE."""
    settings = _settings()
    try:
        entries = targets_file.load(path.read_text(encoding="utf-8"), settings)
    except (OSError, UnicodeDecodeError) as exc:
        _fail(f"cannot read {path}: {exc}", 2)
    except InvalidInput as exc:
        _fail(f"{path}: {exc}", 2)

    async def work(session: Any) -> Outcome | None:
        the_plan = plan(entries, await _live(session.targets), prune)
        for step in the_plan.steps:
            if not (quiet and step.action == "unchanged"):
                console.print(describe(step), highlight=False)
        console.print(summary(the_plan))
        if dry_run or the_plan.empty:
            return None
        return await execute(the_plan, session.targets)

    outcome = _call(work)
    if outcome is None:
        console.print("dry run: nothing changed" if dry_run else "nothing to change")
        return
    console.print(
        f"applied: {len(outcome.created)} created, {len(outcome.updated)} updated,"
        f" {len(outcome.stopped)} stopped"
    )
    for failure in outcome.failed:
        console.print(f"[red]failed:[/red] {escape(failure)}", highlight=False)
    if outcome.failed:
        raise typer.Exit(1)


def export_command(
    output: Path | None = typer.Option(None, "--output", "-o", help="write here, not stdout"),
) -> None:
    """Write the live targets as a targets file that `apply` accepts unchanged."""
    text = _call(lambda s: _dump(s.targets))
    if output is None:
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        output.write_text(text, encoding="utf-8")
        console.print(f"wrote {text.count('- name:')} target(s) to {output}")


async def _dump(targets: Targets) -> str:
    return targets_file.dump(await _live(targets))

"""What `apply` will do to make the live targets match a targets file, and doing it.

`plan` is pure: entries of the file against the live (active and paused)
targets, matched by name. It refuses what could not be carried out as a
whole (two live targets answering to one name, a probe that another live
target keeps) so a plan that is shown is a plan that runs. `execute` then
does exactly the plan: stops first (they free probes), then updates, then
the creations in one transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from api_service.targets import bulk
from api_service.targets.file import Entry, FileInvalid, effective_name, entry_fields
from api_service.targets.service import Target, Targets
from shared.errors import Conflict


@dataclass(frozen=True, slots=True)
class Change:
    field: str
    old: Any
    new: Any


@dataclass(frozen=True, slots=True)
class Step:
    action: str  # create | update | stop | unchanged
    name: str
    target: Target | None = None
    entry: Entry | None = None
    changes: tuple[Change, ...] = ()


@dataclass(frozen=True, slots=True)
class Plan:
    steps: list[Step] = field(default_factory=list)

    def of(self, action: str) -> list[Step]:
        return [s for s in self.steps if s.action == action]

    @property
    def empty(self) -> bool:
        return all(s.action == "unchanged" for s in self.steps)


def changes(entry: Entry, target: Target) -> tuple[Change, ...]:
    """Field by field, what the entry changes in the target (the name it matched by aside)."""
    old = {"kind": "icmp", **entry_fields(target.draft())}
    new = {"kind": "icmp", **entry_fields(entry.draft)}
    if target.name is None:
        new["name"] = None  # matched as target-<id>: naming it would change nothing
    found = [
        Change(key, old.get(key), new.get(key))
        for key in dict.fromkeys([*old, *new])
        if old.get(key) != new.get(key)
    ]
    if entry.paused is not None and entry.paused != (target.state == "paused"):
        found.append(Change("paused", target.state == "paused", entry.paused))
    return tuple(found)


def plan(entries: Sequence[Entry], live: Sequence[Target], prune: bool) -> Plan:
    errors: list[str] = []
    by_name: dict[str, Target] = {}
    for target in live:
        name = effective_name(target)
        if name in by_name:
            errors.append(
                f"targets {by_name[name].id} and {target.id} are both named {name!r};"
                " rename one before applying"
            )
        by_name[name] = target
    steps = []
    matched: set[int] = set()
    for entry in entries:
        mine = by_name.get(entry.name)
        if mine is None:
            steps.append(Step("create", entry.name, entry=entry))
            continue
        matched.add(mine.id)
        found = changes(entry, mine)
        steps.append(Step("update" if found else "unchanged", entry.name, mine, entry, found))
    for target in live:
        if target.id not in matched and prune:
            steps.append(Step("stop", effective_name(target), target))
    errors.extend(_probe_clashes(steps, live))
    if errors:
        raise FileInvalid(errors)
    return Plan(steps)


def _probe_clashes(steps: Sequence[Step], live: Sequence[Target]) -> list[str]:
    """Entries whose probe a live target keeps after the plan (one the file does not own)."""
    owner = {s.target.id: s for s in steps if s.target is not None}
    kept = {
        t.draft().probe.identity(): t
        for t in live
        if t.id not in owner  # neither in the file nor stopped by it
    }
    errors = []
    for step in steps:
        if step.entry is None:
            continue
        holder = kept.get(step.entry.draft.probe.identity())
        if holder is not None:
            errors.append(
                f"line {step.entry.line} ({step.name}): {step.entry.draft.probe.describe()} is"
                f" already tracked by target {holder.id} ({effective_name(holder)}), which is"
                " not in the file; add it, or apply with --prune to stop it"
            )
    return errors


@dataclass
class Outcome:
    created: list[int] = field(default_factory=list)
    updated: list[int] = field(default_factory=list)
    stopped: list[int] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def _update_fields(step: Step) -> dict[str, Any]:
    return {c.field: c.new for c in step.changes if c.field != "paused"}


async def execute(the_plan: Plan, targets: Targets) -> Outcome:
    """Carry the plan out; a step that fails (a change made meanwhile) is reported, not hidden."""
    done = Outcome()
    for step in the_plan.of("stop"):
        assert step.target is not None
        await targets.stop(step.target.id)
        done.stopped.append(step.target.id)
    for step in the_plan.of("update"):
        assert step.target is not None and step.entry is not None
        fields = _update_fields(step)
        try:
            if fields:
                await targets.update(step.target.id, fields)
            if step.entry.paused is not None and any(c.field == "paused" for c in step.changes):
                await targets.transition(step.target.id, "pause" if step.entry.paused else "resume")
        except Conflict as exc:
            done.failed.append(f"{step.name}: {exc}")
            continue
        done.updated.append(step.target.id)
    creates = the_plan.of("create")
    results = await bulk.create_many(
        targets.pool, targets.publisher, [s.entry.draft for s in creates if s.entry is not None]
    )
    for step, result in zip(creates, results, strict=True):
        if result.target is None:
            done.failed.append(f"{step.name}: {result.error}")
            continue
        if step.entry is not None and step.entry.paused:
            await targets.pause(result.target.id)
        done.created.append(result.target.id)
    return done

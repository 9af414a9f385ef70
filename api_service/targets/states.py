"""A target's state and how it changes: active, paused, stopped, deleted. Pure.

Shared by the REST routes, the CLI and the targets file, so every way in
allows the same changes and refuses the others with the same message.
"""

from __future__ import annotations

from shared.codec import TARGET_STATES
from shared.errors import Conflict, InvalidInput

LIVE_STATES = ("active", "paused")

# action -> (states it applies to, resulting state). A target already in the
# resulting state is left alone (a no-op, not an error).
_TRANSITIONS: dict[str, tuple[frozenset[str], str]] = {
    "pause": (frozenset({"active"}), "paused"),
    "resume": (frozenset({"paused"}), "active"),
    "stop": (frozenset({"active", "paused"}), "stopped"),
    "delete": (frozenset({"active", "paused", "stopped"}), "deleted"),
}
ACTIONS = tuple(_TRANSITIONS)


def parse_state_filter(state: str | None) -> tuple[str, ...]:
    """States a listing shows: live and stopped ones by default, `all` for every one."""
    if state is None:
        return ("active", "paused", "stopped")
    if state == "all":
        return TARGET_STATES
    if state not in TARGET_STATES:
        raise InvalidInput(f"unknown state {state!r}; use one of {', '.join(TARGET_STATES)}, all")
    return (state,)


def next_state(action: str, current: str, target_id: int) -> str | None:
    """The state `action` leads to, None when it is already there, Conflict when not allowed."""
    sources, result = _TRANSITIONS[action]
    if current == result:
        return None
    if current not in sources:
        raise Conflict(f"target {target_id} is {current}; it cannot be {_past(action)}")
    return result


def _past(action: str) -> str:
    return {"pause": "paused", "resume": "resumed", "stop": "stopped", "delete": "deleted"}[action]


def transition(action: str) -> tuple[frozenset[str], str]:
    """(states `action` applies to, the state it leads to)."""
    if action not in _TRANSITIONS:
        raise InvalidInput(f"unknown action {action!r}; use one of {', '.join(ACTIONS)}")
    return _TRANSITIONS[action]

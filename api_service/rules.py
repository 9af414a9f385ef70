"""What a target may be: address, interval and timeout checks, state transitions.

Pure functions shared by the REST routes and the CLI, so both refuse the same
input with the same message.
"""

from __future__ import annotations

import ipaddress
import math

from shared.codec import TARGET_STATES
from shared.errors import Conflict, InvalidInput
from shared.settings import MAX_INTERVAL_S, MAX_TIMEOUT_S, MIN_INTERVAL_S, MIN_TIMEOUT_S

LIVE_STATES = ("active", "paused")
MAX_NAME_LENGTH = 200

# action -> (states it applies to, resulting state). A target already in the
# resulting state is left alone (a no-op, not an error).
_TRANSITIONS: dict[str, tuple[frozenset[str], str]] = {
    "pause": (frozenset({"active"}), "paused"),
    "resume": (frozenset({"paused"}), "active"),
    "stop": (frozenset({"active", "paused"}), "stopped"),
    "delete": (frozenset({"active", "paused", "stopped"}), "deleted"),
}
ACTIONS = tuple(_TRANSITIONS)


def parse_address(raw: str) -> str:
    """Normalise a literal IPv4/IPv6 address; refuse names and non-unicast ones."""
    text = raw.strip()
    if not text:
        raise InvalidInput("address is empty: give a literal IPv4 or IPv6 address")
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise InvalidInput(
            f"address {raw!r} is not a literal IPv4 or IPv6 address (a host name goes in hostname)"
        ) from None
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id is not None:
            raise InvalidInput(
                f"address {raw!r} has a scope id; scoped addresses are not supported"
            )
        # ::ffff:a.b.c.d is an IPv4 host; track it as one.
        if address.ipv4_mapped is not None:
            address = address.ipv4_mapped
    if address.is_unspecified:
        raise InvalidInput(f"address {raw!r} is the unspecified address")
    if address.is_multicast:
        raise InvalidInput(f"address {raw!r} is a multicast address")
    if address == ipaddress.IPv4Address("255.255.255.255"):
        raise InvalidInput(f"address {raw!r} is the broadcast address")
    return str(address)


def _check_range(what: str, value: float, lo: float, hi: float) -> None:
    # Written so that NaN fails too.
    if not (isinstance(value, int | float) and math.isfinite(value) and lo <= value <= hi):
        raise InvalidInput(f"{what} must be between {lo:g} and {hi:g} seconds, got {value!r}")


def interval_ms(interval_s: float, minimum_s: float = MIN_INTERVAL_S, kind: str = "") -> int:
    """Milliseconds between probes; `minimum_s` is the floor of the probe kind."""
    _check_range("interval_s", interval_s, MIN_INTERVAL_S, MAX_INTERVAL_S)
    if interval_s < minimum_s:
        raise InvalidInput(
            f"interval_s of {kind} targets must be at least {minimum_s:g} seconds,"
            f" got {interval_s!r}"
        )
    return round(interval_s * 1000)


def timeout_ms(timeout_s: float) -> int:
    _check_range("timeout_s", timeout_s, MIN_TIMEOUT_S, MAX_TIMEOUT_S)
    return round(timeout_s * 1000)


def clean_name(name: str | None) -> str | None:
    if name is None:
        return None
    name = name.strip()
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidInput(f"name is longer than {MAX_NAME_LENGTH} characters")
    return name or None


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

"""pytest side of the egress guard (tests/egress_guard.py).

The guard is installed when the run starts and removed when it ends; a run
that sent anything off the machine fails, naming the destinations and the
tests during which they were sent. Without root or nft the guard cannot be
installed: that fails the run under CI=true and is reported otherwise.
"""

from __future__ import annotations

import os
from collections.abc import Generator

import pytest

from tests.egress_guard import EgressGuard, GuardError, Snapshot, switched_off, under_ci

_GUARD = pytest.StashKey[EgressGuard | None]()
_STATE = pytest.StashKey["_Leaks"]()


class _Leaks:
    def __init__(self) -> None:
        self.last = Snapshot()
        self.by_test: list[tuple[str, Snapshot]] = []
        self.total = Snapshot()
        self.problem = ""

    def advance(self, now: Snapshot, where: str) -> None:
        new = now.since(self.last)
        if new.total:
            self.by_test.append((where, new))
        self.last = now


def pytest_configure(config: pytest.Config) -> None:
    state = _Leaks()
    config.stash[_STATE] = state
    config.stash[_GUARD] = None
    if switched_off() and not under_ci():
        state.problem = "off (PINGTRACK_EGRESS_GUARD=off)"
        return
    urls = [
        os.environ.get("PINGTRACK_TEST_DATABASE_URL", ""),
        os.environ.get("PINGTRACK_TEST_AMQP_URL", ""),
    ]
    guard = EgressGuard.from_environment(urls)
    try:
        guard.install()
    except GuardError as exc:
        if under_ci():
            raise pytest.UsageError(f"egress guard: {exc}; CI runs only guarded") from exc
        state.problem = f"NOT INSTALLED ({exc}): nothing checks that tests stay on this machine"
        return
    config.stash[_GUARD] = guard


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Generator[None, object, object]:
    result = yield
    guard = item.config.stash[_GUARD]
    if guard is not None:
        item.config.stash[_STATE].advance(guard.snapshot(), item.nodeid)
    return result


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    guard = session.config.stash[_GUARD]
    if guard is None:
        return
    state = session.config.stash[_STATE]
    state.total = guard.snapshot()
    state.advance(state.total, "outside any test (session fixtures)")
    if state.total.total:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    state = terminalreporter.config.stash[_STATE]
    if state.problem:
        terminalreporter.write_sep("=", f"egress guard {state.problem}", yellow=True)
        return
    if not state.total.total:
        terminalreporter.write_sep("=", "egress guard: 0 packets left the machine", green=True)
        return
    terminalreporter.write_sep(
        "=", f"egress guard: FAILED, {state.total.describe()}", red=True, bold=True
    )
    for where, leak in state.by_test:
        terminalreporter.write_line(f"  {where}: {leak.describe()}")


def pytest_unconfigure(config: pytest.Config) -> None:
    guard = config.stash.get(_GUARD, None)
    if guard is not None:
        guard.remove()

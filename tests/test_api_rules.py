"""Pure rules of the target API: addresses, ranges, transitions, cursors, CSV."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from api_service.results import pings
from api_service.targets import drafts, probe, states
from shared.errors import Conflict, InvalidInput


@pytest.mark.parametrize(
    ("raw", "stored"),
    [
        ("192.0.2.1", "192.0.2.1"),
        (" 192.0.2.1\n", "192.0.2.1"),
        ("127.0.0.1", "127.0.0.1"),
        ("::1", "::1"),
        ("2001:DB8:0:0::1", "2001:db8::1"),
        ("::ffff:192.0.2.7", "192.0.2.7"),
    ],
)
def test_addresses_are_normalised(raw: str, stored: str) -> None:
    assert probe.parse_address(raw) == stored


@pytest.mark.parametrize(
    "raw",
    ["host.example", "1.2.3", "01.2.3.4", "1.2.3.4.5", "fe80::1%eth0", "224.1.1.1", "::", " "],
)
def test_non_unicast_or_non_literal_addresses_are_refused(raw: str) -> None:
    with pytest.raises(InvalidInput):
        probe.parse_address(raw)


@pytest.mark.parametrize(
    ("seconds", "ms"), [(0.1, 100), (1, 1000), (2.5, 2500), (3600, 3_600_000), (0.1234, 123)]
)
def test_intervals_in_range_become_milliseconds(seconds: float, ms: int) -> None:
    assert drafts.interval_ms(seconds) == ms


@pytest.mark.parametrize("seconds", [0.099, 0, -1, 3600.5, float("nan"), float("inf")])
def test_intervals_out_of_range_are_refused(seconds: float) -> None:
    with pytest.raises(InvalidInput, match=r"interval_s must be between 0\.1 and 3600 seconds"):
        drafts.interval_ms(seconds)


@pytest.mark.parametrize("seconds", [0.049, 60.01])
def test_timeouts_out_of_range_are_refused(seconds: float) -> None:
    with pytest.raises(InvalidInput, match=r"timeout_s must be between 0\.05 and 60 seconds"):
        drafts.timeout_ms(seconds)


def test_names_are_trimmed_and_blank_means_none() -> None:
    assert drafts.clean_name("  core router ") == "core router"
    assert drafts.clean_name("   ") is None
    assert drafts.clean_name(None) is None


@pytest.mark.parametrize(
    ("action", "current", "result"),
    [
        ("pause", "active", "paused"),
        ("pause", "paused", None),
        ("resume", "paused", "active"),
        ("resume", "active", None),
        ("stop", "active", "stopped"),
        ("stop", "paused", "stopped"),
        ("stop", "stopped", None),
        ("delete", "active", "deleted"),
        ("delete", "stopped", "deleted"),
        ("delete", "deleted", None),
    ],
)
def test_allowed_transitions(action: str, current: str, result: str | None) -> None:
    assert states.next_state(action, current, 7) == result


@pytest.mark.parametrize(
    ("action", "current"),
    [
        ("resume", "stopped"),
        ("resume", "deleted"),
        ("pause", "stopped"),
        ("pause", "deleted"),
        ("stop", "deleted"),
    ],
)
def test_ended_targets_only_move_to_deleted(action: str, current: str) -> None:
    with pytest.raises(Conflict, match=f"target 7 is {current}; it cannot be"):
        states.next_state(action, current, 7)


def test_state_filter_hides_deleted_by_default() -> None:
    assert states.parse_state_filter(None) == ("active", "paused", "stopped")
    assert states.parse_state_filter("all") == ("active", "paused", "stopped", "deleted")
    assert states.parse_state_filter("paused") == ("paused",)
    with pytest.raises(InvalidInput, match="unknown state 'zombie'"):
        states.parse_state_filter("zombie")


@given(
    target_id=st.integers(1, 2**63 - 1),
    ts=st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
    ),
)
def test_cursor_round_trips_to_the_microsecond(target_id: int, ts: datetime) -> None:
    cursor = pings.encode_cursor(target_id, ts)
    assert cursor.isascii() and "=" not in cursor
    assert pings.decode_cursor(cursor, target_id) == ts


@pytest.mark.parametrize("cursor", ["", "!!!", "cDE6eDp5", "cDI6MTox", "eA"])
def test_foreign_cursors_are_invalid_input(cursor: str) -> None:
    with pytest.raises(InvalidInput, match="invalid cursor"):
        pings.decode_cursor(cursor, 1)


def test_time_range_defaults_to_all_history_up_to_now() -> None:
    lo, hi = pings.time_range(None, None)
    assert lo == datetime(1970, 1, 1, tzinfo=UTC)
    assert abs(hi - datetime.now(UTC)) < timedelta(seconds=5)
    with pytest.raises(InvalidInput, match="is after to"):
        pings.time_range(datetime(2024, 1, 2, tzinfo=UTC), datetime(2024, 1, 1, tzinfo=UTC))


def test_csv_lines_leave_missing_values_empty() -> None:
    ts = datetime(2024, 5, 1, 12, 0, 0, 1500, tzinfo=UTC)
    assert pings.csv_line(pings.Ping(ts, 12_345, 2, 62)) == (
        "2024-05-01T12:00:00.001500Z,12.345,false,2,62\n"
    )
    assert pings.csv_line(pings.Ping(ts, None, None, None)) == (
        "2024-05-01T12:00:00.001500Z,,true,,\n"
    )

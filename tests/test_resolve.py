"""Hostname resolution: the override file, the family choice, the refresh delay."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from prober_service.names import MIN_REFRESH_S, Names, refresh_delay
from prober_service.resolve import (
    HostResolver,
    Resolved,
    ResolveError,
    parse_hosts,
    pick_address,
)
from shared.codec import AddressRecord
from tests.conftest import eventually


def test_hosts_file_lines_map_names_to_addresses_in_order() -> None:
    text = """
    # comment
    127.0.0.5   web.test  Alias.TEST   # trailing
    ::1         web.test
    not-an-ip   bad.test
    127.0.0.6
    """
    assert parse_hosts(text) == {
        "web.test": ["127.0.0.5", "::1"],
        "alias.test": ["127.0.0.5"],
    }


@pytest.mark.parametrize(
    ("family", "expected"),
    [("any", "::1"), ("ipv4", "127.0.0.9"), ("ipv6", "::1")],
)
def test_family_picks_the_first_answer_of_that_family(family: str, expected: str) -> None:
    assert pick_address(["::1", "127.0.0.9", "127.0.0.10"], family) == expected


def test_no_answer_of_the_family_is_none() -> None:
    assert pick_address(["127.0.0.1"], "ipv6") is None


@pytest.mark.parametrize(
    ("ttl", "interval", "expected"),
    [(None, 300.0, 300.0), (30.0, 300.0, 30.0), (0.0, 300.0, MIN_REFRESH_S), (900.0, 60.0, 60.0)],
)
def test_refresh_follows_the_ttl_within_bounds(
    ttl: float | None, interval: float, expected: float
) -> None:
    assert refresh_delay(ttl, interval) == expected


async def test_override_file_answers_first_and_is_reread_when_edited(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.7 svc.test\n")
    resolver = HostResolver(hosts, use_system=False)
    assert await resolver.resolve("SVC.test.", "any") == Resolved("127.0.0.7", None)
    hosts.write_text("127.0.0.8 svc.test\n# longer, so the size differs too\n")
    assert (await resolver.resolve("svc.test", "ipv4")).address == "127.0.0.8"
    with pytest.raises(ResolveError, match="no ipv6 address"):
        await resolver.resolve("svc.test", "ipv6")


async def test_a_name_outside_the_file_fails_when_the_system_is_not_asked(tmp_path: Path) -> None:
    resolver = HostResolver(tmp_path / "missing-hosts", use_system=False)
    with pytest.raises(ResolveError, match="name not found"):
        await resolver.resolve("nowhere.test", "any")


async def test_ip_literals_resolve_to_themselves_normalised() -> None:
    resolver = HostResolver(None, use_system=False)
    assert (await resolver.resolve("0:0::1", "any")).address == "::1"


async def test_system_resolver_answers_localhost_from_etc_hosts() -> None:
    # /etc/hosts answers "localhost" before any DNS server would be asked.
    resolved = await HostResolver(None).resolve("localhost", "ipv4")
    assert resolved.address == "127.0.0.1"


async def test_names_records_first_address_changes_and_failures_only(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.20 moving.test\n")
    records: list[AddressRecord] = []
    addresses: list[tuple[int, str | None]] = []
    names = Names(
        HostResolver(hosts, use_system=False),
        lambda tid, address: addresses.append((tid, address)),
        records.append,
        interval_s=0.05,
    )

    def reached(counter: str, at_least: int) -> Callable[[], Awaitable[bool]]:
        async def check() -> bool:
            return bool(getattr(names, counter) >= at_least)

        return check

    assert names.track(7, "moving.test", "any") is None
    try:
        await eventually(reached("resolutions", 3))  # several resolutions of the same address
        hosts.write_text("127.0.0.21 moving.test\n")
        await eventually(reached("changes", 1))
        await eventually(reached("resolutions", names.resolutions + 2))  # the new one, again
        hosts.write_text("# gone\n")
        await eventually(reached("failures", 1))
        assert names.track(7, "moving.test", "any") is None  # same name: state kept (unresolved)
    finally:
        await names.close()
    assert [(r.address, r.error) for r in records][:2] == [
        ("127.0.0.20", None),
        ("127.0.0.21", None),
    ]
    assert all(r.address is None and r.error == "name not found" for r in records[2:])
    assert len(records) >= 3
    assert addresses[:2] == [(7, "127.0.0.20"), (7, "127.0.0.21")]
    assert addresses[2] == (7, None)
    assert names.changes == 1
    assert names.failures == len(records) - 2
    assert [r.ts for r in records] == sorted(r.ts for r in records)

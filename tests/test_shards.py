"""Shard assignment over the live probers: the pure rules every prober applies alike."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from prober_service.scheduler import Scheduler
from prober_service.shards import Ownership, assign, next_holding
from shared.codec import TargetSpec
from shared.constants import SHARD_COUNT, Topology

names = st.lists(st.text("abcdefgh0123456789-", min_size=1, max_size=12), min_size=1, max_size=8)


@given(names)
def test_every_shard_has_exactly_one_member(members: list[str]) -> None:
    owned = assign(members)
    assert set(owned) == set(members)
    shards = [s for held in owned.values() for s in held]
    assert sorted(shards) == list(range(SHARD_COUNT))


@given(names)
def test_the_assignment_does_not_depend_on_member_order(members: list[str]) -> None:
    assert assign(members) == assign(list(reversed(members)))


def test_shards_are_spread_evenly_over_three_members() -> None:
    sizes = sorted(len(s) for s in assign(["p1", "p2", "p3"]).values())
    assert sizes[0] >= SHARD_COUNT / 3 * 0.75 and sizes[-1] <= SHARD_COUNT / 3 * 1.25


@given(names, st.text("xyz", min_size=1, max_size=5))
def test_a_new_member_takes_shards_only_from_the_others_never_moves_the_rest(
    members: list[str], newcomer: str
) -> None:
    if newcomer in members:
        return
    before = assign(members)
    after = assign([*members, newcomer])
    for member in members:
        # Each old member keeps a subset of what it had: only moves to the newcomer.
        assert after[member] <= before[member]
    assert set().union(*(before[m] - after[m] for m in members)) == after[newcomer]


def test_a_lone_prober_holds_every_shard() -> None:
    assert next_holding("p1", {}) == frozenset(range(SHARD_COUNT))


def test_a_newcomer_waits_while_the_old_owner_still_lists_its_shards() -> None:
    assert next_holding("p2", {"p1": list(range(SHARD_COUNT))}) == frozenset()


def test_the_old_owner_gives_up_what_is_assigned_to_the_newcomer() -> None:
    mine = assign(["p1", "p2"])
    # p2 is live but lists nothing yet: p1 keeps only its own share.
    assert next_holding("p1", {"p2": []}) == mine["p1"]
    # Once p1 lists only its share, p2 takes the rest.
    assert next_holding("p2", {"p1": sorted(mine["p1"])}) == mine["p2"]


def test_shards_of_a_member_that_expired_go_to_the_survivors() -> None:
    three = assign(["p1", "p2", "p3"])
    two = assign(["p1", "p2"])
    got = next_holding("p1", {"p2": sorted(three["p2"])})
    assert got == two["p1"] - three["p2"]
    assert three["p3"] & two["p1"] <= got


def test_ownership_releases_acquires_and_names_routing_keys() -> None:
    ownership = Ownership([])
    ownership.acquire([3, 1])
    assert ownership.routing_keys(Topology("x")) == ["shard.1", "shard.3"]
    assert ownership.owns(1) and ownership.owns(1 + SHARD_COUNT) and not ownership.owns(2)
    ownership.release([1])
    assert ownership.shards == frozenset({3})


def test_a_lapsed_lease_forbids_sending() -> None:
    ownership = Ownership()
    assert ownership.may_send()
    ownership.renew(0.0)
    assert not ownership.may_send()
    ownership.renew(math.inf)
    assert ownership.may_send()


class _Sent:
    def send(self, target_id: int, address: str, ipv6: bool, timeout_ns: int) -> None:
        raise AssertionError("not expected to send")


def _spec(target_id: int, rev: int = 1) -> TargetSpec:
    return TargetSpec(target_id, "127.0.0.1", 1000, 1000, "active", rev)


@pytest.mark.parametrize("target_id", [1, 2 + SHARD_COUNT])
def test_a_released_shard_is_dropped_and_loads_again_when_taken_back(target_id: int) -> None:
    ownership = Ownership([shard for shard in range(SHARD_COUNT)])
    scheduler = Scheduler(_Sent(), ownership.owns)
    assert scheduler.apply(_spec(target_id))
    ownership.release([target_id % SHARD_COUNT])
    assert scheduler.retain_owned() == 1 and scheduler.size == 0
    assert not scheduler.apply(_spec(target_id))  # not ours: ignored
    ownership.acquire([target_id % SHARD_COUNT])
    # The same rev as before counts as new: the release forgot it.
    assert scheduler.apply(_spec(target_id)) and scheduler.size == 1

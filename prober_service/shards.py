"""Which shards (and so which targets) this prober owns: the one place that decides.

Every prober computes the same assignment of the shards over the live
members (rendezvous hashing: a membership change moves only the shards of
the member that came or went). A prober takes an assigned shard only once no
other live member lists it, and gives a shard up before its row stops listing
it, so during a handover a shard has at most one owner.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Iterable, Mapping

from shared.constants import SHARD_COUNT, Topology, shard_of


def _score(member: str, shard: int) -> int:
    digest = hashlib.blake2b(f"{member}/{shard}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def assign(members: Iterable[str], shard_count: int = SHARD_COUNT) -> dict[str, frozenset[int]]:
    """Each shard to the member with the highest score for it (the same on every prober)."""
    names = sorted(set(members))
    owned: dict[str, set[int]] = {name: set() for name in names}
    if not names:
        return {}
    for shard in range(shard_count):
        winner = max(names, key=lambda name: (_score(name, shard), name))
        owned[winner].add(shard)
    return {name: frozenset(shards) for name, shards in owned.items()}


def next_holding(
    me: str, others: Mapping[str, Iterable[int]], shard_count: int = SHARD_COUNT
) -> frozenset[int]:
    """The shards `me` should hold given the other live members and what they list.

    Assigned to me and listed by nobody else: hold it. Assigned to me but
    still listed by its previous owner: wait until that owner lets it go (or
    expires). Not assigned to me: give it up.
    """
    desired = assign([me, *others], shard_count)[me]
    claimed = {shard for shards in others.values() for shard in shards}
    return desired - claimed


class Ownership:
    """The shards this prober pings now, and until when it may ping them.

    The membership renews the lease at every heartbeat attempt; it runs out
    only when the process stopped heartbeating (it hung), so a hung prober
    does not send on waking before it has learnt what it still owns.
    """

    def __init__(self, shards: Iterable[int] = range(SHARD_COUNT)) -> None:
        self._shards = frozenset(shards)
        self._lease_until = math.inf  # monotonic seconds

    @property
    def shards(self) -> frozenset[int]:
        return self._shards

    def owns(self, target_id: int) -> bool:
        return shard_of(target_id) in self._shards

    def routing_keys(self, topology: Topology, shards: Iterable[int] | None = None) -> list[str]:
        chosen = self._shards if shards is None else shards
        return [topology.shard_key(shard) for shard in sorted(chosen)]

    def release(self, shards: Iterable[int]) -> None:
        self._shards = self._shards - frozenset(shards)

    def acquire(self, shards: Iterable[int]) -> None:
        self._shards = self._shards | frozenset(shards)

    def renew(self, until_monotonic: float) -> None:
        self._lease_until = until_monotonic

    def may_send(self) -> bool:
        return time.monotonic() < self._lease_until

"""Which shards (and so which targets) this prober owns: the one place that decides."""

from __future__ import annotations

from collections.abc import Iterable

from shared.constants import SHARD_COUNT, Topology, shard_of


class Ownership:
    """The shards this prober pings; for now a prober owns every shard."""

    def __init__(self, shards: Iterable[int] = range(SHARD_COUNT)) -> None:
        self._shards = frozenset(shards)

    def owns(self, target_id: int) -> bool:
        return shard_of(target_id) in self._shards

    def routing_keys(self, topology: Topology) -> list[str]:
        return [topology.shard_key(shard) for shard in sorted(self._shards)]

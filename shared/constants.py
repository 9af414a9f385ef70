"""Wire names in one place: exchanges, queues, routing keys, headers, versions."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

MESSAGE_VERSION = 1
# Targets hash into this many shards; a command's routing key names its shard.
SHARD_COUNT = 256
# A prober whose heartbeat is older than this is dead: its shards move on.
PROBER_EXPIRY_S = 5.0

REASON_HEADER = "x-pingtrack-reason"
# One word for the reason, what dead letters are counted and selected by.
REASON_CODE_HEADER = "x-pingtrack-reason-code"
BATCH_ID_HEADER = "x-pingtrack-batch-id"
# Set on a dead letter published back to the results queue: when, and by whom.
REPLAYED_HEADER = "x-pingtrack-replayed"


class DeadReason(StrEnum):
    """Why a message, or part of one, went to the dead-letter queue."""

    TOO_BIG = "too_big"  # over the writer's message size limit
    NOT_MSGPACK = "not_msgpack"  # garbage or truncated
    BAD_VERSION = "bad_version"  # not a version this writer reads
    BAD_SHAPE = "bad_shape"  # not a map of equal-length columns with a 16-byte id
    INVALID_VALUES = "invalid_values"  # results whose values the tables cannot hold
    # Results older than the writer's dedup window (writer_service/store.py):
    # refused, since a replay of them could no longer be told from new results.
    TOO_LATE = "too_late"
    DATABASE_REJECTED = "database_rejected"  # a value the codec let through, PostgreSQL did not


TOO_LATE = DeadReason.TOO_LATE.value
CONTENT_TYPE = "application/msgpack"

# A results message bigger than this is rejected as malformed (a batch of
# 100 000 results is about 2.5 MB).
MAX_RESULTS_MESSAGE_BYTES = 16 * 1024 * 1024


def shard_of(target_id: int) -> int:
    return target_id % SHARD_COUNT


@dataclass(frozen=True)
class Topology:
    """Every broker name derives from one prefix, so tests can run side by side."""

    prefix: str = "pingtrack"

    @property
    def commands_exchange(self) -> str:
        return f"{self.prefix}.commands"

    @property
    def results_exchange(self) -> str:
        return f"{self.prefix}.results"

    @property
    def results_queue(self) -> str:
        return f"{self.prefix}.results"

    @property
    def dead_exchange(self) -> str:
        return f"{self.prefix}.dead"

    @property
    def dead_queue(self) -> str:
        return f"{self.prefix}.results.dead"

    def shard_key(self, shard: int) -> str:
        return f"shard.{shard}"

    def target_key(self, target_id: int) -> str:
        return self.shard_key(shard_of(target_id))

    all_shards_key = "shard.*"

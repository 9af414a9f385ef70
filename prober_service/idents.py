"""ICMP (identifier, sequence) allocation across several identifiers.

A 16-bit sequence wraps in seconds at thousands of pings per second, so keys
rotate over several identifiers, and a key whose ping still waits for its
reply is never handed out again (a late reply would match the wrong ping).
"""

from __future__ import annotations

from collections.abc import Container, Sequence

Key = tuple[int, int]
SEQ_SPACE = 1 << 16


class KeysExhausted(Exception):
    """Every (identifier, sequence) is pending: far more pings in flight than keys."""


class KeyAllocator:
    """Hands out keys round-robin over the identifiers, skipping pending ones."""

    def __init__(self, identifiers: Sequence[int]) -> None:
        if not identifiers or len(set(identifiers)) != len(identifiers):
            raise ValueError("need distinct identifiers")
        if any(not 0 <= i < SEQ_SPACE for i in identifiers):
            raise ValueError("identifiers are 16-bit")
        self._ids = tuple(identifiers)
        self._space = len(self._ids) * SEQ_SPACE
        self._cursor = 0

    @property
    def identifiers(self) -> tuple[int, ...]:
        return self._ids

    @property
    def capacity(self) -> int:
        return self._space

    def allocate(self, pending: Container[Key]) -> Key:
        """The next key not in `pending`; raise KeysExhausted if there is none."""
        n = len(self._ids)
        for _ in range(self._space):
            c = self._cursor
            self._cursor = (c + 1) % self._space
            key = (self._ids[c % n], c // n)
            if key not in pending:
                return key
        raise KeysExhausted(f"all {self._space} ICMP keys are pending")

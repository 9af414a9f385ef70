"""Hop count from the TTL (IPv4) or hop limit (IPv6) of a reply."""

from __future__ import annotations

INITIAL_TTLS = (32, 64, 128, 255)


def hops_from_ttl(ttl: int) -> int:
    """Hop count guessed from a reply's TTL / hop limit.

    Senders start from one of a few initial values; the smallest of them not
    below the received TTL is the best guess.
    """
    if not 0 <= ttl <= 255:
        raise ValueError(f"TTL out of range: {ttl}")
    for initial in INITIAL_TTLS:
        if ttl <= initial:
            return initial - ttl
    raise AssertionError("unreachable")

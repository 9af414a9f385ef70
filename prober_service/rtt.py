"""Round-trip time from the kernel's receive timestamp, guarded by the monotonic clock."""

from __future__ import annotations


def rtt_ns(tx_wall_ns: int, rx_wall_ns: int | None, tx_mono_ns: int, now_mono_ns: int) -> int:
    """The RTT of a reply.

    The kernel stamps a reply when it arrives, so `rx - tx` leaves out the time
    Python took to get to it. Both ends are wall-clock times, though: if the
    clock was stepped in between, that difference is wrong, and the monotonic
    RTT (measured now, so never shorter than the true one) is used instead.
    """
    monotonic = now_mono_ns - tx_mono_ns
    if rx_wall_ns is None:
        return monotonic
    kernel = rx_wall_ns - tx_wall_ns
    if 0 <= kernel <= monotonic:
        return kernel
    return monotonic

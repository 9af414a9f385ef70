"""Slots the prober could not send for a reason of its own: counted, never stored as loss.

A stored lost ping means the network did not answer. When the probe never
reached the network (no socket of the address family, every ICMP identifier
in use, the kernel refusing the send: a local firewall rule, a full buffer,
no route from this host, no descriptor left), the slot is not a ping at all:
it leaves no row, and is counted here by reason and by target. The heartbeat
carries the counts by reason (/metrics, /health); the stop log line carries
them per target.

Reasons are a fixed vocabulary: the names below, or the lowercased errno
name of the error (`eperm`, `enobufs`, `enetunreach`, `emfile`), the same
words a tcp/http probe's `os_error_reason` gives.

An ICMP send error is always local: the kernel refused the packet before it
left. A tcp/http probe's error may come from the network (a refusal, an ICMP
unreachable from a router), so only the errors in LOCAL_ERRNOS, which no
remote party can cause, count as local there.
"""

from __future__ import annotations

import errno
from collections import Counter

NO_SOCKET = "no_socket"  # no ICMP socket of the target's address family
NO_IDENTIFIER = "no_identifier"  # every ICMP (identifier, sequence) has a ping in flight
PROBE_LIMIT = "probe_limit"  # tcp/http: the concurrency limit was reached

# Errors of a tcp/http probe that say it never left this host.
LOCAL_ERRNOS = frozenset(
    {
        errno.EPERM,  # a local firewall rule
        errno.EACCES,  # a local policy (prohibit route, LSM, broadcast)
        errno.EINVAL,  # a blackhole route, an address this host cannot send to
        errno.EAGAIN,  # the socket's send buffer is full
        errno.ENOBUFS,  # the kernel's buffers or the device queue are full
        errno.ENOMEM,
        errno.EMFILE,  # no file descriptor left in the process
        errno.ENFILE,  # nor in the system
        errno.EADDRNOTAVAIL,  # no local address or port to send from
        errno.EAFNOSUPPORT,  # the address family is not available here
        errno.EMSGSIZE,
    }
)
LOCAL_REASONS = frozenset(errno.errorcode[e].lower() for e in LOCAL_ERRNOS)


def errno_reason(exc: OSError) -> str:
    """The reason a send failed on this host: its lowercased errno name."""
    return errno.errorcode.get(exc.errno or 0, "oserror").lower()


class LocalFailures:
    """Slots not sent, by reason and by target."""

    def __init__(self) -> None:
        self.by_reason: Counter[str] = Counter()
        self.by_target: Counter[int] = Counter()

    def add(self, target_id: int, reason: str) -> None:
        self.by_reason[reason] += 1
        self.by_target[target_id] += 1

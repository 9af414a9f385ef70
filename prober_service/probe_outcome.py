"""What one tcp/http probe ended in, and why: plain functions, no I/O.

Every probe slot ends in exactly one `ProbeOutcome`, whatever the target
sent: an answer (rtt set), or a failure whose `error` is one of the reasons
below. Reasons are a fixed vocabulary, never text the target chose, so they
can be grouped and counted; a protocol failure says what was wrong after
`protocol: `. `classify` turns whatever a probe raised into a reason, and
`settle` keeps every field inside what the result message may carry (one
out-of-range value would otherwise cost the whole batch, other targets'
results with it).
"""

from __future__ import annotations

import errno
import ssl
from collections.abc import Iterator
from dataclasses import dataclass

from aiohttp import ClientSSLError, ServerDisconnectedError
from aiohttp.http_exceptions import (
    BadHttpMessage,
    BadStatusLine,
    ContentLengthError,
    HttpProcessingError,
    InvalidHeader,
    LineTooLong,
    TransferEncodingError,
)

# Failure reasons as stored; an OSError not named here keeps its errno name.
TIMEOUT = "timeout"
REFUSED = "refused"
UNREACHABLE = "unreachable"
RESET = "reset"
TLS = "tls"
PROTOCOL = "protocol"
STATUS = "status"
BODY = "body"
DENIED = "denied"
SHUTDOWN = "shutdown"
# Anything else: "error: <exception class>" (a bug to look at, still a stored result).
ERROR = "error"

_ERRNO_REASONS = {
    errno.ECONNREFUSED: REFUSED,
    errno.ENETUNREACH: UNREACHABLE,
    errno.EHOSTUNREACH: UNREACHABLE,
    errno.ETIMEDOUT: TIMEOUT,
    errno.ECONNRESET: RESET,
    errno.EPIPE: RESET,
}

# What is wrong with an answer, after "protocol: ".
LINE_TOO_LONG = "status or header line too long"
NOT_HTTP = "not an HTTP status line"
BAD_HEADER = "bad header"
BAD_CHUNK = "bad chunk size"
BAD_LENGTH = "bad Content-Length"
BAD_ENCODING = "bad Transfer-Encoding"
TOO_MANY_HEADERS = "too many headers"
TRAILING_DATA = "data after the answer"
MALFORMED = "malformed answer"
CUT_SHORT = "body cut short"
CLOSED = "closed before answering"
STATUS_RANGE = "status code out of range"

# The parser's own words (before any quoted input) that name the fault.
_MESSAGE_WORDS = (
    ("chunk", BAD_CHUNK),
    ("content-length", BAD_LENGTH),
    ("transfer-encoding", BAD_ENCODING),
    ("too many headers", TOO_MANY_HEADERS),
    ("data after", TRAILING_DATA),
    ("header", BAD_HEADER),
)

# Bounds of the result message (shared.codec): status, µs values, text.
MIN_STATUS, MAX_STATUS = 100, 599
MAX_US = 2_147_483_647
MAX_CERT_US = 253_402_300_799_000_000  # 9999-12-31
MAX_REASON = 500


@dataclass(frozen=True, slots=True)
class ProbeOutcome:
    """One tcp/http probe: rtt_us None when it failed, then `error` says why.

    connect_us (http: TCP connect plus TLS handshake) is measured but not stored.
    """

    rtt_us: int | None
    error: str | None = None
    status: int | None = None
    ttfb_us: int | None = None
    cert_expires_us: int | None = None
    connect_us: int | None = None


def protocol(what: str) -> str:
    return f"{PROTOCOL}: {what}"


def os_error_reason(exc: OSError) -> str:
    if isinstance(exc, TimeoutError):
        return TIMEOUT
    if exc.errno in _ERRNO_REASONS:
        return _ERRNO_REASONS[exc.errno]
    return errno.errorcode.get(exc.errno or 0, "error").lower()


def causes(exc: BaseException | None, depth: int = 8) -> Iterator[BaseException]:
    """exc, then what caused it (explicit cause first), at most `depth` deep."""
    seen: set[int] = set()
    while exc is not None and depth > 0 and id(exc) not in seen:
        yield exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
        depth -= 1


def _message_fault(exc: HttpProcessingError) -> str:
    head = str(exc.message).split(":", 1)[0].split("\n", 1)[0].lower()
    return next((fault for word, fault in _MESSAGE_WORDS if word in head), MALFORMED)


def _parser_fault(exc: HttpProcessingError, connection_error: BaseException | None) -> str:
    if isinstance(exc, LineTooLong):
        return protocol(LINE_TOO_LONG)
    if isinstance(exc, BadStatusLine):
        return protocol(NOT_HTTP)
    if isinstance(exc, InvalidHeader):
        return protocol(BAD_HEADER)
    if isinstance(exc, ContentLengthError | TransferEncodingError):
        # The body ended early: a reset says so, a plain close is the answer's fault.
        lost = next((e for e in causes(connection_error) if isinstance(e, OSError)), None)
        return os_error_reason(lost) if lost is not None else protocol(CUT_SHORT)
    return protocol(_message_fault(exc))


def classify(exc: BaseException, connection_error: BaseException | None = None) -> str:
    """The reason a probe failed, from what it raised.

    connection_error: what the connection itself ended with, when the client
    reports it apart (a reset under an incomplete body).
    """
    chain = list(causes(exc))
    if isinstance(exc, TimeoutError):
        return TIMEOUT
    if any(isinstance(e, ssl.SSLError | ClientSSLError) for e in chain):
        return TLS
    typed = [e for e in chain if isinstance(e, HttpProcessingError)]
    # The parser's own exception is the deepest; the client re-wraps it above.
    specific = [e for e in typed if type(e) not in (HttpProcessingError, BadHttpMessage)]
    if typed:
        return _parser_fault((specific or typed)[-1], connection_error)
    if isinstance(exc, ServerDisconnectedError):
        return protocol(CLOSED)
    for e in chain:
        if isinstance(e, OSError) and e.errno is not None:
            return os_error_reason(e)
    if isinstance(exc, OSError):
        return os_error_reason(exc)
    return f"{ERROR}: {type(exc).__name__}"


def judge(
    status: int, body: bytes, expect_status: int | None, expect_body: str | None
) -> str | None:
    """Why the answer fails the target's expectations, or None when it passes."""
    if expect_status is None:
        if not 200 <= status < 400:
            return STATUS
    elif status != expect_status:
        return STATUS
    if expect_body is not None and expect_body.encode() not in body:
        return BODY
    return None


def _within(value: int | None, low: int, high: int) -> int | None:
    return value if value is not None and low <= value <= high else None


def settle(outcome: ProbeOutcome) -> ProbeOutcome:
    """The outcome with every field inside what a result message may carry.

    A status outside 100-599 is not HTTP: the probe fails as a protocol error
    without it. A TTFB or expiry out of range is dropped, a reason is cut.
    """
    status, error, rtt = outcome.status, outcome.error, outcome.rtt_us
    if status is not None and not MIN_STATUS <= status <= MAX_STATUS:
        status, error, rtt = None, protocol(STATUS_RANGE), None
    return ProbeOutcome(
        rtt,
        None if error is None else error[:MAX_REASON],
        status,
        _within(outcome.ttfb_us, 0, MAX_US),
        _within(outcome.cert_expires_us, 0, MAX_CERT_US),
        outcome.connect_us,
    )

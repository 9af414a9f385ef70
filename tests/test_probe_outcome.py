"""Outcome classification and bounds: what a probe raised becomes a fixed reason."""

from __future__ import annotations

import errno
import ssl

import pytest
from aiohttp import (
    ClientConnectorError,
    ClientOSError,
    ClientPayloadError,
    ServerDisconnectedError,
)
from aiohttp.client_reqrep import ConnectionKey
from aiohttp.http_exceptions import (
    BadHttpMessage,
    BadStatusLine,
    ContentLengthError,
    HttpProcessingError,
    LineTooLong,
)

from prober_service.probe_outcome import ProbeOutcome, causes, classify, settle


def wrapped(inner: BaseException, outer: BaseException) -> BaseException:
    """outer raised from inner, as the client re-raises what its parser found."""
    outer.__cause__ = inner
    return outer


def parser_error(inner: HttpProcessingError) -> BaseException:
    """How aiohttp reports a bad head: a generic copy above the parser's own exception."""
    return wrapped(inner, HttpProcessingError(code=400, message=inner.message))


KEY = ConnectionKey("probe.test", 80, False, True, None, None, None)


REFUSED = ConnectionRefusedError(errno.ECONNREFUSED, "refused")
RESET = ClientOSError(errno.ECONNRESET, "reset by peer")
SHORT_BODY = ContentLengthError("Not enough data")


@pytest.mark.parametrize(
    ("raised", "reason"),
    [
        (TimeoutError(), "timeout"),
        (ClientConnectorError(KEY, REFUSED), "refused"),
        (ClientConnectorError(KEY, OSError(errno.EHOSTUNREACH, "x")), "unreachable"),
        (ClientConnectorError(KEY, OSError(errno.EMFILE, "x")), "emfile"),
        (RESET, "reset"),
        (wrapped(ssl.SSLError(1, "wrong version number"), ClientOSError()), "tls"),
        (parser_error(LineTooLong(b"A" * 100, "8190")), "protocol: status or header line too long"),
        (parser_error(BadStatusLine(b"SSH-2.0")), "protocol: not an HTTP status line"),
        (wrapped(SHORT_BODY, ClientPayloadError()), "protocol: body cut short"),
        (ServerDisconnectedError(), "protocol: closed before answering"),
        (ValueError("a bug"), "error: ValueError"),
    ],
)
def test_what_a_probe_raised_becomes_a_fixed_reason(raised: BaseException, reason: str) -> None:
    assert classify(raised) == reason


@pytest.mark.parametrize(
    ("message", "fault"),
    [
        ("Invalid character in chunk size: b'-1'", "bad chunk size"),
        ("Invalid character in Content-Length: b'\\xb2'", "bad Content-Length"),
        ("Too many headers received", "too many headers"),
        ("Data after `Connection: close`: b'x'", "data after the answer"),
        # Named by the parser's words before the quoted input, never by the input.
        ("Something new: b'chunk header'", "malformed answer"),
    ],
)
def test_a_malformed_answer_is_named_by_the_parsers_words(message: str, fault: str) -> None:
    assert classify(parser_error(BadHttpMessage(message))) == f"protocol: {fault}"


def test_a_body_cut_by_a_reset_is_a_reset() -> None:
    assert classify(wrapped(SHORT_BODY, ClientPayloadError()), RESET) == "reset"


def test_a_cause_cycle_ends() -> None:
    first, second = ValueError("a"), ValueError("b")
    first.__cause__, second.__cause__ = second, first
    assert list(causes(first)) == [first, second]


@pytest.mark.parametrize(
    ("given", "settled"),
    [
        (ProbeOutcome(1200, None, 200, 900), ProbeOutcome(1200, None, 200, 900)),
        (ProbeOutcome(None, "status", 503, 900), ProbeOutcome(None, "status", 503, 900)),
        # Statuses a result message cannot carry: not HTTP.
        (
            ProbeOutcome(1200, None, 700, 900),
            ProbeOutcome(None, "protocol: status code out of range", None, 900),
        ),
        (
            ProbeOutcome(None, "status", 0, 900),
            ProbeOutcome(None, "protocol: status code out of range", None, 900),
        ),
        (ProbeOutcome(1200, None, 200, 900, -5), ProbeOutcome(1200, None, 200, 900, None)),
        (ProbeOutcome(None, "x" * 600), ProbeOutcome(None, "x" * 500)),
    ],
)
def test_settled_outcomes_fit_the_result_message(
    given: ProbeOutcome, settled: ProbeOutcome
) -> None:
    assert settle(given) == settled

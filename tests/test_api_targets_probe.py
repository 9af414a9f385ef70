"""Pure checks of what a target may probe, and of changes to a stored target."""

from __future__ import annotations

import pytest

from api_service.targets import drafts, probe
from api_service.targets.probe import Probe, parse_probe
from shared.errors import InvalidInput
from shared.settings import Settings

SETTINGS = Settings(min_tcp_interval_s=1.0, min_http_interval_s=5.0)


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("Example.COM.", "example.com"),
        ("bücher.example", "xn--bcher-kva.example"),
        ("a-b.c-d.example", "a-b.c-d.example"),
        ("localhost", "localhost"),
    ],
)
def test_hostnames_are_stored_in_lower_case_ascii(raw: str, clean: str) -> None:
    assert probe.parse_hostname(raw) == clean


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("", "hostname is empty"),
        ("10.0.0.1", "hostname '10.0.0.1' is an IP address; give it as address"),
        ("-bad.example", "is not a valid DNS name"),
        ("under_score.example", "is not a valid DNS name"),
        ("a" * 64 + ".example", "is not a valid DNS name"),
        ("host.123", "neither an IP address nor a DNS name"),
        ("two words", "is not a valid DNS name"),
    ],
)
def test_bad_hostnames_are_refused_with_a_reason(raw: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        probe.parse_hostname(raw)


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("HTTPS://Example.com", "https://example.com/"),
        ("http://127.0.0.1:8080/health?x=1#frag", "http://127.0.0.1:8080/health?x=1"),
        ("http://[::1]:81/", "http://[::1]:81/"),
        ("https://bücher.example/a", "https://xn--bcher-kva.example/a"),
    ],
)
def test_urls_are_normalised(raw: str, clean: str) -> None:
    assert probe.parse_url(raw) == clean


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("ftp://example.com/", "must start with http:// or https://"),
        ("http://user:pw@example.com/", "must not carry credentials"),
        ("http:///path", "has no host"),
        ("http://example.com:99999/", "is not a valid URL"),
        ("https://bad_host.example/", "is not a valid DNS name"),
    ],
)
def test_bad_urls_are_refused_with_a_reason(raw: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        probe.parse_url(raw)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({}, "an icmp target needs exactly one of address or hostname"),
        ({"address": "127.0.0.1", "hostname": "a.example"}, "exactly one of address or hostname"),
        ({"address": "127.0.0.1", "port": 80}, "port is for kind tcp only"),
        ({"kind": "tcp", "address": "127.0.0.1"}, "a tcp target needs a port"),
        ({"kind": "tcp", "address": "127.0.0.1", "port": 0}, "port must be between 1 and 65535"),
        ({"address": "127.0.0.1", "url": "http://x.example/"}, "url is for kind http only"),
        ({"address": "127.0.0.1", "expect_status": 200}, "expect_status is for kind http only"),
        ({"address": "127.0.0.1", "family": "ipv6"}, "family applies to hostnames only"),
        ({"kind": "http"}, "an http target needs a url"),
        (
            {"kind": "http", "url": "http://a.example/", "port": 80},
            "takes its host and port from url, not port",
        ),
        (
            {"kind": "http", "url": "http://a.example/", "address": "127.0.0.1"},
            "takes its host and port from url, not address",
        ),
        (
            {"kind": "http", "url": "http://a.example/", "http_method": "POST"},
            "http_method must be GET or HEAD",
        ),
        (
            {"kind": "http", "url": "http://a.example/", "expect_status": 700},
            "expect_status must be between 100 and 599",
        ),
        (
            {"kind": "http", "url": "http://a.example/", "http_method": "HEAD", "expect_body": "x"},
            "expect_body needs http_method GET",
        ),
        (
            {"kind": "http", "url": "http://127.0.0.1/", "family": "ipv4"},
            "the url's host is an address",
        ),
        ({"kind": "udp", "address": "127.0.0.1"}, "kind must be one of icmp, tcp, http"),
    ],
)
def test_each_wrong_combination_is_named(fields: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        parse_probe(**fields)  # type: ignore[arg-type]


def test_a_hostname_tcp_probe_keeps_its_family() -> None:
    p = parse_probe(kind="tcp", hostname="DB.example", port=5432, family="ipv6")
    assert p == Probe(kind="tcp", hostname="db.example", port=5432, family="ipv6")
    assert p.describe() == "tcp hostname db.example (ipv6) port 5432"


def test_tags_are_sorted_and_deduplicated_and_checked() -> None:
    assert drafts.parse_tags(["b", "a", "b"]) == ["a", "b"]
    with pytest.raises(InvalidInput, match="tag 'has space' is not valid"):
        drafts.parse_tags(["has space"])
    with pytest.raises(InvalidInput, match="at most 32 tags"):
        drafts.parse_tags([f"t{i}" for i in range(33)])


def test_tcp_and_http_have_interval_floors_from_the_settings() -> None:
    with pytest.raises(InvalidInput, match="interval_s of http targets must be at least 5"):
        drafts.draft({"kind": "http", "url": "http://a.example/", "interval_s": 1.0}, SETTINGS)
    with pytest.raises(InvalidInput, match="interval_s of tcp targets must be at least 1"):
        drafts.draft(
            {"kind": "tcp", "address": "127.0.0.1", "port": 1, "interval_s": 0.5}, SETTINGS
        )
    http = drafts.draft({"kind": "http", "url": "http://a.example/", "interval_s": 5.0}, SETTINGS)
    assert (http.interval_ms, http.timeout_ms) == (5000, 5000)  # the http default timeout
    icmp = drafts.draft({"address": "127.0.0.1", "interval_s": 0.1}, SETTINGS)
    assert (icmp.interval_ms, icmp.timeout_ms) == (100, 1000)


def test_giving_a_hostname_replaces_the_address_and_the_rest_is_kept() -> None:
    current = drafts.draft(
        {"address": "127.0.0.1", "name": "x", "interval_s": 2.0, "tags": ["a"]}, SETTINGS
    )
    new = drafts.changed(current, {"hostname": "a.example", "family": "ipv4"}, SETTINGS)
    assert new.probe == Probe(hostname="a.example", family="ipv4")
    assert (new.name, new.interval_ms, new.tags) == ("x", 2000, ("a",))
    back = drafts.changed(new, {"address": "::1"}, SETTINGS)
    assert back.probe == Probe(address="::1")


def test_switching_kind_drops_what_the_new_kind_cannot_take() -> None:
    tcp = drafts.draft(
        {"kind": "tcp", "hostname": "a.example", "port": 443, "interval_s": 10.0}, SETTINGS
    )
    icmp = drafts.changed(tcp, {"kind": "icmp"}, SETTINGS)
    assert icmp.probe == Probe(hostname="a.example")
    http = drafts.changed(tcp, {"kind": "http", "url": "https://a.example/"}, SETTINGS)
    assert http.probe == Probe(kind="http", url="https://a.example/")
    with pytest.raises(InvalidInput, match="an http target needs a url"):
        drafts.changed(tcp, {"kind": "http"}, SETTINGS)
    with pytest.raises(InvalidInput, match="interval_s of http targets must be at least 5"):
        drafts.changed(
            drafts.draft({"address": "127.0.0.1"}, SETTINGS),
            {"kind": "http", "url": "http://a.example/"},
            SETTINGS,
        )


def test_draft_fields_round_trip_through_draft() -> None:
    for fields in (
        {"address": "127.0.0.1", "name": "a"},
        {"kind": "tcp", "hostname": "a.example", "port": 22, "family": "ipv4", "tags": ["x"]},
        {
            "kind": "http",
            "url": "https://a.example/h",
            "http_method": "HEAD",
            "expect_status": 204,
            "interval_s": 30.0,
            "timeout_s": 2.0,
        },
    ):
        d = drafts.draft(fields, SETTINGS)
        assert drafts.draft(d.fields(), SETTINGS) == d

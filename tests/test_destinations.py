"""Where tcp and http probes may go: the default, the settings, and the API's refusal.

Nothing here sends a packet: addresses are only compared with networks. The
prober's own refusal (after resolution, stored as the slot's outcome) is
checked end to end in test_probe_hostile.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from api_service.targets import drafts
from shared.destinations import Destinations, networks
from shared.errors import ConfigError, InvalidInput
from shared.settings import Settings, load_settings
from tests.api_client import ADMIN, api_client

DEFAULT = Destinations.default()
DENIED_NOTE = "(PINGTRACK_PROBE_DENIED_NETWORKS)"


@pytest.mark.parametrize(
    ("address", "network"),
    [
        ("169.254.169.254", "169.254.0.0/16"),  # AWS, GCP, Azure, OpenStack metadata
        ("::ffff:169.254.169.254", "169.254.0.0/16"),  # the same, IPv4-mapped
        ("169.254.0.1", "169.254.0.0/16"),
        ("fe80::1", "fe80::/10"),
        ("fe80::1%eth0", "fe80::/10"),
        ("fd00:ec2::254", "fd00:ec2::254/128"),
        ("100.100.100.200", "100.100.100.200/32"),
        ("168.63.129.16", "168.63.129.16/32"),
        ("192.0.0.192", "192.0.0.192/32"),
        ("0.0.0.0", "0.0.0.0/8"),  # reaches the prober's own loopback
        ("::", "::/128"),
    ],
)
def test_the_default_refuses_link_local_and_metadata_addresses(address: str, network: str) -> None:
    refusal = DEFAULT.refusal(address)
    assert refusal is not None and refusal.endswith(f"is in {network} {DENIED_NOTE}")


@pytest.mark.parametrize(
    "address", ["127.0.0.1", "127.3.2.1", "::1", "10.1.2.3", "192.168.1.254", "2001:db8::1"]
)
def test_the_default_allows_loopback_private_and_public_addresses(address: str) -> None:
    assert DEFAULT.refusal(address) is None


def test_an_allowed_list_restricts_and_a_denied_entry_wins() -> None:
    policy = Destinations(networks(["10.0.0.0/8"]), networks(["10.9.0.0/16"]))
    assert policy.refusal("10.1.2.3") is None
    assert policy.refusal("10.9.1.1") == f"10.9.1.1 is in 10.9.0.0/16 {DENIED_NOTE}"
    assert policy.refusal("192.168.1.1") == (
        "192.168.1.1 is outside the allowed networks (PINGTRACK_PROBE_ALLOWED_NETWORKS)"
    )
    assert policy.refusal("not-an-ip") == "'not-an-ip' is not an IP address"


def test_settings_take_comma_separated_networks_and_name_a_bad_one() -> None:
    settings = load_settings(
        probe_allowed_networks="10.0.0.0/8, fd00::/8", probe_denied_networks=""
    )
    assert settings.probe_destinations == Destinations(networks(["10.0.0.0/8", "fd00::/8"]), ())
    with pytest.raises(ConfigError, match=r"PINGTRACK_PROBE_DENIED_NETWORKS: .*host bits set"):
        load_settings(probe_denied_networks="169.254.1.1/16")


def http(url: str) -> dict[str, object]:
    return {"kind": "http", "url": url, "interval_s": 5.0}


def test_the_api_refuses_a_literal_denied_address_for_tcp_and_http_only() -> None:
    settings = Settings()
    with pytest.raises(InvalidInput, match=r"^url http://169\.254\.169\.254/latest/ is not an"):
        drafts.draft(http("http://169.254.169.254/latest/"), settings)
    with pytest.raises(InvalidInput, match="in fe80::/10"):
        drafts.draft(http("https://[fe80::1]:8443/"), settings)
    with pytest.raises(InvalidInput, match=r"tcp address 169\.254\.169\.254 port 80 is not an"):
        drafts.draft({"kind": "tcp", "address": "169.254.169.254", "port": 80}, settings)
    # A hostname is the prober's to check once resolved; an echo reads nothing back.
    drafts.draft(http("http://metadata.google.internal/"), settings)
    drafts.draft({"address": "169.254.169.254"}, settings)
    # Widened by the operator: accepted.
    widened = settings.model_copy(update={"probe_denied_networks": ()})
    drafts.draft(http("http://169.254.169.254/latest/"), widened)


def test_a_change_to_a_denied_address_is_refused() -> None:
    settings = Settings()
    current = drafts.draft({"kind": "tcp", "address": "127.0.0.1", "port": 80}, settings)
    with pytest.raises(InvalidInput, match="not an allowed probe destination"):
        drafts.changed(current, {"address": "169.254.169.254"}, settings)


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(settings) as client:
        yield client


async def test_post_targets_answers_422_for_a_metadata_url(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/targets",
        json={"kind": "http", "url": "http://169.254.169.254/latest/meta-data/"},
        headers=ADMIN,
    )
    assert response.status_code == 422, response.text
    assert "169.254.169.254 is in 169.254.0.0/16" in response.text

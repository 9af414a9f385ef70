"""All configuration, read once from the environment (prefix PINGTRACK_)."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from shared.destinations import (
    DEFAULT_ALLOWED,
    DEFAULT_DENIED,
    Destinations,
    IPNetwork,
    networks,
)

REPO_ROOT = Path(__file__).resolve().parent.parent

MIN_INTERVAL_S = 0.1
MAX_INTERVAL_S = 3600.0
MIN_TIMEOUT_S = 0.05
MAX_TIMEOUT_S = 60.0


class Settings(BaseSettings):
    """One settings object per process, created in `main` and passed down."""

    model_config = SettingsConfigDict(env_prefix="PINGTRACK_", extra="ignore")

    database_url: str = "postgresql://postgres@127.0.0.1:5432/pingtrack"
    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    # Every exchange and queue name starts with this; tests use a unique one.
    amqp_prefix: str = "pingtrack"

    api_host: str = "0.0.0.0"
    api_port: int = Field(6666, ge=1, le=65535)
    # Browsers refuse 6666 (an IRC port): the same app is also served here. 0: off.
    web_port: int = Field(8666, ge=0, le=65535)
    admin_token: SecretStr | None = None
    read_token: SecretStr | None = None

    migrations_dir: Path = REPO_ROOT / "migrations"
    partition_days_ahead: int = Field(7, ge=1, le=365)
    # `migrate` registers the ladder round with pg_cron; off for scratch
    # databases (tests, benchmarks) where a round must run only when asked.
    schedule_ladder: bool = True

    # Prober
    prober_id: str | None = None
    default_timeout_s: float = Field(1.0, ge=MIN_TIMEOUT_S, le=MAX_TIMEOUT_S)
    batch_max_results: int = Field(5000, ge=1, le=100_000)
    batch_max_delay_s: float = Field(1.0, gt=0, le=60)
    # Sealed batches not yet on disk (the spool refusing writes) wait in memory, up to this.
    buffer_max_results: int = Field(2_000_000, ge=1000)
    # Every sealed batch is written here before it is published, and stays until the
    # broker confirms it: a broker outage or a kill loses nothing. One directory per
    # fleet and prober id below it (a docker volume in compose); bounded by
    # spool_max_bytes, the oldest batches dropped and counted beyond it.
    spool_dir: Path = Path("/var/lib/pingtrack/spool")
    spool_max_bytes: int = Field(1 << 30, ge=64 << 20)
    reconcile_interval_s: float = Field(30.0, gt=0)
    icmp_mode: str = Field("auto", pattern="^(auto|raw|dgram)$")
    # Hostnames: re-resolved on their DNS TTL when known, else this often.
    resolve_interval_s: float = Field(300.0, ge=0.1, le=86_400)
    # An /etc/hosts-style file read before the system resolver (pinned names).
    hosts_file: Path | None = None
    # Ask the system resolver for names not in hosts_file (off: only the file answers).
    resolve_system: bool = True
    # tcp/http probes: at most this many in flight per prober; a spec with a
    # shorter interval than the floor is refused (the API enforces its own minimum).
    probe_concurrency: int = Field(64, ge=1, le=10_000)
    probe_min_interval_s: float = Field(1.0, ge=0.1, le=MAX_INTERVAL_S)
    # Extra CA certificates trusted by https probes (beside the system's).
    http_ca_file: Path | None = None
    # Read at most this much of an HTTP body (for the expected substring).
    http_body_max_bytes: int = Field(65_536, ge=0, le=16 * 1024 * 1024)
    # TCP and HTTP probes cost the target far more than an echo: these floors
    # keep a prober from being turned into a load generator.
    min_tcp_interval_s: float = Field(1.0, ge=MIN_INTERVAL_S, le=MAX_INTERVAL_S)
    min_http_interval_s: float = Field(5.0, ge=MIN_INTERVAL_S, le=MAX_INTERVAL_S)
    default_http_timeout_s: float = Field(5.0, ge=MIN_TIMEOUT_S, le=MAX_TIMEOUT_S)
    # Where tcp and http probes may connect (shared/destinations.py): an address
    # in an allowed network and in no denied one, checked on the address the
    # prober resolved and, for a literal address, when a target is made.
    # Comma-separated networks; an empty allowed list turns tcp/http probes off.
    probe_allowed_networks: Annotated[tuple[IPNetwork, ...], NoDecode] = networks(DEFAULT_ALLOWED)
    probe_denied_networks: Annotated[tuple[IPNetwork, ...], NoDecode] = networks(DEFAULT_DENIED)

    # Writer
    writer_prefetch: int = Field(16, ge=1, le=1000)
    # Batch ids are remembered this long, then pruned: the window in which a
    # batch delivered again is recognised. Pings older than it (less a margin,
    # writer_service/store.py) are refused to the dead-letter queue as too_late.
    dedup_window_h: int = Field(168, ge=2, le=87_600)
    # /health is degraded while the dead-letter queue holds more messages than this.
    dead_letter_threshold: int = Field(100, ge=0)

    # /health is degraded when no ladder round completed for this long (pg_cron
    # runs one a minute; a catch-up round after an outage may take longer).
    ladder_stale_after_min: int = Field(10, ge=2, le=10_080)

    log_level: str = "WARNING"
    log_format: str = Field("json", pattern="^(json|text)$")

    @property
    def dedup_window(self) -> timedelta:
        return timedelta(hours=self.dedup_window_h)

    @property
    def ladder_stale_after(self) -> timedelta:
        return timedelta(minutes=self.ladder_stale_after_min)

    @field_validator("probe_allowed_networks", "probe_denied_networks", mode="before")
    @classmethod
    def _network_list(cls, value: object) -> object:
        if isinstance(value, str):
            value = [part for part in re.split(r"[,\s]+", value) if part]
        if isinstance(value, list | tuple):
            try:
                return networks(str(item) for item in value)
            except ValueError as exc:
                raise ValueError(
                    f"{exc} (give networks like 10.0.0.0/8, comma-separated)"
                ) from None
        return value

    @property
    def probe_destinations(self) -> Destinations:
        return Destinations(self.probe_allowed_networks, self.probe_denied_networks)

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError(f"unknown log level {value!r}")
        return level


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment; explain a bad value in one line."""
    from pydantic import ValidationError

    from shared.errors import ConfigError

    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = "; ".join(
            f"PINGTRACK_{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(f"invalid settings: {problems}") from exc

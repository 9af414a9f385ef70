"""What route handlers receive, as Annotated dependency aliases."""

from __future__ import annotations

from typing import Annotated

import asyncpg
from fastapi import Depends, Path, Request

from api_service.targets.publisher import CommandPublisher
from api_service.targets.service import Targets
from shared.broker import BrokerLink
from shared.settings import Settings

_BIGINT_MAX = 2**63 - 1


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_pool(request: Request) -> asyncpg.Pool:
    pool: asyncpg.Pool = request.app.state.pool
    return pool


def get_broker(request: Request) -> BrokerLink:
    broker: BrokerLink = request.app.state.broker
    return broker


def get_targets(request: Request) -> Targets:
    targets: Targets = request.app.state.targets
    return targets


def get_publisher(request: Request) -> CommandPublisher:
    publisher: CommandPublisher = request.app.state.publisher
    return publisher


SettingsDep = Annotated[Settings, Depends(get_settings)]
PoolDep = Annotated[asyncpg.Pool, Depends(get_pool)]
BrokerDep = Annotated[BrokerLink, Depends(get_broker)]
TargetsDep = Annotated[Targets, Depends(get_targets)]
PublisherDep = Annotated[CommandPublisher, Depends(get_publisher)]
# Bounded so an id beyond bigint is a 422, not a database overflow.
TargetId = Annotated[int, Path(ge=1, le=_BIGINT_MAX, description="target id")]

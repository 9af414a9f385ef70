"""/targets: create (one or in bulk), list, read, change and end the tracking of targets."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import ValidationError

from api_service.auth import require_admin, require_reader
from api_service.deps import PoolDep, PublisherDep, SettingsDep, TargetId, TargetsDep
from api_service.errors import ErrorDetail, ErrorOut, describe_validation
from api_service.targets import bulk, drafts
from api_service.targets.drafts import Draft
from api_service.targets.schemas import (
    BulkCreate,
    BulkItemOut,
    BulkOut,
    ChangedOut,
    PurgedOut,
    TargetCreate,
    TargetList,
    TargetOut,
    TargetUpdate,
)
from shared.errors import InvalidInput, PingtrackError
from shared.settings import Settings

_ERRORS: dict[int | str, dict[str, object]] = {
    code: {"model": ErrorOut} for code in (400, 401, 403, 404, 409, 422, 503)
}
reads = APIRouter(tags=["targets"], dependencies=[Depends(require_reader)], responses=_ERRORS)
writes = APIRouter(tags=["targets"], dependencies=[Depends(require_admin)], responses=_ERRORS)


@writes.post("/targets", status_code=201)
async def create_target(body: TargetCreate, targets: TargetsDep) -> TargetOut:
    """Track an `address` (IP literal) or a `hostname`, by icmp (default), tcp (with
    `port`) or http (`url`, `http_method`, `expect_status`, `expect_body`)."""
    return TargetOut.of(await targets.create(**body.given()))


@writes.post("/targets:bulk")
async def create_targets_in_bulk(
    body: BulkCreate, pool: PoolDep, publisher: PublisherDep, settings: SettingsDep
) -> BulkOut:
    """Create up to 5000 targets in one call. Every item is checked alone and answered
    in `results` with its index: 201 and the target, or its 4xx and error. The valid
    ones are created together in one transaction."""
    if len(body.targets) > bulk.MAX_BULK:
        raise InvalidInput(f"at most {bulk.MAX_BULK} targets per call, got {len(body.targets)}")
    outcomes = await bulk.create_many(pool, publisher, [_draft(i, settings) for i in body.targets])
    results = [
        BulkItemOut(
            index=r.index,
            status=r.status,
            target=None if r.target is None else TargetOut.of(r.target),
            error=None
            if r.error is None
            else ErrorDetail(code=_code(r.status), message=str(r.error)),
        )
        for r in outcomes
    ]
    created = sum(r.status == 201 for r in outcomes)
    return BulkOut(created=created, failed=len(outcomes) - created, results=results)


def _draft(item: Any, settings: Settings) -> Draft | PingtrackError:
    try:
        return drafts.draft(TargetCreate.model_validate(item).given(), settings)
    except ValidationError as exc:
        return InvalidInput(describe_validation(exc.errors()))
    except InvalidInput as exc:
        return exc


def _code(status: int) -> str:
    return {409: "conflict", 422: "invalid_input"}.get(status, "error")


Tags = Annotated[
    list[str] | None, Query(description="only targets carrying every one of these tags")
]


@reads.get("/targets")
async def list_targets(
    targets: TargetsDep, state: str | None = None, tag: Tags = None
) -> TargetList:
    """Live and stopped targets by default; `state=deleted` or `state=all` shows deleted ones;
    `tag=a&tag=b` keeps those carrying both tags."""
    tags = drafts.parse_tags(tag or [])
    return TargetList(items=[TargetOut.of(t) for t in await targets.list(state, tags)])


@writes.post("/targets/pause")
async def pause_by_tag(pool: PoolDep, publisher: PublisherDep, tag: Tags = None) -> ChangedOut:
    """Pause every active target carrying all the given tags."""
    return ChangedOut(changed=await bulk.transition_by_tags(pool, publisher, "pause", tag or []))


@writes.post("/targets/resume")
async def resume_by_tag(pool: PoolDep, publisher: PublisherDep, tag: Tags = None) -> ChangedOut:
    """Resume every paused target carrying all the given tags."""
    return ChangedOut(changed=await bulk.transition_by_tags(pool, publisher, "resume", tag or []))


@reads.get("/targets/{target_id}")
async def get_target(target_id: TargetId, targets: TargetsDep) -> TargetOut:
    return TargetOut.of(await targets.get(target_id))


@writes.patch("/targets/{target_id}")
async def update_target(target_id: TargetId, body: TargetUpdate, targets: TargetsDep) -> TargetOut:
    """Change any field; one left out is kept, `name`, `tags`, `expect_status` and
    `expect_body` are cleared by null. Giving `hostname` replaces `address` and the other
    way round; the result is checked whole, as a new target would be."""
    return TargetOut.of(await targets.update(target_id, body.given()))


@writes.post("/targets/{target_id}/pause")
async def pause_target(target_id: TargetId, targets: TargetsDep) -> TargetOut:
    return TargetOut.of(await targets.pause(target_id))


@writes.post("/targets/{target_id}/resume")
async def resume_target(target_id: TargetId, targets: TargetsDep) -> TargetOut:
    return TargetOut.of(await targets.resume(target_id))


@writes.post("/targets/{target_id}/stop")
async def stop_target(target_id: TargetId, targets: TargetsDep) -> TargetOut:
    """End tracking for good; the history is kept."""
    return TargetOut.of(await targets.stop(target_id))


@writes.delete("/targets/{target_id}")
async def delete_target(
    target_id: TargetId, targets: TargetsDep, purge: bool = False
) -> TargetOut | PurgedOut:
    """Without purge: the target is marked deleted and answered, its history kept.
    With `purge=true`: the target and every ping of it are removed, and the
    answer says how many pings went."""
    if purge:
        return PurgedOut.of(await targets.purge(target_id))
    return TargetOut.of(await targets.delete(target_id))

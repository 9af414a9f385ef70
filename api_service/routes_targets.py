"""/targets: create, list, read, change and end the tracking of addresses."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from api_service.auth import require_admin, require_reader
from api_service.deps import TargetId, TargetsDep
from api_service.schemas import (
    ErrorOut,
    PurgedOut,
    TargetCreate,
    TargetList,
    TargetOut,
    TargetUpdate,
)
from api_service.targets import KEEP

_ERRORS: dict[int | str, dict[str, object]] = {
    code: {"model": ErrorOut} for code in (400, 401, 403, 404, 409, 422, 503)
}
reads = APIRouter(tags=["targets"], dependencies=[Depends(require_reader)], responses=_ERRORS)
writes = APIRouter(tags=["targets"], dependencies=[Depends(require_admin)], responses=_ERRORS)


@writes.post("/targets", status_code=201)
async def create_target(body: TargetCreate, targets: TargetsDep) -> TargetOut:
    target = await targets.create(
        body.address, name=body.name, interval_s=body.interval_s, timeout_s=body.timeout_s
    )
    return TargetOut.of(target)


@reads.get("/targets")
async def list_targets(targets: TargetsDep, state: str | None = None) -> TargetList:
    """Live and stopped targets by default; `state=deleted` or `state=all` shows deleted ones."""
    return TargetList(items=[TargetOut.of(t) for t in await targets.list(state)])


@reads.get("/targets/{target_id}")
async def get_target(target_id: TargetId, targets: TargetsDep) -> TargetOut:
    return TargetOut.of(await targets.get(target_id))


@writes.patch("/targets/{target_id}")
async def update_target(target_id: TargetId, body: TargetUpdate, targets: TargetsDep) -> TargetOut:
    """Change name, interval or timeout; a field left out is kept, `name: null` clears it."""
    given = body.model_fields_set
    target = await targets.update(
        target_id,
        name=body.name if "name" in given else KEEP,
        interval_s=body.interval_s,
        timeout_s=body.timeout_s,
    )
    return TargetOut.of(target)


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

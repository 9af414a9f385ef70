"""One error shape for every failure: {"error": {"code", "message"}}."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from shared.errors import Conflict, InvalidInput, NotFound, PingtrackError

log = logging.getLogger(__name__)

_STATUS: dict[type[PingtrackError], tuple[int, str]] = {
    NotFound: (404, "not_found"),
    InvalidInput: (422, "invalid_input"),
    Conflict: (409, "conflict"),
}
_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    503: "unavailable",
}


class ErrorDetail(BaseModel):
    code: str
    message: str


# The body of every 4xx and 5xx answer, as OpenAPI describes it (a docstring
# here would become its description there).
class ErrorOut(BaseModel):
    error: ErrorDetail


def error_response(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message}}, status_code=status, headers=headers
    )


def describe_validation(errors: Sequence[Any]) -> str:
    """One readable line from pydantic/FastAPI validation errors."""
    parts = []
    for err in errors:
        loc = [str(p) for p in err.get("loc", ()) if p != "body"]
        where = ".".join(loc) or "body"
        if err.get("type") == "extra_forbidden":
            parts.append(f"{where}: unknown field")
        else:
            parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


async def _pingtrack_error(request: Request, exc: Exception) -> JSONResponse:
    for kind, (status, code) in _STATUS.items():
        if isinstance(exc, kind):
            return error_response(status, code, str(exc))
    log.error("unexpected pingtrack error", extra={"path": request.url.path, "error": repr(exc)})
    return error_response(500, "internal", str(exc))


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    bad_json = [e for e in errors if e.get("type") == "json_invalid"]
    if bad_json:
        reason = bad_json[0].get("ctx", {}).get("error", "cannot be decoded")
        return error_response(400, "malformed_json", f"request body is not valid JSON: {reason}")
    return error_response(422, "validation_error", describe_validation(errors))


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, "error")
    return error_response(exc.status_code, code, str(exc.detail), exc.headers)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(PingtrackError, _pingtrack_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)

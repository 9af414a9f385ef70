"""Bearer tokens: the admin token for writes, an optional read token for reads.

Plain random tokens from the environment, not signed tokens (JWT): see
RELIABILITY.md. A token is never logged nor echoed in an error message.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated

from fastapi import Depends, HTTPException
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr

from api_service.deps import SettingsDep

_bearer = HTTPBearer(auto_error=False, description="PINGTRACK_ADMIN_TOKEN (or read token)")
_CHALLENGE = {"WWW-Authenticate": "Bearer"}
BearerDep = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def _matches(given: str, expected: SecretStr | None) -> bool:
    """Constant time: digests of equal length, so not even the token's length leaks."""
    if expected is None:
        return False
    given_digest = hashlib.sha256(given.encode("utf-8", "surrogateescape")).digest()
    expected_digest = hashlib.sha256(expected.get_secret_value().encode()).digest()
    return hmac.compare_digest(given_digest, expected_digest)


def _presented(credentials: HTTPAuthorizationCredentials | None, what: str) -> str:
    if credentials is None:
        raise HTTPException(
            401, f"missing credentials: send 'Authorization: Bearer <{what}>'", _CHALLENGE
        )
    return credentials.credentials


async def require_admin(settings: SettingsDep, credentials: BearerDep) -> None:
    if settings.admin_token is None:
        raise HTTPException(503, "writes are disabled: PINGTRACK_ADMIN_TOKEN is not set")
    token = _presented(credentials, "admin token")
    if not _matches(token, settings.admin_token):
        raise HTTPException(403, "the token is not the admin token")


async def require_reader(settings: SettingsDep, credentials: BearerDep) -> None:
    if settings.read_token is None:
        return
    token = _presented(credentials, "read token")
    if not (_matches(token, settings.read_token) or _matches(token, settings.admin_token)):
        raise HTTPException(403, "the token is neither the read token nor the admin token")

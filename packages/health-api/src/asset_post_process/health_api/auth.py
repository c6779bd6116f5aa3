"""The operator token that guards the routes which change state (replay, purge).

No ``POSTPROCESS_OPERATOR_TOKEN`` configured: those routes are off (404). A request without the right
``Authorization: Bearer <token>`` gets 401. The token is compared in constant time.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from asset_post_process.health_api.resources import Resources, get_resources

bearer = HTTPBearer(auto_error=False, description="The operator token (POSTPROCESS_OPERATOR_TOKEN).")

DISABLED = "operator routes are disabled: POSTPROCESS_OPERATOR_TOKEN is not set"


def token_matches(given: str, expected: str) -> bool:
    """Whether ``given`` equals ``expected``, in time independent of where they differ."""
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected.encode("utf-8", "surrogateescape"))


def require_operator(
    resources: Annotated[Resources, Depends(get_resources)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> None:
    """A FastAPI dependency: pass only requests carrying the configured operator token."""
    configured = resources.settings.operator_token
    if configured is None or not configured.get_secret_value():
        raise HTTPException(status.HTTP_404_NOT_FOUND, DISABLED)
    if credentials is None or not token_matches(credentials.credentials, configured.get_secret_value()):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "a valid operator token is required (Authorization: Bearer <token>)",
            headers={"WWW-Authenticate": "Bearer"},
        )

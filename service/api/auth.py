"""API keys -> tenants.

With no keys configured the service has one tenant, ``default``, and asks for no credentials.
With keys, every request names its key as ``Authorization: Bearer <key>`` (a WebSocket may use
``?token=<key>`` instead, since browsers cannot set headers on one). A tenant only ever sees its
own streams: the tenant is part of every store key and live channel, so another tenant's stream
id is simply not found.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from service.api.errors import ApiError, ErrorCode

DEFAULT_TENANT = "default"

# Declares the scheme in OpenAPI (the /docs "Authorize" button); checking is ours.
bearer_scheme = HTTPBearer(
    auto_error=False,
    description="API key, when the service has keys: `Authorization: Bearer <key>`.",
)


class UnauthorizedError(ApiError):
    def __init__(self, message: str) -> None:
        super().__init__(
            ErrorCode.UNAUTHORIZED, message, headers={"WWW-Authenticate": 'Bearer realm="liquid"'}
        )


class Authenticator:
    """Resolves credentials to a tenant, comparing keys in constant time."""

    def __init__(self, api_keys: Mapping[str, str]) -> None:
        self._keys = [(key.encode(), tenant) for key, tenant in api_keys.items()]

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def tenant_for_key(self, key: str | None) -> str:
        if not self.enabled:
            return DEFAULT_TENANT
        if not key:
            raise UnauthorizedError("an API key is required: send 'Authorization: Bearer <key>'")
        given = key.encode()
        found: str | None = None
        for known, tenant in self._keys:  # no early exit: timing does not tell which key matched
            if hmac.compare_digest(known, given):
                found = tenant
        if found is None:
            raise UnauthorizedError("unknown API key")
        return found

    def tenant_for(self, authorization: str | None, token: str | None = None) -> str:
        """The tenant of an ``Authorization`` header value, else of a ``token`` (WebSocket)."""
        if not self.enabled:
            return DEFAULT_TENANT
        if authorization:
            scheme, _, key = authorization.partition(" ")
            if scheme.lower() != "bearer" or not key.strip():
                raise UnauthorizedError("the Authorization header must be 'Bearer <key>'")
            return self.tenant_for_key(key.strip())
        return self.tenant_for_key(token)


async def require_tenant(
    request: Request,
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> str:
    """FastAPI dependency: the caller's tenant (401 without a valid key when keys are set).

    ``bearer_scheme`` only declares the scheme in OpenAPI; the header is checked here.
    """
    auth: Authenticator = request.app.state.ctx.auth
    return auth.tenant_for(request.headers.get("authorization"))

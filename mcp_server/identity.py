"""Who is calling: the principal every policy check and audit record names.

stdio and in-process servers run under one fixed principal (the person or agent that started
them); the HTTP transport maps bearer tokens to principals.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable, Mapping

from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken

from mcp_server.policy import Principal

IdentityResolver = Callable[[], Principal]


def fixed_identity(principal: Principal) -> IdentityResolver:
    return lambda: principal


class BearerTokens:
    """Static bearer tokens mapped to principals (a ``TokenVerifier`` for the HTTP transport)."""

    def __init__(self, tokens: Mapping[str, Principal]) -> None:
        self._tokens = dict(tokens)

    def principal_for(self, token: str) -> Principal | None:
        for known, principal in self._tokens.items():
            if hmac.compare_digest(known.encode(), token.encode()):
                return principal
        return None

    async def verify_token(self, token: str) -> AccessToken | None:
        principal = self.principal_for(token)
        if principal is None:
            return None
        return AccessToken(
            token=token,
            client_id=principal.id,
            scopes=[f"role:{principal.role}", f"kind:{principal.kind}"],
            expires_at=int(time.time()) + 3600,
        )

    def resolver(self, anonymous: Principal | None = None) -> IdentityResolver:
        """Resolve the principal of the current HTTP request from its verified token."""

        def resolve() -> Principal:
            access = get_access_token()
            if access is not None:
                principal = self.principal_for(access.token)
                if principal is not None:
                    return principal
            if anonymous is not None:
                return anonymous
            raise PermissionError("no authenticated principal for this request")

        return resolve

"""Who is calling: the principal every policy check and audit record names.

stdio and in-process servers run under one fixed principal (the person or agent that started
them); the HTTP transport maps bearer tokens to principals. Tokens are configured as
``{"<token>": "<principal>:<role>[:<kind>]"}`` (``AIOPS_TOKENS``, or a JSON file
``AIOPS_TOKENS_FILE`` for a mounted secret); the kind defaults to ``agent`` for the agent role and
``person`` otherwise.
"""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken
from pydantic import ValidationError

from mcp_server.gate.policy import Principal

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


def parse_principals(raw: Mapping[str, str]) -> dict[str, Principal]:
    """``{"<token>": "<principal>:<role>[:<kind>]"}`` into principals. An invalid entry raises a
    ``ValueError`` that names the principal, never the token."""
    out: dict[str, Principal] = {}
    for token, who in raw.items():
        principal, _, rest = who.partition(":")
        role, _, kind = rest.partition(":")
        role = role or "viewer"
        try:
            out[token] = Principal(
                id=principal,
                role=role,
                kind=kind or ("agent" if role == "agent" else "person"),  # type: ignore[arg-type]
            )
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise ValueError(
                f"token entry for {principal or '(no principal)'!r} is not '<principal>:<role>[:<kind>]' "
                f"with role viewer|operator|admin|agent and kind person|agent|service ({problems})"
            ) from None
        if len(token) < 16:
            raise ValueError(f"the token of {principal!r} is shorter than 16 characters: too easy to guess")
    return out


def load_tokens(inline: Mapping[str, str], file: Path | None = None) -> dict[str, Principal]:
    """Tokens from settings (``AIOPS_TOKENS``) and, when given, a JSON file (``AIOPS_TOKENS_FILE``)."""
    raw = dict(inline)
    if file is not None:
        try:
            loaded = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ValueError(f"cannot read the tokens file {file}: {exc}") from exc
        if not isinstance(loaded, dict) or not all(isinstance(v, str) for v in loaded.values()):
            raise ValueError(f'the tokens file {file} must hold {{"<token>": "<principal>:<role>"}}')
        raw |= loaded
    return parse_principals(raw)

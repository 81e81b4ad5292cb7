"""The Anthropic client as the platform configures it: key, base URL, no hidden retries."""

from __future__ import annotations

from anthropic import AsyncAnthropic

DEFAULT_BASE_URL = "https://api.anthropic.com"


def make_client(api_key: str, base_url: str | None = None, *, max_retries: int = 0) -> AsyncAnthropic:
    """An ``AsyncAnthropic`` for ``api_key``. Retries are off by default: the investigation has its
    own wall-clock limit, and a failed call hands the decision to the rules rather than waiting."""
    return AsyncAnthropic(api_key=api_key, base_url=base_url or DEFAULT_BASE_URL, max_retries=max_retries)

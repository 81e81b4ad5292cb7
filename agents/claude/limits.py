"""Hard limits on one investigation: steps, wall time, tokens and dollars, and the meter that
enforces them. A limit reached ends the investigation; the rules planner then decides."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from pydantic import BaseModel, Field

from events.metrics import CLAUDE_COST, CLAUDE_TOKENS

# US dollars per million tokens (input, output), by model family; cache reads cost a tenth of an
# input token and 5-minute cache writes a quarter more (Anthropic's published pricing, late 2025).
# Unknown families are priced as the dearest, so a limit errs on the side of stopping early.
PRICES_PER_MTOK: dict[str, tuple[float, float]] = {
    "haiku": (1.0, 5.0),
    "sonnet": (3.0, 15.0),
    "opus": (5.0, 25.0),
}
UNKNOWN_PRICE = (15.0, 75.0)
CACHE_READ_FACTOR = 0.1
CACHE_WRITE_FACTOR = 1.25


def price_of(model: str) -> tuple[float, float]:
    """(input, output) dollars per million tokens for ``model``."""
    return next((p for family, p in PRICES_PER_MTOK.items() if family in model), UNKNOWN_PRICE)


class ClaudeLimits(BaseModel):
    """What one incident may spend on Claude. The defaults suit a 3 a.m. page: a minute and a half,
    a handful of look-ups, well under a dollar."""

    max_steps: int = Field(default=8, ge=1, le=50, description="model calls per investigation")
    max_wall_s: float = Field(default=90.0, gt=0, description="whole investigation, queueing included")
    max_tokens: int = Field(default=150_000, ge=1_000, description="input + output tokens, all calls")
    max_cost_usd: float = Field(default=0.50, gt=0)
    max_output_tokens: int = Field(default=2_048, ge=256, le=32_000, description="per model call")
    max_tool_output_chars: int = Field(default=8_000, ge=500, description="a tool result shown to the model")
    usd_per_mtok: tuple[float, float] | None = Field(
        default=None, description="(input, output) price override; None = by model family"
    )


class Usage(BaseModel):
    """Tokens and dollars spent so far (also what the benchmark reports)."""

    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: float = 0.0

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens + self.cache_read_tokens + self.cache_write_tokens


@dataclass
class Meter:
    """Counts one investigation against its limits."""

    limits: ClaudeLimits
    model: str
    usage: Usage = field(default_factory=Usage)
    steps: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self.started

    @property
    def remaining_s(self) -> float:
        return max(0.0, self.limits.max_wall_s - self.elapsed_s)

    def before_call(self) -> str | None:
        """Why the next model call must not be made, or None."""
        if self.steps >= self.limits.max_steps:
            return f"step limit reached ({self.limits.max_steps} model calls)"
        return self._over_budget()

    def charge(
        self, *, input_tokens: int, output_tokens: int, cache_read: int = 0, cache_write: int = 0
    ) -> str | None:
        """Record one call's usage; why the investigation must stop now, or None."""
        self.steps += 1
        price_in, price_out = self.limits.usd_per_mtok or price_of(self.model)
        u = self.usage
        u.calls += 1
        u.input_tokens += input_tokens
        u.output_tokens += output_tokens
        u.cache_read_tokens += cache_read
        u.cache_write_tokens += cache_write
        cost = (
            input_tokens * price_in
            + cache_read * price_in * CACHE_READ_FACTOR
            + cache_write * price_in * CACHE_WRITE_FACTOR
            + output_tokens * price_out
        ) / 1e6
        u.cost_usd += cost
        for kind, n in (
            ("input", input_tokens),
            ("output", output_tokens),
            ("cache_read", cache_read),
            ("cache_write", cache_write),
        ):
            CLAUDE_TOKENS.labels(kind).inc(n)
        CLAUDE_COST.inc(cost)
        return self._over_budget()

    def output_budget(self) -> int:
        """max_tokens for the next call: never more than the token budget has left."""
        left = self.limits.max_tokens - self.usage.tokens
        return max(1, min(self.limits.max_output_tokens, left))

    def _over_budget(self) -> str | None:
        if self.usage.tokens >= self.limits.max_tokens:
            return f"token limit reached ({self.usage.tokens:,} of {self.limits.max_tokens:,})"
        if self.usage.cost_usd >= self.limits.max_cost_usd:
            return f"cost limit reached (${self.usage.cost_usd:.4f} of ${self.limits.max_cost_usd:.2f})"
        return None

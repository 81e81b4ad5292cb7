"""The safety core: the only way a mutation reaches a backend (guard → policy, approvals, breaker, idempotency, safety limits, audit)."""

"""The safety settings of a deployment, as the policy gate's limits.

Observe-only is on by default for any real backend and off for the fleet twin: against a real
cluster the platform first plans and records what it would do, until an operator turns actions on
(``AIOPS_OBSERVE_ONLY=false``).
"""

from __future__ import annotations

from aiops.settings import Settings
from mcp_server.deps import PolicyLimits
from mcp_server.gate.safety import FreezeWindow


def observe_only(settings: Settings) -> bool:
    return settings.observe_only if settings.observe_only is not None else settings.backend != "twin"


def policy_limits(settings: Settings) -> PolicyLimits:
    return PolicyLimits(
        max_isolations_per_hour=settings.max_isolations_per_hour,
        max_out_of_service_pct=settings.max_out_of_service_pct,
        min_spares=settings.min_spares_floor if settings.min_spares == "auto" else settings.min_spares,
        min_spares_auto=settings.min_spares == "auto",
        max_gpu_hours_at_risk=settings.max_gpu_hours_at_risk,
        breaker_window_s=settings.breaker_window_s,
        breaker_threshold_pct=settings.breaker_threshold_pct,
        approval_ttl_s=settings.approval_ttl_s,
        agent_requires_approval=settings.agent_requires_approval,
        observe_only=observe_only(settings),
        freeze_windows=tuple(FreezeWindow(w.start, w.end, w.reason) for w in settings.freeze_windows),
    )

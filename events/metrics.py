"""The platform's own metrics (Prometheus, ``prometheus_client``'s default registry), defined once.

Defined here, at the bottom of the import graph, so any package may count into them (the Claude
meter in ``agents``, the builders in ``aiops``); ``aiops/observability.py`` fills the rest from
the NATS streams and serves them at ``/metrics`` on the HTTP port.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

CONSUMER_PENDING = Gauge(
    "aiops_consumer_pending_messages",
    "JetStream consumer lag: messages not yet delivered",
    ["stream", "consumer"],
)
CONSUMER_ACK_PENDING = Gauge(
    "aiops_consumer_ack_pending_messages",
    "Messages delivered and not yet acknowledged",
    ["stream", "consumer"],
)
CONSUMER_LAST_FETCH_AGE = Gauge(
    "aiops_consumer_last_fetch_age_seconds",
    "Seconds since the consumer last received a message",
    ["stream", "consumer"],
)
INCIDENTS = Gauge("aiops_incidents", "Incidents seen by this process, by current status", ["status"])
INCIDENT_TRANSITIONS = Counter("aiops_incident_transitions_total", "Incident status changes", ["to_status"])
ACTIONS = Counter(
    "aiops_actions_total",
    "Calls of tools that could change something, by tool and gate decision",
    ["tool", "decision"],
)
POLICY_DENIALS = Counter(
    "aiops_policy_denials_total", "Calls the gate denied, by the rule that denied", ["rule"]
)
BREAKER_OPEN = Gauge("aiops_breaker_open", "1 while the circuit breaker is open (tripped)", ["cluster"])
APPROVALS_WAITING = Gauge("aiops_approvals_waiting", "Actions parked until a person approves or rejects them")
PLANNER_SECONDS = Histogram(
    "aiops_planner_seconds",
    "Time to plan one incident, by planner",
    ["planner"],
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
CLAUDE_TOKENS = Counter("aiops_claude_tokens_total", "Claude tokens, by kind", ["kind"])
CLAUDE_COST = Counter("aiops_claude_cost_usd_total", "Claude spend in US dollars (list prices)")
DCGM_EXPORTER_UP = Gauge(
    "aiops_dcgm_exporter_up",
    "1 when the DCGM detector's last read of this dcgm-exporter succeeded, 0 when it failed",
    ["exporter"],
)
DCGM_EXPORTER_FAILURES = Counter(
    "aiops_dcgm_exporter_scrape_failures_total",
    "Reads of a dcgm-exporter that failed (refused, timed out, an HTTP error)",
    ["exporter"],
)

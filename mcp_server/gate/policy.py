"""The policy gate's decision: every mutating MCP tool call is checked here before a backend sees it.

Policies are Cedar (cedarpy), loaded and linted once by ``mcp_server.gate.policy_loader`` (a
broken policy set stops the server from starting).

Every policy carries ``@id("...")`` and ``@reason("...")``. The reason is what a person reads in
the audit trail and in the tool's answer; it may name values of the request with placeholders:
``{action}``, ``{principal.id|role|kind}``, ``{resource.id|type|<attribute>}``,
``{context.<attribute>}`` (an absent value shows as ``?``).

Decisions (``events.incident.Decision``):

- ``allow``: a permit applies and no forbid fires;
- ``deny``: nothing permits (default deny), or a forbid without ``@approval("true")`` fires, or a
  policy could not be evaluated (the gate fails closed);
- ``approval_required``: every forbid that fires is annotated ``@approval("true")`` and a permit
  applies; a person approves and the caller retries with ``context.approved = true``.

Values: Cedar has no floating-point type. Resource attributes and context values are str, int
(a 64-bit Long) or bool; a float with a whole value (``8.0``) becomes an int, any other float is
refused. Express ratios as whole percent or per-mille and durations as whole seconds.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cedarpy
from pydantic import BaseModel, ConfigDict, Field, field_validator

from events.incident import Decision
from mcp_server.gate import policy_loader
from mcp_server.gate.policy_loader import (
    PLACEHOLDER,
    POLICY_DIR,
    SCHEMA_FILE,
    PolicyError,
    PolicyInfo,
)

__all__ = [
    "POLICY_DIR",
    "SCHEMA_FILE",
    "CedarValue",
    "PolicyDecision",
    "PolicyError",
    "PolicyGate",
    "PolicyInfo",
    "Principal",
    "Resource",
]

NAMESPACE = "Aiops"
DEFAULT_DENY = "default-deny"
"""The rule a denial names when no policy permits the call (Cedar's default deny)."""
ROLES_SOURCE = "roles.cedar"
"""The file of the rules on who may call what: when one of them denies, it is the rule named."""

CedarValue = str | int | bool

_LONG_MIN, _LONG_MAX = -(2**63), 2**63 - 1
_EVAL_ERROR = re.compile(r"error while evaluating policy `([^`]*)`: (.*)", re.S)


class Principal(BaseModel):
    """The authenticated caller of a tool."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1)
    role: Literal["viewer", "operator", "admin", "agent"]
    kind: Literal["person", "agent", "service"] = "person"


def _cedar_value(name: str, value: object) -> CedarValue:
    """The value as Cedar can hold it (see the module docstring on numbers)."""
    if isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        if not _LONG_MIN <= value <= _LONG_MAX:
            raise ValueError(f"{name}={value} does not fit Cedar's 64-bit Long")
        return value
    if isinstance(value, float):
        if value.is_integer():
            return _cedar_value(name, int(value))
        raise ValueError(
            f"{name}={value!r}: Cedar has no floating-point type; pass a whole number "
            "(a Long: percent, per-mille, seconds)"
        )
    raise ValueError(f"{name}: {type(value).__name__} is not a Cedar value here (use str, int or bool)")


class Resource(BaseModel):
    """What a tool acts on. ``attrs`` must match the entity type in ``schema.cedarschema``
    (e.g. a Node needs ``cluster``; a Gpu needs ``node`` and ``index``; a Cluster has none)."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["Node", "Gpu", "Job", "Cluster"]
    id: str = Field(min_length=1)
    attrs: dict[str, str | int | bool | float] = Field(default_factory=dict)

    @field_validator("attrs")
    @classmethod
    def _no_floats(cls, attrs: dict[str, str | int | bool | float]) -> dict[str, str | int | bool | float]:
        return {key: _cedar_value(key, value) for key, value in attrs.items()}


class PolicyDecision(BaseModel):
    """The gate's answer. ``reasons`` are human readable (the ``@reason`` of the policies that
    determined the decision, or why nothing permits); ``policies`` are their ``@id`` values."""

    decision: Decision
    reasons: list[str] = Field(default_factory=list)
    policies: list[str] = Field(default_factory=list)

    @property
    def allowed(self) -> bool:
        return self.decision == "allow"


class PolicyGate:
    """Checks tool calls against a pre-parsed, schema-validated Cedar policy set.

    Immutable after construction, so one gate serves every request (and thread) of a server.
    """

    def __init__(self, policies: Mapping[str, str], schema: str, *, schema_source: str = "schema") -> None:
        """``policies`` maps a source name (a file name) to Cedar policy text; ``schema`` is the
        Cedar schema in human-readable form. Raises ``PolicyError`` listing every problem."""
        loaded = policy_loader.load(policies, schema, schema_source=schema_source)
        self._schema = loaded.schema
        self.actions: frozenset[str] = loaded.actions
        self.policies: Mapping[str, PolicyInfo] = loaded.policies
        self._all = loaded.all
        self._without_approval = loaded.without_approval

    @classmethod
    def from_directory(cls, path: Path | None = None, *, schema: Path | None = None) -> PolicyGate:
        """Load every ``*.cedar`` file of ``path`` (default: the bundled policies), in file-name
        order, validated against ``schema`` (default: the bundled ``schema.cedarschema``)."""
        directory = POLICY_DIR if path is None else Path(path)
        sources, schema_text, schema_source = policy_loader.read_directory(path, schema=schema)
        try:
            return cls(sources, schema_text, schema_source=schema_source)
        except PolicyError as exc:
            raise PolicyError(f"{directory}: {exc}") from exc

    def check(
        self,
        principal: Principal,
        action: str,
        resource: Resource,
        context: Mapping[str, CedarValue] | None = None,
    ) -> PolicyDecision:
        """Decide whether ``principal`` may call tool ``action`` on ``resource`` in ``context``.

        Raises ``PolicyError`` for an unknown action, or a resource or context that does not fit
        the schema (a caller bug); otherwise it answers, failing closed on evaluation errors.
        """
        if action not in self.actions:
            raise PolicyError(
                f"unknown action {action!r}; the policy schema knows {', '.join(sorted(self.actions))}"
            )
        try:
            ctx = {key: _cedar_value(f"context.{key}", value) for key, value in (context or {}).items()}
        except ValueError as exc:
            raise PolicyError(f"cannot check {action}: {exc}") from exc
        entities_json = json.dumps(
            [
                {
                    "uid": {"type": f"{NAMESPACE}::Principal", "id": principal.id},
                    "attrs": {"role": principal.role, "kind": principal.kind},
                    "parents": [],
                },
                {
                    "uid": {"type": f"{NAMESPACE}::{resource.type}", "id": resource.id},
                    "attrs": resource.attrs,
                    "parents": [],
                },
            ]
        )
        request = {
            "principal": {"type": f"{NAMESPACE}::Principal", "id": principal.id},
            "action": {"type": f"{NAMESPACE}::Action", "id": action},
            "resource": {"type": f"{NAMESPACE}::{resource.type}", "id": resource.id},
            "context": ctx,
        }
        try:  # parsed and checked against the schema once, shared by both evaluations below
            entities = cedarpy.Entities.from_json_str(entities_json, self._schema)
        except ValueError as exc:
            # The handle's message is terse ("entity does not conform to the schema"); the same
            # entities passed as text make Cedar say which attribute is wrong.
            verbose = cedarpy.is_authorized(request, self._all, entities_json, schema=self._schema)
            problems = [e.replace(f" from:\n{entities_json}", "") for e in verbose.diagnostics.errors]
            raise PolicyError(
                f"cannot check {action} on {resource.type} {resource.id!r}: {'; '.join(problems) or exc}"
            ) from exc
        call = _Call(principal, action, resource, ctx)

        result = cedarpy.is_authorized(request, self._all, entities, schema=self._schema)
        if result.decision == cedarpy.Decision.NoDecision:
            errors = "; ".join(result.diagnostics.errors)
            raise PolicyError(f"cannot check {action} on {resource.type} {resource.id!r}: {errors}")
        if result.diagnostics.errors:
            return self._evaluation_failed(result.diagnostics.errors)
        determining = list(result.diagnostics.reasons)
        if result.allowed:
            return self._decision("allow", determining, call)
        if not determining:
            return self._nothing_permits(call)
        hard = [pid for pid in determining if not self.policies[pid].approval]
        # Who may call it decides first: a viewer is told the role rule, not a breaker's.
        hard.sort(key=lambda pid: Path(self.policies[pid].source).name != ROLES_SOURCE)
        if hard:
            return self._decision("deny", hard, call)
        # Only approval rules fired: it needs approval if, without them, a permit applies.
        unblocked = cedarpy.is_authorized(request, self._without_approval, entities, schema=self._schema)
        if unblocked.diagnostics.errors:
            return self._evaluation_failed(unblocked.diagnostics.errors)
        if unblocked.allowed:
            return self._decision("approval_required", determining, call)
        return self._nothing_permits(call)

    # -- answers ------------------------------------------------------------------------------

    def _decision(self, decision: Decision, policy_ids: list[str], call: _Call) -> PolicyDecision:
        return PolicyDecision(
            decision=decision,
            reasons=[call.render(self.policies[pid].reason) for pid in policy_ids],
            policies=policy_ids,
        )

    @staticmethod
    def _nothing_permits(call: _Call) -> PolicyDecision:
        reason = f"no policy permits role '{call.principal.role}' to call {call.action}"
        return PolicyDecision(decision="deny", reasons=[reason], policies=[DEFAULT_DENY])

    @staticmethod
    def _evaluation_failed(errors: list[str]) -> PolicyDecision:
        reasons: list[str] = []
        policies: list[str] = []
        for error in errors:
            match = _EVAL_ERROR.match(error)
            if match:
                policies.append(match.group(1))
                reasons.append(
                    f"policy '{match.group(1)}' could not be evaluated ({match.group(2)}); "
                    "the gate denies when a policy cannot be evaluated"
                )
            else:
                reasons.append(f"the request could not be evaluated ({error}); the gate denies")
        return PolicyDecision(decision="deny", reasons=reasons, policies=policies)


@dataclass(frozen=True)
class _Call:
    principal: Principal
    action: str
    resource: Resource
    context: Mapping[str, CedarValue]

    def render(self, template: str) -> str:
        return PLACEHOLDER.sub(lambda m: self._value(m.group(1)), template)

    def _value(self, placeholder: str) -> str:
        if placeholder == "action":
            return self.action
        scope, _, name = placeholder.partition(".")
        value: object = None
        if scope == "principal":
            value = getattr(self.principal, name, None)
        elif scope == "resource":
            value = {"id": self.resource.id, "type": self.resource.type}.get(
                name, self.resource.attrs.get(name)
            )
        elif scope == "context":
            value = self.context.get(name)
        if value is None:
            return "?"
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)

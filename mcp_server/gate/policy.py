"""The policy gate: every mutating MCP tool call is checked here before a backend sees it.

Policies are Cedar (cedarpy), loaded once from ``policies/*.cedar`` and validated against
``schema.cedarschema`` at load, so a typo (an unknown context attribute, an unknown action) stops
the server from starting instead of silently never matching.

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

cedarpy names the policies of a text by position (``policy0``, ``policy1``, ...), not by their
``@id``. The gate therefore converts each file to Cedar's JSON form, where Cedar's own parser
hands over each policy with its annotations, re-keys every policy by its ``@id`` and builds one
policy set from that JSON. Cedar then reports the ``@id`` values themselves as the determining
policies: no positional bookkeeping, no hand-written annotation parsing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

import cedarpy
from pydantic import BaseModel, ConfigDict, Field, field_validator

from events.incident import Decision

NAMESPACE = "Aiops"
POLICY_DIR = Path(__file__).with_name("policies")
SCHEMA_FILE = Path(__file__).with_name("schema.cedarschema")

CedarValue = str | int | bool

_LONG_MIN, _LONG_MAX = -(2**63), 2**63 - 1
# In the schema as cedarpy renders it back: one declaration per action, name always quoted.
_ACTION_DECL = re.compile(r'^\s*action\s+"((?:[^"\\]|\\.)*)"(?:\s+in\s+\[[^\]]*\])?\s+appliesTo\b', re.M)
_ATTR_DECL = re.compile(r'^\s*"?([A-Za-z_][A-Za-z0-9_]*)"?\??\s*:', re.M)
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_EVAL_ERROR = re.compile(r"error while evaluating policy `([^`]*)`: (.*)", re.S)
_VALIDATION_PREFIX = re.compile(r"^for policy `[^`]*`, ")
_PRINCIPAL_FIELDS = frozenset({"id", "role", "kind"})


class PolicyError(Exception):
    """The policies or the schema are broken, or a check was asked something the schema does not
    know (an unknown action, a resource or context that does not fit the schema)."""


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


@dataclass(frozen=True)
class PolicyInfo:
    """One loaded policy: its ``@id``, effect, ``@reason`` template, whether it is an
    approval rule (``@approval("true")``, forbids only) and the file it came from."""

    id: str
    effect: Literal["permit", "forbid"]
    reason: str
    approval: bool
    source: str


class PolicyGate:
    """Checks tool calls against a pre-parsed, schema-validated Cedar policy set.

    Immutable after construction, so one gate serves every request (and thread) of a server.
    """

    def __init__(self, policies: Mapping[str, str], schema: str, *, schema_source: str = "schema") -> None:
        """``policies`` maps a source name (a file name) to Cedar policy text; ``schema`` is the
        Cedar schema in human-readable form. Raises ``PolicyError`` listing every problem."""
        try:
            self._schema = cedarpy.Schema.from_str(schema)
        except ValueError as exc:
            raise PolicyError(f"{schema_source}: not a valid Cedar schema: {exc}") from exc
        rendered = str(self._schema)
        self.actions: frozenset[str] = frozenset(_ACTION_DECL.findall(rendered))
        if not self.actions:
            raise PolicyError(f"{schema_source}: the schema declares no action that applies to anything")
        # Attribute names the schema declares on any entity or record type (the lines of the
        # appliesTo blocks match the pattern too: drop their three keys).
        self._declared_attrs = frozenset(_ATTR_DECL.findall(rendered)) - {"principal", "resource", "context"}

        errors: list[str] = []
        infos: dict[str, PolicyInfo] = {}
        est: dict[str, Any] = {}
        for source, text in policies.items():
            for info, policy in self._load_source(source, text, errors):
                if info.id in infos:
                    errors.append(f"{source}: @id {info.id!r} is already used in {infos[info.id].source}")
                    continue
                infos[info.id] = info
                est[info.id] = policy
        if not errors and not infos:
            errors.append("no policies: every mutating tool would be denied")
        if errors:
            raise PolicyError("the policies cannot be loaded:\n  " + "\n  ".join(errors))

        self.policies: Mapping[str, PolicyInfo] = MappingProxyType(infos)
        self._all = _policy_set(est)
        self._without_approval = _policy_set({pid: p for pid, p in est.items() if not infos[pid].approval})

    @classmethod
    def from_directory(cls, path: Path | None = None, *, schema: Path | None = None) -> PolicyGate:
        """Load every ``*.cedar`` file of ``path`` (default: the bundled policies), in file-name
        order, validated against ``schema`` (default: the bundled ``schema.cedarschema``)."""
        directory = POLICY_DIR if path is None else Path(path)
        schema_path = SCHEMA_FILE if schema is None else Path(schema)
        if not directory.is_dir():
            raise PolicyError(f"policy directory {directory} does not exist")
        files = sorted(directory.glob("*.cedar"))
        if not files:
            raise PolicyError(f"policy directory {directory} holds no *.cedar file")
        try:
            schema_text = schema_path.read_text(encoding="utf-8")
        except OSError as exc:
            raise PolicyError(f"cannot read the Cedar schema {schema_path}: {exc}") from exc
        sources = {str(file.relative_to(directory)): file.read_text(encoding="utf-8") for file in files}
        try:
            return cls(sources, schema_text, schema_source=str(schema_path))
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
        return PolicyDecision(decision="deny", reasons=[reason], policies=[])

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

    # -- loading ------------------------------------------------------------------------------

    def _load_source(self, source: str, text: str, errors: list[str]) -> Iterator[tuple[PolicyInfo, Any]]:
        try:
            parsed = json.loads(cedarpy.policies_to_json_str(text))
        except ValueError as exc:
            errors.append(f"{source}: Cedar syntax error{_locate_syntax_error(text)}: {exc}")
            return
        if parsed.get("templates"):
            errors.append(f"{source}: templates (?principal / ?resource slots) are not supported by the gate")
        validation = cedarpy.validate_policies(text, self._schema)
        if not validation.validation_passed:
            names = validation.id_annotations_by_policy_id
            for error in validation.errors:
                name = names.get(error.policy_id) or error.policy_id
                errors.append(
                    f"{source}: policy {name!r} does not match the schema: "
                    f"{_VALIDATION_PREFIX.sub('', error.error)}"
                )
        static: dict[str, Any] = parsed.get("staticPolicies", {})
        for position, (_, policy) in enumerate(sorted(static.items(), key=lambda kv: _position(kv[0])), 1):
            info = self._policy_info(source, position, policy, errors)
            if info is not None:
                yield info, policy

    def _policy_info(self, source: str, position: int, policy: Any, errors: list[str]) -> PolicyInfo | None:
        effect = policy["effect"]
        annotations: dict[str, str | None] = policy.get("annotations", {})
        pid = annotations.get("id")
        if not pid:
            errors.append(f'{source}: policy #{position} ({effect}) has no @id("...") annotation')
            return None
        reason = annotations.get("reason")
        if not reason:
            errors.append(f'{source}: policy {pid!r} has no @reason("...") annotation')
            return None
        approval = annotations.get("approval", "false")
        if approval not in ("true", "false"):
            errors.append(f'{source}: policy {pid!r}: @approval must be "true" or "false", not {approval!r}')
            return None
        if approval == "true" and effect != "forbid":
            errors.append(f'{source}: policy {pid!r}: @approval("true") only makes sense on a forbid')
            return None
        # A `has` test on an attribute the (closed) schema does not declare is typed "always
        # false", so Cedar's validator accepts `context has typo && context.typo > 3`: a policy that
        # silently never applies. Refuse any such name here.
        for scope, name in sorted(set(_attribute_refs(policy.get("conditions", [])))):
            if name not in self._declared_attrs:
                errors.append(
                    f"{source}: policy {pid!r} refers to {scope}.{name}, which the schema does not declare "
                    f"(a `has` test on it is always false, so the policy would silently never apply)"
                )
        for placeholder in _PLACEHOLDER.findall(reason):
            if not self._known_placeholder(placeholder):
                errors.append(
                    f"{source}: policy {pid!r}: @reason refers to {{{placeholder}}}; known are {{action}}, "
                    "{principal.id|role|kind}, {resource.id|type|<attribute>}, {context.<attribute>} "
                    "with attributes the schema declares"
                )
        return PolicyInfo(id=pid, effect=effect, reason=reason, approval=approval == "true", source=source)

    def _known_placeholder(self, placeholder: str) -> bool:
        if placeholder == "action":
            return True
        scope, _, name = placeholder.partition(".")
        if scope == "principal":
            return name in _PRINCIPAL_FIELDS
        if scope == "resource":
            return name in ("id", "type") or name in self._declared_attrs
        return scope == "context" and name in self._declared_attrs


@dataclass(frozen=True)
class _Call:
    principal: Principal
    action: str
    resource: Resource
    context: Mapping[str, CedarValue]

    def render(self, template: str) -> str:
        return _PLACEHOLDER.sub(lambda m: self._value(m.group(1)), template)

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


def _policy_set(static: dict[str, Any]) -> Any:
    return cedarpy.PolicySet.from_json_str(
        json.dumps({"staticPolicies": static, "templates": {}, "templateLinks": []})
    )


def _attribute_refs(node: Any) -> Iterator[tuple[str, str]]:
    """``(variable, attribute)`` for every ``principal.x``, ``resource has x``, ``context.x``, ...
    in a policy's conditions (Cedar's JSON form)."""
    if isinstance(node, list):
        for item in node:
            yield from _attribute_refs(item)
    elif isinstance(node, dict):
        for key, value in node.items():
            if key == "Value":
                continue
            if key in (".", "has") and isinstance(value, dict):
                left = value.get("left")
                if isinstance(left, dict) and left.get("Var") in ("principal", "resource", "context"):
                    yield left["Var"], value["attr"]
            yield from _attribute_refs(value)


def _position(positional_id: str) -> int:
    """``policy12`` -> 12 (cedarpy's positional ids), so policies keep their file order."""
    digits = positional_id.removeprefix("policy")
    return int(digits) if digits.isdigit() else 0


def _statements(text: str) -> Iterator[tuple[int, str]]:
    """Top-level ``;``-terminated statements of a policy text with their first line number,
    skipping strings and ``//`` comments."""
    start, i, in_string, in_comment = 0, 0, False, False
    while i < len(text):
        char = text[i]
        if in_comment:
            in_comment = char != "\n"
        elif in_string:
            if char == "\\":
                i += 1
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif text.startswith("//", i):
            in_comment = True
        elif char == ";":
            yield text.count("\n", 0, start) + 1, text[start : i + 1]
            start = i + 1
        i += 1
    yield text.count("\n", 0, start) + 1, text[start:]


def _locate_syntax_error(text: str) -> str:
    """`` in the policy starting at line N (@id "x")`` for the first statement that does not
    parse, because Cedar's parse errors carry no position."""
    for line, statement in _statements(text):
        code = [n for n, ln in enumerate(statement.split("\n")) if ln.split("//", 1)[0].strip()]
        if not code:
            continue
        try:
            cedarpy.policies_to_json_str(statement)
        except ValueError:
            line += code[0]
            named = re.search(r'@id\s*\(\s*"((?:[^"\\]|\\.)*)"', statement)
            return f" in the policy starting at line {line}" + (f" (@id {named.group(1)!r})" if named else "")
    return ""

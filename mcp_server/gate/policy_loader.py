"""Loading the policy gate's Cedar policies, and the linter that refuses a broken set at load.

Policies are Cedar files (``policies/*.cedar``) validated against ``schema.cedarschema``: a typo (an
unknown context attribute, an unknown action) stops the server from starting instead of silently
never matching. Beyond Cedar's own validation, the linter here requires every policy to carry
``@id("...")`` and ``@reason("...")``, an ``@approval`` only on forbids, ``@reason`` placeholders
the schema can fill, and no ``has`` test on an attribute the schema does not declare.

cedarpy names the policies of a text by position (``policy0``, ``policy1``, ...), not by their
``@id``. Each file is therefore converted to Cedar's JSON form, where Cedar's own parser hands over
each policy with its annotations, re-keyed by its ``@id``, and built into one policy set: Cedar then
reports the ``@id`` values themselves as the determining policies.

The decision itself is ``mcp_server.gate.policy``.
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

POLICY_DIR = Path(__file__).with_name("policies")
SCHEMA_FILE = Path(__file__).with_name("schema.cedarschema")

# In the schema as cedarpy renders it back: one declaration per action, name always quoted.
_ACTION_DECL = re.compile(r'^\s*action\s+"((?:[^"\\]|\\.)*)"(?:\s+in\s+\[[^\]]*\])?\s+appliesTo\b', re.M)
_ATTR_DECL = re.compile(r'^\s*"?([A-Za-z_][A-Za-z0-9_]*)"?\??\s*:', re.M)
PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_VALIDATION_PREFIX = re.compile(r"^for policy `[^`]*`, ")
_PRINCIPAL_FIELDS = frozenset({"id", "role", "kind"})


class PolicyError(Exception):
    """The policies or the schema are broken, or a check was asked something the schema does not
    know (an unknown action, a resource or context that does not fit the schema)."""


@dataclass(frozen=True)
class PolicyInfo:
    """One loaded policy: its ``@id``, effect, ``@reason`` template, whether it is an
    approval rule (``@approval("true")``, forbids only) and the file it came from."""

    id: str
    effect: Literal["permit", "forbid"]
    reason: str
    approval: bool
    source: str


@dataclass(frozen=True)
class LoadedPolicies:
    """A schema-validated, linted policy set, ready for decisions."""

    schema: Any  # cedarpy.Schema
    actions: frozenset[str]
    policies: Mapping[str, PolicyInfo]
    all: Any  # cedarpy.PolicySet of every policy
    without_approval: Any  # ... of every policy but the approval rules


def load(policies: Mapping[str, str], schema: str, *, schema_source: str = "schema") -> LoadedPolicies:
    """``policies`` maps a source name (a file name) to Cedar policy text; ``schema`` is the Cedar
    schema in human-readable form. Raises ``PolicyError`` listing every problem."""
    try:
        parsed_schema = cedarpy.Schema.from_str(schema)
    except ValueError as exc:
        raise PolicyError(f"{schema_source}: not a valid Cedar schema: {exc}") from exc
    rendered = str(parsed_schema)
    actions = frozenset(_ACTION_DECL.findall(rendered))
    if not actions:
        raise PolicyError(f"{schema_source}: the schema declares no action that applies to anything")
    # Attribute names the schema declares on any entity or record type (the lines of the
    # appliesTo blocks match the pattern too: drop their three keys).
    linter = _Linter(
        parsed_schema, frozenset(_ATTR_DECL.findall(rendered)) - {"principal", "resource", "context"}
    )

    errors: list[str] = []
    infos: dict[str, PolicyInfo] = {}
    est: dict[str, Any] = {}
    for source, text in policies.items():
        for info, policy in linter.load_source(source, text, errors):
            if info.id in infos:
                errors.append(f"{source}: @id {info.id!r} is already used in {infos[info.id].source}")
                continue
            infos[info.id] = info
            est[info.id] = policy
    if not errors and not infos:
        errors.append("no policies: every mutating tool would be denied")
    if errors:
        raise PolicyError("the policies cannot be loaded:\n  " + "\n  ".join(errors))
    return LoadedPolicies(
        schema=parsed_schema,
        actions=actions,
        policies=MappingProxyType(infos),
        all=_policy_set(est),
        without_approval=_policy_set({pid: p for pid, p in est.items() if not infos[pid].approval}),
    )


def read_directory(
    path: Path | None = None, *, schema: Path | None = None
) -> tuple[dict[str, str], str, str]:
    """Every ``*.cedar`` file of ``path`` (default: the bundled policies) in file-name order, and the
    schema's text and name (default: the bundled ``schema.cedarschema``)."""
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
    return sources, schema_text, str(schema_path)


class _Linter:
    """Checks each policy of a source against the schema and the gate's own rules."""

    def __init__(self, schema: Any, declared_attrs: frozenset[str]) -> None:
        self._schema = schema
        self._declared_attrs = declared_attrs

    def load_source(self, source: str, text: str, errors: list[str]) -> Iterator[tuple[PolicyInfo, Any]]:
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
        for placeholder in PLACEHOLDER.findall(reason):
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

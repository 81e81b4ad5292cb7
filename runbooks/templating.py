"""Argument templates: ``{{ dotted.path }}`` look-ups into the run's context, nothing else.

A string that is exactly one template takes the looked-up value with its type (an int stays an int);
a template inside a longer string is substituted as text. There is no expression language, so log
text that ends up in a context can never execute anything.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

_TEMPLATE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_-]+)*)\s*\}\}")
_MISSING = object()


class TemplateError(ValueError):
    pass


def lookup(context: Any, path: str) -> Any:
    """Follow a dotted path through mappings, sequences (numeric parts) and attributes."""
    current = context
    if not path:
        return current
    for part in path.split("."):
        if isinstance(current, Mapping):
            current = current.get(part, _MISSING)
        elif isinstance(current, Sequence) and not isinstance(current, str) and part.lstrip("-").isdigit():
            idx = int(part)
            current = current[idx] if -len(current) <= idx < len(current) else _MISSING
        else:
            current = _MISSING
        if current is _MISSING:
            raise TemplateError(f"{path!r} is not in the run context (stopped at {part!r})")
    return current


def render(value: Any, context: Mapping[str, Any]) -> Any:
    """Render templates in a value (strings, lists and dicts, recursively)."""
    if isinstance(value, str):
        whole = _TEMPLATE.fullmatch(value.strip())
        if whole:
            return lookup(context, whole.group(1))
        return _TEMPLATE.sub(lambda m: str(lookup(context, m.group(1))), value)
    if isinstance(value, list):
        return [render(v, context) for v in value]
    if isinstance(value, dict):
        return {k: render(v, context) for k, v in value.items()}
    return value

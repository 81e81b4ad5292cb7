"""The gpu-aiops conventions inside Slurm's node and job fields (README "Run on a Slurm cluster"):

- a node's ``Extra`` holds JSON the site or node agent writes: ``gpus`` (``[{index, uuid,
  pci_bus_id}]``, NVML's inventory), ``gpu_health`` (``{"<index>": "fallen_off_bus" | "error"}``),
  ``last_xid`` (``{"<index>": 79}``), ``rack``, ``leaf_switch``;
- a node's ``Comment`` carries this platform's record after the marker ``gpu-aiops:`` (JSON:
  ``isolated`` GPUs with reason, actor, time and mode, ``gres`` count before a reduction); text
  before the marker belongs to the site and is kept;
- a drain whose reason starts with ``gpu-aiops:`` is this platform's; any other drain is not;
- a job's ``Comment`` carries the training loop's facts after ``gpu-aiops:`` as ``key=value``
  words: ``step``, ``step_time_s``, ``baseline_step_s``, ``checkpoint_step``, ``checkpoint_at``
  (ISO 8601 or Unix seconds), ``checkpoint_interval_s``, ``gpu_hours_lost``.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

MARK = "gpu-aiops:"
"""Prefix of every drain reason, and marker of the record in a node's or job's comment."""

Json = dict[str, Any]


class ParseError(ValueError):
    """Slurm answered something this parser cannot read (a version with other shapes?)."""


# -- comments --------------------------------------------------------------------------------------


def split_comment(comment: str | None) -> tuple[str, str]:
    """(the site's text, this platform's record after ``gpu-aiops:``)."""
    text = comment or ""
    at = text.find(MARK)
    if at < 0:
        return text, ""
    return text[:at].rstrip(" |"), text[at + len(MARK) :].strip()


def node_record(comment: str | None) -> Json:
    _, ours = split_comment(comment)
    if not ours:
        return {}
    try:
        record = json.loads(ours)
    except ValueError as exc:
        raise ParseError(f"the gpu-aiops record in the node comment is not JSON: {ours[:80]!r}") from exc
    return record if isinstance(record, dict) else {}


def with_node_record(comment: str | None, record: Json) -> str:
    site, _ = split_comment(comment)
    if not record:
        return site
    ours = MARK + json.dumps(record, sort_keys=True, separators=(",", ":"))
    return f"{site} | {ours}" if site else ours


def job_facts(comment: str | None) -> dict[str, str]:
    """``gpu-aiops: step=1200 checkpoint_step=1000`` -> {"step": "1200", ...}."""
    _, ours = split_comment(comment)
    facts = {}
    for word in ours.split():
        key, eq, value = word.partition("=")
        if eq:
            facts[key] = value
    return facts


def fact_float(facts: dict[str, str], key: str) -> float | None:
    try:
        return float(facts[key])
    except (KeyError, ValueError):
        return None


def fact_time(facts: dict[str, str], key: str) -> datetime | None:
    value = facts.get(key)
    if not value:
        return None
    try:
        return datetime.fromtimestamp(float(value), UTC)
    except ValueError:
        pass
    try:
        at = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def drain_owner(reason: str | None) -> str | None:
    """``gpu-aiops: <why> [by <actor>]`` -> ``gpu-aiops/<actor>``; None for any other reason."""
    if not reason or not reason.startswith(MARK):
        return None
    match = re.search(r"\[by ([^\]]+)\]", reason)
    return f"gpu-aiops/{match.group(1) if match else 'unknown'}"


def drain_reason(reason: str, actor: str) -> str:
    """The reason this platform sets: its prefix is the ownership mark."""
    one_line = " ".join(reason.split())[:400]
    return f"{MARK} {one_line} [by {actor}]"

"""The ``/gpu`` command language: parse the text after the slash command into a command, or
explain what was wrong with a usage line. Never raises anything but ``UsageError``."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field


class UsageError(ValueError):
    """The text is not a valid command; the message is the reply to show."""


@dataclass(frozen=True)
class Spec:
    name: str
    args: tuple[str, ...]
    summary: str
    rest: bool = False  # the last argument takes the remaining words (key=value pairs)
    flags: tuple[str, ...] = ()

    @property
    def usage(self) -> str:
        words = [f"<{a}>" for a in self.args]
        if self.rest:
            words.append("[key=value ...]")
        words += [f"[{f}]" for f in self.flags]
        return " ".join(["/gpu", self.name, *words])


SPECS: dict[str, Spec] = {
    s.name: s
    for s in (
        Spec("status", (), "fleet health at a glance"),
        Spec(
            "incidents",
            (),
            "open incidents, newest first (--all: mitigated and resolved too)",
            flags=("--all",),
        ),
        Spec("incident", ("id",), "one incident: root cause, plan, actions, timeline"),
        Spec("node", ("name",), "one node: GPUs, jobs, cordon"),
        Spec("triage", ("node",), "what is wrong with a node and what to do about it"),
        Spec("approve", ("action",), "approve an action that waits for approval"),
        Spec("reject", ("action",), "reject an action that waits for approval"),
        Spec("isolate", ("node", "gpu"), "take one GPU out of service"),
        Spec(
            "runbook", ("name",), "run a runbook (or plan it with --dry-run)", rest=True, flags=("--dry-run",)
        ),
        Spec("help", (), "this list"),
    )
}


@dataclass(frozen=True)
class Command:
    name: str
    args: dict[str, str]
    params: dict[str, str] = field(default_factory=dict)
    flags: frozenset[str] = frozenset()

    @property
    def text(self) -> str:
        words = [
            self.name,
            *self.args.values(),
            *(f"{k}={v}" for k, v in self.params.items()),
            *sorted(self.flags),
        ]
        return "/gpu " + " ".join(words)


def usage() -> str:
    width = max(len(s.usage) for s in SPECS.values())
    return "\n".join(f"{s.usage.ljust(width)}  {s.summary}" for s in SPECS.values())


def parse(text: str) -> Command:
    """``"isolate node-003 3"`` → Command(name="isolate", args={"node": "node-003", "gpu": "3"})."""
    if len(text) > 2000:
        raise UsageError("That command is too long.")
    try:
        words = shlex.split(text.strip())
    except ValueError as exc:
        raise UsageError(f"I could not read that command ({exc}). Try `/gpu help`.") from None
    if words and words[0] in ("/gpu", "gpu"):  # typed in a terminal, the slash is easy to leave out
        words = words[1:]
    if not words:
        return Command("help", {})
    name, rest = words[0].lower(), words[1:]
    spec = SPECS.get(name)
    if spec is None:
        raise UsageError(f"`/gpu {name}` is not a command I know.\n\n{usage()}")
    flags = frozenset(w for w in rest if w.startswith("--"))
    unknown = flags - set(spec.flags)
    if unknown:
        raise UsageError(f"`{spec.name}` has no option {', '.join(sorted(unknown))}.\nUsage: `{spec.usage}`")
    positional = [w for w in rest if not w.startswith("--")]
    if len(positional) < len(spec.args) or (len(positional) > len(spec.args) and not spec.rest):
        raise UsageError(f"Usage: `{spec.usage}` — {spec.summary}.")
    args = dict(zip(spec.args, positional, strict=False))
    params: dict[str, str] = {}
    for word in positional[len(spec.args) :]:
        key, sep, value = word.partition("=")
        if not sep or not key:
            raise UsageError(f"Runbook parameters are key=value, got `{word}`.\nUsage: `{spec.usage}`")
        params[key] = value
    if spec.name == "isolate" and not args["gpu"].isdigit():
        raise UsageError(
            f"The GPU is its index on the node (0-7), got `{args['gpu']}`.\nUsage: `{spec.usage}`"
        )
    return Command(spec.name, args, params, flags)

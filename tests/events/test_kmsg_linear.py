"""Every pattern run on untrusted input is linear in the input's length — checked by shape, not time.

Python's ``re`` backtracks; it goes quadratic (or worse) when two unbounded repeats next to each
other (only optional items between them) can match the same character and something after them can
still fail: on a long run of that character every split between the two repeats is tried. That is
how ``name=([^,]*?)\\s*(?:,\\s*|$)`` took 5.5 s on 16,000 spaces. A pattern used with ``search`` is
tried at every start: it stays linear when it starts with a literal that none of its unbounded
repeats can match (each start then scans a stretch no other start scans).

The check reads the compiled patterns' parse trees (``re._parser``); the first tests show it flags
the two quadratic patterns the parser used to have.
"""

from __future__ import annotations

import inspect
import re
from re import _constants as C  # type: ignore[attr-defined]
from re import _parser as P  # type: ignore[attr-defined]
from typing import Any

import pytest

from events import kmsg_formats, kmsg_parser, kmsg_prefix
from events.detectors import exposition

SAMPLE = [chr(c) for c in range(128)] + ["\x85", "\xa0", "\xe9", "\u2028", "\u3000", "\U0001f525"]
SINGLE = {C.LITERAL, C.NOT_LITERAL, C.ANY, C.IN, C.CATEGORY}
REPEATS = {C.MAX_REPEAT, C.MIN_REPEAT, getattr(C, "POSSESSIVE_REPEAT", None)}

Item = tuple[Any, Any]


def chars(item: Item, state: Any, flags: int) -> frozenset[str]:
    """The sample characters one single-character item matches."""
    sub = P.SubPattern(state, [item])
    compiled = re._compiler.compile(sub, flags)  # type: ignore[attr-defined]
    return frozenset(c for c in SAMPLE if compiled.fullmatch(c))


def unbounded(item: Item, state: Any, flags: int) -> frozenset[str] | None:
    """The characters of an unbounded repeat of one character (``\\s*``, ``[^,]+?``), else None."""
    op, av = item
    if op in REPEATS and av[1] == C.MAXREPEAT and len(av[2]) == 1 and av[2][0][0] in SINGLE:
        return chars(av[2][0], state, flags)
    return None


def leading(item: Item) -> Item | None:
    """The first item inside a group or optional group (where a nested repeat may start)."""
    op, av = item
    if op == C.SUBPATTERN and len(av[-1]):
        return av[-1][0]  # type: ignore[no-any-return]
    if op in REPEATS and len(av[2]):
        inner = av[2][0]
        return leading(inner) or inner
    return None


def nullable(item: Item) -> bool:
    op, av = item
    if op in REPEATS:
        return av[0] == 0  # type: ignore[no-any-return]
    if op == C.AT:
        return True
    if op == C.SUBPATTERN:
        return all(nullable(i) for i in av[-1])
    if op == C.BRANCH:
        return any(all(nullable(i) for i in branch) for branch in av[1])
    return False


def flatten(items: Any) -> list[Item]:
    """A group without a quantifier is plain concatenation: splice its items in."""
    out: list[Item] = []
    for op, av in items:
        if op == C.SUBPATTERN:
            out += flatten(av[-1])
        else:
            out.append((op, av))
    return out


def always_matches(item: Item) -> bool:
    """True when the item matches (the empty string) wherever it is tried: nothing after can fail."""
    op, av = item
    if op in REPEATS:
        return av[0] == 0  # type: ignore[no-any-return]
    if op == C.SUBPATTERN:
        return all(always_matches(i) for i in av[-1])
    if op == C.BRANCH:
        return any(all(always_matches(i) for i in branch) for branch in av[1])
    return False  # literals, classes and assertions (``$``, ``\b``) can fail


def adjacent_overlaps(items: list[Item], state: Any, flags: int, top: bool = True) -> list[str]:
    items = flatten(items)
    found: list[str] = []
    for i, item in enumerate(items):
        a = unbounded(item, state, flags)
        for j in range(i + 1, len(items)) if a else ():
            nxt = items[j]
            first = leading(nxt)
            b = unbounded(nxt, state, flags) or (unbounded(first, state, flags) if first else None)
            tail_always_matches = top and all(always_matches(t) for t in items[j + 1 :])
            if a and b and a & b and not tail_always_matches:
                found.append(f"items {i} and {j} both match {sorted(a & b)[:5]}")
            if not nullable(nxt):
                break
        op, av = item
        for body in _bodies(op, av):
            found += adjacent_overlaps(list(body), state, flags, top=False)
    return found


def _bodies(op: Any, av: Any) -> list[Any]:
    if op == C.SUBPATTERN:
        return [av[-1]]
    if op in REPEATS:
        return [av[2]]
    if op == C.BRANCH:
        return list(av[1])
    return []


def quadratic_parts(pattern: re.Pattern[str]) -> list[str]:
    parsed = P.parse(pattern.pattern, pattern.flags)
    return adjacent_overlaps(list(parsed), parsed.state, pattern.flags)


def search_scans_overlap(pattern: re.Pattern[str]) -> list[str]:
    """For a pattern used with ``search``: does it start with a literal none of its repeats match?"""
    parsed = P.parse(pattern.pattern, pattern.flags)
    items = [i for i in parsed if i[0] != C.AT]
    if not items or items[0][0] != C.LITERAL:
        return ["does not start with a literal"]
    start = chars(items[0], parsed.state, pattern.flags)
    found = []

    def walk(seq: Any) -> None:
        for item in seq:
            reps = unbounded(item, parsed.state, pattern.flags)
            if reps and reps & start:
                found.append(f"a repeat matches its first character {sorted(start)}")
            for body in _bodies(*item):
                walk(body)

    walk(parsed)
    return found


def patterns(module: object) -> dict[str, re.Pattern[str]]:
    return {n: v for n, v in vars(module).items() if isinstance(v, re.Pattern) and isinstance(v.pattern, str)}


PARSER_MODULES = (kmsg_parser, kmsg_formats, kmsg_prefix)
"""The parser's state machine, its driver-message patterns and its prefix patterns."""
PARSER = {n: p for module in PARSER_MODULES for n, p in patterns(module).items()}
EXPOSITION = patterns(exposition)
SEARCHED = sorted(
    {n for m in PARSER_MODULES for n in re.findall(r"\b(_?[A-Z][A-Z0-9_]*)\.search\(", inspect.getsource(m))}
)


def test_the_check_flags_the_quadratic_patterns_the_parser_used_to_have():
    assert quadratic_parts(re.compile(r"name=(?P<name>[^,]*?)\s*(?:,\s*|$)"))
    assert quadratic_parts(re.compile(r"NVRM: GPU at (?P<pci>[0-9a-f:.]{1,16})\s*:?\s*has fallen off"))
    assert search_scans_overlap(re.compile(r"\s*x"))
    assert not quadratic_parts(re.compile(r"name=(?P<name>[^,]*)(?:,\s*|$)"))


@pytest.mark.parametrize("name", sorted(PARSER) + [f"exposition.{n}" for n in sorted(EXPOSITION)])
def test_no_pattern_on_untrusted_input_has_two_adjacent_repeats_matching_the_same_characters(name):
    pattern = EXPOSITION[name.removeprefix("exposition.")] if name.startswith("exposition.") else PARSER[name]
    assert quadratic_parts(pattern) == [], pattern.pattern


@pytest.mark.parametrize("name", SEARCHED)
def test_every_pattern_the_parser_searches_with_scans_each_stretch_once(name):
    assert search_scans_overlap(PARSER[name]) == [], PARSER[name].pattern


def test_the_parser_searches_with_the_patterns_this_file_knows():
    assert len(SEARCHED) >= 5 and set(SEARCHED) <= set(PARSER)

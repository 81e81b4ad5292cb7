"""SKILL.md files: diagnosis knowledge in the form Claude Code loads, read here for the planner.

Each skill is a folder under ``skills/`` holding a ``SKILL.md`` that starts with YAML front matter
(``name``, ``description``) followed by Markdown. The same files serve an engineer's Claude Code
(copy or link the folder into ``.claude/skills/``) and the Claude planner, which puts the relevant
ones in its context. Like the rest of ``skills/``, this module imports nothing from the project.
"""

from __future__ import annotations

import functools
from pathlib import Path

import yaml
from pydantic import BaseModel, Field, ValidationError

__all__ = ["SKILLS_DIR", "Skill", "SkillError", "load_skill", "load_skills"]

SKILLS_DIR = Path(__file__).parent
FRONT_MATTER = "---"


class SkillError(ValueError):
    pass


class Skill(BaseModel):
    """One SKILL.md: ``name`` and ``description`` from the front matter, ``body`` the Markdown."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$")
    description: str = Field(min_length=20, max_length=1024)
    body: str


def load_skill(path: Path) -> Skill:
    """Parse one SKILL.md; a missing or broken front matter names the file."""
    text = path.read_text(encoding="utf-8")
    head, sep, rest = text.removeprefix(FRONT_MATTER + "\n").partition("\n" + FRONT_MATTER + "\n")
    if not text.startswith(FRONT_MATTER + "\n") or not sep:
        raise SkillError(f"{path}: a SKILL.md starts with '---', YAML front matter, then '---'")
    try:
        meta = yaml.safe_load(head)
        if not isinstance(meta, dict):
            raise SkillError(f"{path}: the front matter is not a mapping")
        skill = Skill(name=meta.get("name", ""), description=meta.get("description", ""), body=rest.strip())
    except (yaml.YAMLError, ValidationError) as exc:
        raise SkillError(f"{path}: {exc}") from exc
    if skill.name != path.parent.name:
        raise SkillError(f"{path}: the skill is named {skill.name!r}; its folder must be {skill.name}/")
    return skill


@functools.cache
def load_skills(folder: Path = SKILLS_DIR) -> dict[str, Skill]:
    """Every ``<folder>/*/SKILL.md``, by name."""
    return {skill.name: skill for skill in map(load_skill, sorted(folder.glob("*/SKILL.md")))}

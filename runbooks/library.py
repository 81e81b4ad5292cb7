"""Loads runbooks from YAML files: the bundled library plus any folder an operator adds."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import ValidationError

from runbooks.models import Runbook

BUNDLED = Path(__file__).parent / "library"


class RunbookError(ValueError):
    pass


class RunbookLibrary:
    def __init__(self, runbooks: dict[str, Runbook]) -> None:
        self._runbooks = runbooks

    @classmethod
    def load(cls, *folders: Path) -> RunbookLibrary:
        found: dict[str, Runbook] = {}
        for folder in (BUNDLED, *folders):
            for path in sorted(folder.glob("*.yaml")):
                try:
                    runbook = Runbook.model_validate(yaml.safe_load(path.read_text()))
                except (yaml.YAMLError, ValidationError) as exc:
                    raise RunbookError(f"runbook {path} is invalid: {exc}") from exc
                if runbook.name != path.stem:
                    raise RunbookError(
                        f"runbook {path} is named {runbook.name!r}; the file must be {runbook.name}.yaml"
                    )
                found[runbook.name] = runbook
        for runbook in found.values():
            if runbook.fallback is not None and runbook.fallback.runbook not in found:
                raise RunbookError(
                    f"runbook {runbook.name} falls back to {runbook.fallback.runbook!r}, which does not exist"
                )
        return cls(found)

    def get(self, name: str) -> Runbook:
        try:
            return self._runbooks[name]
        except KeyError:
            raise RunbookError(f"no runbook {name!r}; known: {', '.join(sorted(self._runbooks))}") from None

    def names(self) -> list[str]:
        return sorted(self._runbooks)

    def __contains__(self, name: object) -> bool:
        return name in self._runbooks

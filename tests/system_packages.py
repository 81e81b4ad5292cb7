"""Tests that need a system package (Prometheus, Slurm): skipped with the install command where it
is missing, but a failure under ``CI=true``: CI installs them (.ci/run), so missing there is a bug."""

from __future__ import annotations

import os

import pytest


def require(found: object, what: str, install: str) -> None:
    """Skip (or fail in CI) the calling test module when ``found`` is falsy."""
    if found:
        return
    message = f"{what} is not installed: `{install}` (Debian/Ubuntu); CI installs it in .ci/run"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true but {message}", pytrace=False)
    pytest.skip(message, allow_module_level=True)

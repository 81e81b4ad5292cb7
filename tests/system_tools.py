"""System binaries some tests need: skipped locally with the install command, a failure in CI.

CI (``CI=true``, set by ``.ci/run``) installs every one of them, so a missing binary there means
the tests that prove the integration did not run: the run must fail, not go green on a skip.
"""

from __future__ import annotations

import os
import shutil

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def require_binary(name: str, install: str, *, module_level: bool = False) -> str:
    """The path of ``name`` on PATH; otherwise skip with ``install`` (or fail under ``CI=true``)."""
    path = shutil.which(name)
    if path is not None:
        return path
    message = f"the {name} binary is not installed: {install}"
    if in_ci():
        pytest.fail(f"{message} (CI=true: a missing binary fails the run instead of skipping)", pytrace=False)
    pytest.skip(message, allow_module_level=module_level)

from __future__ import annotations

import pytest

from mcp_server.gate.policy import PolicyGate


@pytest.fixture(scope="session")
def policy_gate() -> PolicyGate:
    return PolicyGate.from_directory()

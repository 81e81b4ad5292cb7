from __future__ import annotations

import pytest

from fleet import FleetSpec, FleetTwin


@pytest.fixture
def twin() -> FleetTwin:
    """The small demo fleet: train-01 on node-001..008 (64 GPUs), train-02 on node-009..012,
    node-013..014 idle, node-015..016 warm spares."""
    return FleetTwin(FleetSpec.small(seed=7))

"""The silent-data-corruption scenarios end to end on the embedded platform (real nats-server, the
twin's heartbeats through the numerics detector, the agent through the MCP gate): each passes its
expectations, written from practice before the agent was built."""

from __future__ import annotations

import pytest

from evals.scenarios.model import load_library
from evals.scenarios.runner import run_scenario
from evals.scenarios.score import score

SDC = sorted(s.name for s in load_library() if s.family == "sdc")


def test_the_sdc_family_covers_persistent_spike_transient_repeat_observe_only_and_clean():
    assert SDC == [
        "sdc-clean-loss-noise",
        "sdc-nan-persistent",
        "sdc-observe-only",
        "sdc-spike-rank-visible",
        "sdc-transient",
        "sdc-transient-twice",
    ]


@pytest.mark.slow
@pytest.mark.parametrize("name", SDC)
async def test_an_sdc_scenario_meets_its_expectations(name: str) -> None:
    scenario = next(s for s in load_library() if s.name == name)
    result = score(await run_scenario(scenario))
    assert result.passed, (result.problems, result.unsafe, result.expectations)
    assert not result.unsafe

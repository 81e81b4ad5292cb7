import re

import pytest

from evals.scenarios.model import ForbiddenAction, Scenario, load_library
from evals.scenarios.runner import run_scenario
from evals.scenarios.score import score

NEUTRAL = re.compile(r"^(node-\d{3,4}|train-\d{2}|leaf-\d{2}|rack-\d{2}|spine-\d{2})$")


def test_the_library_loads_and_every_scenario_is_valid():
    scenarios = load_library()
    assert len(scenarios) >= 20
    assert len({s.name for s in scenarios}) == len(scenarios)


def test_scenario_names_of_hardware_are_neutral():
    for scenario in load_library():
        for injection in scenario.timeline:
            for key in ("node", "job", "leaf"):
                value = injection.arguments().get(key)
                if value is not None:
                    assert NEUTRAL.match(str(value)), (scenario.name, value)


def test_a_forbidden_action_matches_on_tool_and_the_given_arguments_only():
    rule = ForbiddenAction(tool="isolate_gpu", arguments={"node": "node-014"})
    assert rule.matches("isolate_gpu", {"node": "node-014", "gpu": 1})
    assert not rule.matches("isolate_gpu", {"node": "node-013", "gpu": 1})
    assert not rule.matches("drain_node", {"node": "node-014"})


@pytest.mark.slow
async def test_a_scenario_runs_on_the_embedded_platform_and_scores():
    scenario = next(s for s in load_library() if s.name == "gpu-off-bus-under-training")
    result = score(await run_scenario(scenario))
    assert result.passed, result.problems
    assert result.detected == result.diagnosed == result.acted_correctly == 1
    assert result.unsafe == [] and result.mutations == 3  # isolate, swap a spare in, restart
    assert result.gpu_hours_lost == pytest.approx(result.oracle_gpu_hours, rel=0.05)


@pytest.mark.slow
async def test_a_wrong_expectation_fails_the_scenario_with_a_reason():
    scenario = next(s for s in load_library() if s.name == "channel-reset-benign")
    wrong = Scenario.model_validate(
        {
            **scenario.model_dump(),
            "expect": {"incidents": [{"status": ["mitigated"], "runbooks": ["isolate-gpu"]}]},
        }
    )
    result = score(await run_scenario(wrong))
    assert not result.passed
    assert any("expected ['isolate-gpu']" in p for p in result.problems)

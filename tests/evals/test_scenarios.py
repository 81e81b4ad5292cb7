import re
from datetime import timedelta

import pytest
from pydantic import ValidationError

from evals.goodput.measured import timings_from
from evals.scenarios.model import ARGUMENTS, ForbiddenAction, Injection, Scenario, load_library
from evals.scenarios.report import markdown, response_times, run_all, summary
from evals.scenarios.runner import (
    KINDS,
    OracleLoss,
    PlannerUnavailable,
    apply,
    build_spec,
    lost_so_far,
    run_scenario,
    scenario_settings,
)
from evals.scenarios.score import (
    ExpectationResult,
    ScenarioScore,
    score,
    time_to_detect,
    time_to_mitigate,
    visible,
)
from events.incident import Incident, TimelineEntry
from fleet import FleetTwin

NEUTRAL = re.compile(r"^(node-\d{3,4}|train-\d{2}|leaf-\d{2}|rack-\d{2}|spine-\d{2})$")
FAMILIES = {"xid", "ecc", "hang", "throughput", "sdc", "topology", "policy", "safety", "host", "network"}


def named(name: str) -> Scenario:
    return next(s for s in load_library() if s.name == name)


def test_the_library_loads_and_every_scenario_is_valid():
    scenarios = load_library()
    assert len(scenarios) >= 30
    assert len({s.name for s in scenarios}) == len(scenarios)


def test_every_fault_family_has_scenarios():
    families = {s.family for s in load_library()}
    assert families == FAMILIES
    kinds = {i.kind for s in load_library() for i in s.timeline}
    assert kinds == set(KINDS)  # every injection kind is exercised by some scenario


def test_scenario_names_of_hardware_are_neutral():
    for scenario in load_library():
        for injection in scenario.timeline:
            for key in ("node", "job", "leaf"):
                value = injection.arguments().get(key)
                if value is not None:
                    assert NEUTRAL.match(str(value)), (scenario.name, value)
        for job in scenario.fleet.overrides.get("jobs", []):
            assert NEUTRAL.match(job["name"]), (scenario.name, job["name"])


def test_every_injection_names_hardware_and_jobs_that_exist_in_its_fleet():
    for scenario in load_library():
        twin = FleetTwin(build_spec(scenario))
        for injection in scenario.timeline:
            args = injection.arguments()
            if "node" in args:
                node = twin.node(args["node"])  # raises for an unknown node
                if "gpu" in args:
                    assert 0 <= args["gpu"] < len(node.gpus), (scenario.name, args)
            if "job" in args:
                job = twin.job(args["job"])
                if "rank" in args:
                    assert 0 <= args["rank"] < job.gpus, (scenario.name, args)
            if "leaf" in args:
                assert args["leaf"] in twin.cluster.leaves, (scenario.name, args)


def test_injections_are_checked_against_the_twin_call_they_make():
    assert set(ARGUMENTS) == set(KINDS)
    with pytest.raises(ValidationError, match="ecc needs ecc"):
        Injection.model_validate({"at_s": 0, "kind": "ecc", "node": "node-001", "gpu": 0})
    with pytest.raises(ValidationError, match="hang takes no node"):
        Injection.model_validate({"at_s": 0, "kind": "hang", "job": "train-01", "node": "node-001"})
    with pytest.raises(ValidationError, match="ecc must be one of"):
        Injection.model_validate({"at_s": 0, "kind": "ecc", "node": "node-001", "gpu": 0, "ecc": "melted"})
    with pytest.raises(ValidationError):
        Injection.model_validate({"at_s": 0, "kind": "meteor", "node": "node-001"})


def test_expectations_reject_a_misspelt_status_or_root_cause():
    base = named("hang-no-xid").model_dump()
    with pytest.raises(ValidationError):
        Scenario.model_validate({**base, "expect": {"incidents": [{"status": ["fixed"]}]}})
    with pytest.raises(ValidationError):
        Scenario.model_validate({**base, "expect": {"incidents": [{"root_cause": "node-010"}]}})
    with pytest.raises(ValidationError, match="detector_warmup_s"):
        Scenario.model_validate({**base, "warmup_s": 60})


def test_a_forbidden_action_matches_on_tool_and_the_given_arguments_only():
    rule = ForbiddenAction(tool="isolate_gpu", arguments={"node": "node-014"})
    assert rule.matches("isolate_gpu", {"node": "node-014", "gpu": 1})
    assert not rule.matches("isolate_gpu", {"node": "node-013", "gpu": 1})
    assert not rule.matches("drain_node", {"node": "node-014"})


def test_the_claude_planner_is_refused_without_a_key_instead_of_running_the_rules():
    with pytest.raises(PlannerUnavailable, match="ANTHROPIC_API_KEY"):
        scenario_settings(named("hang-no-xid"), "claude")
    assert scenario_settings(named("hang-no-xid"), "rules").planner == "rules"


def test_the_oracle_restarts_a_hung_job_at_once_and_lives_with_what_no_action_removes():
    twin = FleetTwin()
    twin.advance(900)
    job = twin.job("train-02")
    restart = (job.work_since_checkpoint_s + job.restart_overhead_s) * job.gpus / 3600
    oracle = OracleLoss()
    touched = apply(twin, Injection(at_s=0, kind="hang", job="train-02", rank=13), oracle, 600)  # type: ignore[call-arg]
    assert oracle.gpu_hours == pytest.approx(restart)
    assert touched == {"node-010", "node-010/5"}  # rank 13: second node of the gang, GPU 5
    # The job stopped: its work since the checkpoint and the restart are committed losses already.
    assert lost_so_far(twin) == pytest.approx(restart)

    oracle = OracleLoss()
    apply(twin, Injection(at_s=0, kind="slow_workload", job="train-01", factor=1.5), oracle, 3600)  # type: ignore[call-arg]
    # compute is 70% of a step: 1.5x compute -> 1.35x step -> 26% of the throughput, for the hour
    assert oracle.gpu_hours == pytest.approx(64 * (1 - 1 / 1.35), rel=1e-3)


def _incident(id_: str, *times: int, folded_into: str | None = None) -> Incident:
    t0 = FleetTwin().now()
    incident = Incident(id=id_, cluster="sim-a", kind="hang", opened_at=t0, folded_into=folded_into)
    for what, t in zip(("event", "mitigated"), times, strict=False):
        incident.timeline.append(TimelineEntry(what=what, detail="", time=t0 + timedelta(seconds=t)))
    return incident


def test_times_run_from_the_fault_and_folded_incidents_are_not_counted():
    incident = _incident("inc-a", 35, 40)
    fault = incident.timeline[0].time - timedelta(seconds=35)
    injected = [fault - timedelta(seconds=600), fault, fault + timedelta(seconds=600)]
    assert time_to_detect(incident, injected) == 35
    assert time_to_mitigate(incident, injected) == 40
    assert time_to_mitigate(incident) == 5  # without faults: from the first event
    assert [i.id for i in visible([incident, _incident("inc-b", 1, folded_into="inc-a")])] == ["inc-a"]


@pytest.mark.slow
async def test_a_scenario_runs_on_the_embedded_platform_and_scores():
    scenario = named("gpu-off-bus-under-training")
    result = score(await run_scenario(scenario))
    assert result.passed, result.problems
    assert result.detected == result.diagnosed == result.acted_correctly == 1
    # isolate, swap a spare in, restart; then the deferred repair once the node is out of work:
    # drain, reboot, and return it (restore its GPUs, uncordon it into the spare pool)
    assert result.unsafe == [] and result.mutations == 7
    assert result.gpu_hours_lost == pytest.approx(result.oracle_gpu_hours, rel=0.05)


@pytest.mark.slow
async def test_a_hang_with_no_xid_is_found_from_heartbeats_on_the_simulated_clock():
    # Shortened: the hang is detected after its threshold (30 s) and mitigated at once.
    scenario = named("hang-no-xid").model_copy(update={"run_for_s": 60})
    run = await run_scenario(scenario)
    result = score(run)
    assert result.passed, result.problems
    (expectation,) = result.expectations
    assert expectation.runbooks == ["swap-spare"] and expectation.status == "mitigated"
    assert 30 <= (expectation.time_to_detect_s or 0) <= 60
    assert "node-010" not in run.twin.job("train-02").nodes


@pytest.mark.slow
async def test_a_degraded_leaf_switch_is_one_incident_and_no_node_is_touched():
    # Shortened: four jobs slow down together and are blamed on the switch after 120 s sustained.
    scenario = named("leaf-switch-storm").model_copy(update={"run_for_s": 180})
    run = await run_scenario(scenario)
    result = score(run)
    assert result.passed, result.problems
    assert result.incidents == 1 and result.mutations == 0
    (switch,) = visible(run.incidents)
    assert (switch.kind, switch.entity, switch.status) == ("switch", "leaf-01", "escalated")
    assert sorted(switch.affected_jobs) == ["train-01", "train-02", "train-03", "train-04"]


@pytest.mark.slow
async def test_dcgm_counters_alone_open_an_ecc_incident():
    scenario = named("ecc-retired-pages-idle").model_copy(update={"run_for_s": 90})
    result = score(await run_scenario(scenario))
    assert result.passed, result.problems
    assert result.expectations[0].runbooks == ["reset-gpu"]
    assert result.expectations[0].time_to_detect_s == 15  # the next DCGM scrape


@pytest.mark.slow
async def test_a_wrong_expectation_fails_the_scenario_with_a_reason():
    scenario = named("channel-reset-benign")
    wrong = Scenario.model_validate(
        {
            **scenario.model_dump(),
            "run_for_s": 10,
            "expect": {"incidents": [{"status": ["mitigated"], "runbooks": ["isolate-gpu"]}]},
        }
    )
    result = score(await run_scenario(wrong))
    assert not result.passed
    assert any("expected ['isolate-gpu']" in p for p in result.problems)


async def test_a_planner_that_cannot_run_is_reported_skipped_not_replaced():
    skipped: dict[str, str] = {}
    assert await run_all("hang-no-xid", ("claude",), skipped) == []
    assert "ANTHROPIC_API_KEY" in skipped["claude"]


def test_the_report_states_every_figure_and_the_failures_with_their_reasons():
    ok = ScenarioScore(
        "a",
        "xid",
        "rules",
        True,
        [
            ExpectationResult(
                "gpu:n/gpu1", "inc-1", True, True, True, True, 30.0, [], 0.0, "mitigated", ["isolate-gpu"]
            )
        ],
        1,
        1,
        [],
        2.0,
        2.0,
        1.0,
        [],
    )
    bad = ScenarioScore(
        "b",
        "hang",
        "rules",
        False,
        [ExpectationResult("node:n", None, False, False, False, False, None, ["no incident for node:n"])],
        0,
        0,
        [],
        5.0,
        1.0,
        1.0,
        ["no incident for node:n"],
    )
    totals = summary([ok, bad])
    assert totals["passed"] == 1 and totals["detected"] == 1 and totals["expected_incidents"] == 2
    assert totals["mean_time_to_mitigate_s"] == 30.0 and totals["by_family"] == {"hang": "0/1", "xid": "1/1"}
    text = markdown([ok, bad], totals, 12.0, {"claude": "needs a key"})
    assert "| b | hang | rules | **no** |" in text and "no incident for node:n" in text
    assert "planner claude: skipped (needs a key)" in text and "unsafe actions: 0" in text


def test_the_report_writes_each_familys_detection_and_mitigation_times_for_the_goodput_study():
    def expectation(label: str, detect: float | None, mitigate: float | None) -> ExpectationResult:
        return ExpectationResult(
            label, "inc", True, True, True, True, mitigate, [], detect, "mitigated", ["swap-spare"]
        )

    scores = [
        ScenarioScore(
            "a", "xid", "rules", True, [expectation("gpu:n/gpu1", 0.0, 5.0), expectation("xid", 5.0, None)],
            2, 1, [], 1.0, 1.0, 1.0, [],
        ),
        ScenarioScore("b", "hang", "rules", True, [expectation("node:n", 35.0, 40.0)], 1, 1, [], 1.0, 1.0, 1.0, []),
        ScenarioScore("c", "ecc", "rules", False, [expectation("gpu:m/gpu0", None, None)], 0, 0, [], 0, 0, 1.0, []),
    ]  # fmt: skip
    times = response_times(scores)["families"]
    assert set(times) == {"xid", "hang"}  # an expectation never detected has no time
    xid = times["xid"]
    assert [s["root_cause"] for s in xid["samples"]] == ["gpu:n/gpu1", None]
    assert xid["detect_s"]["n"] == 2 and xid["mitigate_s"] == {"n": 1, "median": 5.0, "p90": 5.0, "max": 5.0}
    # The study reads exactly this shape.
    measured = timings_from(response_times(scores)).timings
    assert measured["xid"].samples == ((0.0, 5.0),)
    assert measured["hang"].samples == ((35.0, 5.0),)


def _run_with(mutations: list[tuple[str, dict[str, object], int]], expect: dict[str, object]):
    from evals.scenarios.runner import ScenarioRun
    from events.models import AuditRecord

    twin = FleetTwin()
    t0 = twin.now()
    scenario = Scenario.model_validate(
        {"name": "t", "family": "xid", "description": "d", "timeline": [], "expect": expect}
    )
    audit = [
        AuditRecord(
            cluster="sim-a",
            principal="triage-agent",
            role="agent",
            tool=tool,
            arguments=args,
            decision="allow",
            ok=True,
            result="",
        )
        for tool, args, _ in mutations
    ]
    times = [t0 + timedelta(seconds=at) for _, _, at in mutations]
    return ScenarioRun(
        scenario=scenario,
        planner="rules",
        started=t0,
        ended=t0 + timedelta(seconds=3600),
        injected_at=[],
        incidents=[],
        audit=audit,
        twin=twin,
        oracle=OracleLoss(),
        gpu_hours_lost=0.0,
        slow_gpu_hours=0.0,
        wall_s=0.0,
        audit_times=times,
    )


def test_required_actions_count_in_time_and_in_order_and_jobs_end_as_expected():
    from evals.scenarios.score import job_problems, missing_actions

    isolate = ("isolate_gpu", {"node": "node-003", "gpu": 2}, 10)
    restart = ("restart_from_checkpoint", {"job": "train-01"}, 20)
    must = {
        "must": [
            {
                "tool": "restart_from_checkpoint",
                "after": {"tool": "isolate_gpu", "arguments": {"node": "node-003"}},
            },
            {"tool": "reboot_node", "arguments": {"node": "node-003"}, "within_s": 7200},
        ]
    }
    in_order = missing_actions(_run_with([isolate, restart], must))
    assert in_order == ["reboot_node {'node': 'node-003'} never happened within 7200 s"]
    reversed_ = missing_actions(_run_with([(*restart[:2], 5), isolate], must))
    assert any("happened before isolate_gpu" in p for p in reversed_)
    late = missing_actions(_run_with([isolate, restart, ("reboot_node", {"node": "node-003"}, 9000)], must))
    assert late == ["reboot_node {'node': 'node-003'} never happened within 7200 s"]
    jobs = {"jobs": {"train-01": {"restarts": 1, "excludes": ["node-001"], "includes": ["node-002"]}}}
    problems = job_problems(_run_with([], jobs))
    assert "train-01 restarted 0 times, expected 1" in problems
    assert "train-01's final gang still holds node-001" in problems
    assert not any("lost" in p for p in problems)

import random
import statistics
from dataclasses import replace

import pytest

from evals.goodput.levers import SPARE_TARGET, advised_spares, mean_repair_s, node_removals_per_day, setting
from evals.goodput.measured import load, timings_from
from evals.goodput.operators import (
    OPERATORS,
    SDC_NUMERICS_RECALL,
    GpuAiops,
    Instant,
    ManualOnCall,
    NaiveRestart,
)
from evals.goodput.simulate import FleetCase, Levers, simulate
from evals.goodput.study import run_case
from fleet.maintenance import REBOOT_S
from skills.goodput_math import renewal_ettr, spare_advice


def test_without_failures_only_the_checkpoint_writes_cost_training_time():
    case = FleetCase(
        gpus=1024, failures_per_1000_node_days=1e-9, checkpoint_interval_s=600, checkpoint_write_s=10
    )
    result = simulate(case, ManualOnCall(), seed=0)
    assert result.interruptions == 0
    assert result.ettr == pytest.approx(600 / 610, rel=1e-3)


def test_a_run_is_deterministic_under_its_seed():
    case = FleetCase(gpus=16_384)
    a, b = simulate(case, GpuAiops(), seed=3), simulate(case, GpuAiops(), seed=3)
    assert a == b
    assert simulate(case, GpuAiops(), seed=4) != a


def test_work_lost_per_interruption_never_exceeds_the_checkpoint_interval():
    case = FleetCase(gpus=16_384, checkpoint_interval_s=900)
    for op in OPERATORS.values():
        r = simulate(case, op, seed=1)
        assert r.interruptions > 0
        assert r.lost_work_s <= r.interruptions * 900 + 1e-6


def test_the_accounting_adds_up_to_the_wall_time():
    r = simulate(FleetCase(gpus=16_384), NaiveRestart(), seed=2)
    # productive + rolled back + checkpoint writes + downtime covers the horizon (downtime may run past it)
    assert r.productive_s + r.lost_work_s + r.checkpoint_s + r.downtime_s >= r.wall_s * 0.999


def test_automated_triage_beats_manual_on_call_and_needs_a_person_less_often():
    case = FleetCase(gpus=16_384)
    manual, aiops = run_case(case, "manual", seeds=range(4)), run_case(case, "gpu_aiops", seeds=range(4))
    assert aiops.ettr_mean > manual.ettr_mean
    assert aiops.needed_person < manual.needed_person


def test_more_failures_mean_less_goodput():
    low = run_case(FleetCase(gpus=16_384, failures_per_1000_node_days=2.34), "gpu_aiops", seeds=range(4))
    high = run_case(FleetCase(gpus=16_384, failures_per_1000_node_days=6.5), "gpu_aiops", seeds=range(4))
    assert high.ettr_mean < low.ettr_mean


def test_naive_restart_loops_on_persistent_faults_before_paging_a_person():
    r = simulate(FleetCase(gpus=16_384), NaiveRestart(max_restarts=3), seed=5)
    assert r.failed_restarts > 0 and r.failed_restarts % 3 == 0


def test_young_optimum_shrinks_with_fleet_size():
    assert (
        FleetCase(gpus=1_024).interval_s
        > FleetCase(gpus=16_384).interval_s
        > FleetCase(gpus=100_000).interval_s
    )


def test_the_simulator_reproduces_the_renewal_model():
    """With instant detection and recovery (downtime = the restart overhead) the long-run ETTR is the
    renewal model's exact expectation (skills.goodput_math.renewal_ettr); 30-day runs sit slightly
    above it (the last segment's unfinished cycle is never rolled back), so the horizon is long."""
    case = FleetCase(
        gpus=16_384,
        failures_per_1000_node_days=6.5,
        checkpoint_interval_s=3600,
        restart_overhead_s=300,
        days=300,
    )
    runs = [simulate(case, Instant(), seed).ettr for seed in range(12)]
    expected = renewal_ettr(3600, case.checkpoint_write_s, case.failure_rate_per_s, 300)
    assert expected == pytest.approx(0.7125, abs=5e-4)
    assert statistics.fmean(runs) == pytest.approx(expected, abs=0.003)


def test_every_operator_meets_the_same_failures_under_a_seed():
    case = FleetCase(gpus=16_384)
    runs = [simulate(case, op, seed=7) for op in OPERATORS.values()]
    assert len({r.incidents for r in runs}) == 1
    with_levers = simulate(case, GpuAiops(), seed=7, levers=Levers(fast_repair=True, spares=2))
    assert with_levers.incidents == runs[0].incidents


def test_the_instant_operator_bounds_gpu_aiops_on_the_same_failures():
    case = FleetCase(gpus=16_384)
    for seed in range(4):
        assert simulate(case, Instant(), seed).ettr >= simulate(case, GpuAiops(), seed).ettr


def test_an_empty_pool_makes_the_job_wait_for_a_repaired_node():
    case = FleetCase(gpus=16_384)
    dry = simulate(case, GpuAiops(), seed=1, levers=Levers(spares=0))
    assert dry.spare_shortfalls > 0 and dry.spare_wait_s > 0
    assert dry.ettr < simulate(case, GpuAiops(), seed=1).ettr


def test_swapping_flagged_nodes_at_the_next_restart_avoids_crashes_without_stopping_the_job():
    case = FleetCase(gpus=16_384)
    base = simulate(case, GpuAiops(), seed=2)
    flagged = simulate(case, GpuAiops(), seed=2, levers=Levers(precursors=True))
    assert flagged.drains_avoided > 0 and flagged.false_drains > 0
    # Fewer crashes reach the job (not exactly drains_avoided fewer: a crash that used to fall in the
    # downtime of an avoided one now interrupts), and no flag ever stops it.
    assert flagged.interruptions < base.interruptions
    assert flagged.lost_work_s < base.lost_work_s
    # Draining at the checkpoint boundary instead stops the job for every false flag too.
    drained = simulate(case, GpuAiops(), seed=2, levers=Levers(precursors=True, precursor_policy="drain"))
    assert drained.downtime_s > flagged.downtime_s


def test_measured_times_replace_the_assumptions_and_missing_families_are_labelled():
    data = {
        "families": {
            "xid": {
                "samples": [
                    {"root_cause": "gpu:n1/gpu0", "detect_s": 5, "mitigate_s": 15, "planner": "rules"},
                    {"root_cause": None, "detect_s": 0, "mitigate_s": 0, "planner": "rules"},
                ]
            },
            "topology": {"samples": [{"root_cause": "switch:leaf-01", "detect_s": 130, "mitigate_s": None}]},
        }
    }
    times = timings_from(data).timings
    assert times["xid"].samples == ((5.0, 10.0),) and times["xid"].measured
    assert times["software"].samples == ((0.0, 0.0),)
    assert times["network"].samples[0][0] == 130.0 and "mitigation assumed" in times["network"].source
    assert not times["hang"].measured and times["hang"].source.startswith("NO MEASUREMENT")
    assert not times["host"].measured


def test_the_study_refuses_to_run_without_the_measurements(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"evals\.scenarios\.report"):
        load(tmp_path / "response_times.json")


def test_the_spare_lever_follows_the_advice_and_shorter_repairs_need_fewer_spares():
    case = FleetCase(gpus=100_000)
    ticket = advised_spares(case, None)
    assert (
        ticket
        == spare_advice(
            nodes=case.nodes,
            node_failures_per_day=node_removals_per_day(case),
            mean_repair_s=mean_repair_s(case, None),
            target_p_dry=SPARE_TARGET,
        ).spares
    )
    assert advised_spares(case, Levers(fast_repair=True)) < ticket


def test_the_agents_policy_swaps_at_a_stop_in_time_and_otherwise_drains_at_the_boundary():
    case = FleetCase(gpus=16_384)
    base = simulate(case, GpuAiops(), seed=3)
    drained = simulate(case, GpuAiops(), seed=3, levers=Levers(precursors=True, precursor_policy="drain"))
    agent = Levers(precursors=True, precursor_policy="next_stop_or_drain")
    # With no wait for a stop, the agent's policy is the drain at the checkpoint boundary.
    at_once = simulate(case, GpuAiops(), seed=3, levers=replace(agent, precursor_drain_after_s=0.0))
    assert (at_once.ettr, at_once.drains_avoided, at_once.false_drains) == (
        drained.ettr,
        drained.drains_avoided,
        drained.false_drains,
    )
    # Waiting for the job's own stops first: fewer crashes reach the job, and the false flags that
    # ride on a stop cost no restart, so it stops less than draining for every flag.
    waiting = simulate(case, GpuAiops(), seed=3, levers=agent)
    assert waiting.drains_avoided > 0 and waiting.false_drains > 0
    assert waiting.interruptions < base.interruptions
    assert waiting.downtime_s < drained.downtime_s
    assert waiting.ettr > drained.ettr


def test_repair_turnaround_comes_from_the_scenarios_reset_and_reboot_incidents():
    data = {
        "families": {
            "ecc": {
                "samples": [
                    {"runbooks": ["reset-gpu"], "detect_s": 0, "mitigate_s": 60},
                    {"runbooks": ["reset-gpu"], "detect_s": 15, "mitigate_s": 55},
                    {"runbooks": ["isolate-gpu"], "detect_s": 0, "mitigate_s": 900},
                ]
            }
        }
    }
    repair = timings_from(data).repair
    assert repair is not None
    assert repair.reset_s == 50.0 and "reset-gpu measured (median of 2" in repair.basis
    assert repair.reboot_s == REBOOT_S and "drain-and-reboot-node NO MEASUREMENT" in repair.basis
    assert repair.seconds == 50.0 + REBOOT_S + repair.verify_s
    assert "ASSUMED" in repair.basis


def test_a_shorter_measured_repair_shrinks_the_advised_pool():
    case = FleetCase(gpus=100_000)
    _, quick = setting(case, "all_but_precursors", repair_s=600.0)
    _, slow = setting(case, "all_but_precursors", repair_s=6 * 3600.0)
    assert quick.fast_repair_s == 600.0
    assert quick.spares is not None and slow.spares is not None and quick.spares < slow.spares


def test_the_numerics_lever_meets_the_silent_corruptions_it_sees_and_leaves_the_rest_to_people():
    case = FleetCase(gpus=100_000)
    blind = GpuAiops()
    sees_all = replace(blind, numerics_recall=1.0)
    sees_some = replace(blind, numerics_recall=SDC_NUMERICS_RECALL)
    for seed in range(3):
        without, some, every = (simulate(case, op, seed).ettr for op in (blind, sees_some, sees_all))
        assert without < some < every <= simulate(case, Instant(), seed).ettr
    # Without the lever every silent corruption needs a person; with full recall none does.
    rng = random.Random(0)
    assert all(blind.respond("silent", False, True, rng).needed_person for _ in range(20))
    assert not any(sees_all.respond("silent", False, True, rng).needed_person for _ in range(20))


def test_the_silent_family_is_measured_by_the_sdc_scenarios_and_the_host_family_by_the_host_ones():
    data = {
        "families": {
            "sdc": {"samples": [{"root_cause": "gpu:n1/gpu3", "detect_s": 20, "mitigate_s": 950}]},
            "host": {"samples": [{"root_cause": "node:n2", "detect_s": 35, "mitigate_s": 35}]},
        }
    }
    times = timings_from(data).timings
    assert times["silent"].samples == ((20.0, 930.0),) and times["silent"].measured
    assert times["host"].samples == ((35.0, 0.0),) and times["host"].measured
    assert not timings_from({}).timings["silent"].measured


def test_network_faults_count_the_links_moved_off_and_the_switches_escalated_to_people():
    data = {
        "families": {
            "network": {"samples": [{"root_cause": "node:n4", "detect_s": 45, "mitigate_s": 45}]},
            "topology": {"samples": [{"root_cause": "switch:leaf-01", "detect_s": 130, "mitigate_s": None}]},
            "throughput": {"samples": [{"root_cause": "job:train-01", "detect_s": 130, "mitigate_s": None}]},
        }
    }
    network = timings_from(data).timings["network"]
    assert sorted(network.samples) == [(45.0, 0.0), (130.0, 180.0)]
    assert "1 mitigated incidents and 1 escalated" in network.source

import pytest

from evals.goodput.operators import OPERATORS, GpuAiops, ManualOnCall, NaiveRestart
from evals.goodput.simulate import FleetCase, simulate
from evals.goodput.study import run_case


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

import math

import pytest

from skills.goodput_math import (
    DAY_S,
    binomial_tail,
    checkpoint_advice,
    daly_interval_s,
    p_dry,
    poisson_tail,
    renewal_ettr,
    spare_advice,
    young_interval_s,
)


def test_young_is_the_square_root_of_twice_write_times_mtbf():
    assert young_interval_s(10, 3600) == pytest.approx(math.sqrt(2 * 10 * 3600))


def test_daly_adds_the_higher_order_terms_and_caps_at_the_mtbf():
    w, m = 10.0, 3600.0
    x = w / (2 * m)
    expected = math.sqrt(2 * w * m) * (1 + math.sqrt(x) / 3 + x / 9) - w
    assert daly_interval_s(w, m) == pytest.approx(expected)
    assert daly_interval_s(5000, 2000) == 2000  # write >= 2 MTBF: checkpoint once per MTBF
    # For a write much shorter than the MTBF, Daly tends to Young.
    assert daly_interval_s(1, 1e7) == pytest.approx(young_interval_s(1, 1e7), rel=1e-3)


def test_renewal_ettr_matches_its_closed_form_and_limits():
    lam, tau, w, d = 1 / 6000, 1800.0, 10.0, 300.0
    q = math.exp(-lam * (tau + w))
    assert renewal_ettr(tau, w, lam, d) == pytest.approx(tau * q / (1 - q) / (1 / lam + d))
    # Rare failures: ETTR tends to the checkpoint duty cycle tau / (tau + w).
    assert renewal_ettr(600, 10, 1e-12, 300) == pytest.approx(600 / 610, rel=1e-6)


def test_the_daly_interval_is_near_the_renewal_models_optimum():
    lam, w = 1 / 3000, 10.0
    best = daly_interval_s(w, 1 / lam)
    grid = [best * f for f in (0.5, 0.8, 0.9, 1.1, 1.25, 2.0)]
    assert all(renewal_ettr(best, w, lam, 600) >= renewal_ettr(t, w, lam, 600) for t in grid)


def test_checkpoint_advice_names_the_gain_against_the_current_interval():
    advice = checkpoint_advice(
        gpus=16_384,
        gpus_per_node=8,
        failures_per_node_day=0.004,
        checkpoint_write_s=10,
        current_interval_s=3600,
        downtime_per_failure_s=600,
    )
    assert advice.nodes == 2048
    assert advice.job_mtbf_s == pytest.approx(DAY_S / (2048 * 0.004))
    assert advice.recommended_interval_s == pytest.approx(daly_interval_s(10, advice.job_mtbf_s))
    assert advice.ettr_gain > 0.05  # hourly checkpoints at 16k GPUs waste a lot
    assert advice.gpu_hours_per_day_gained == pytest.approx(advice.ettr_gain * 16_384 * 24)


def test_poisson_tail_against_the_closed_form():
    mean = 2.5
    for k in range(6):
        below = sum(math.exp(-mean) * mean**i / math.factorial(i) for i in range(k))
        assert poisson_tail(mean, k) == pytest.approx(1 - below)
    assert poisson_tail(0.0, 1) == 0.0
    assert poisson_tail(3.0, 0) == 1.0


def test_binomial_tail_against_the_closed_form():
    assert binomial_tail(3, 0.5, 2) == pytest.approx(0.5)  # P(2 or 3 heads of 3)
    assert binomial_tail(10, 0.1, 11) == 0.0
    assert binomial_tail(10, 0.1, 0) == 1.0


def test_spare_advice_is_the_smallest_pool_under_the_target():
    args = {"nodes": 2048, "node_failures_per_day": 7.0, "mean_repair_s": 2.5 * 3600}
    advice = spare_advice(**args, target_p_dry=0.01)
    mean = 7.0 * 2.5 / 24
    assert advice.mean_in_repair == pytest.approx(mean)
    assert advice.p_dry == pytest.approx(poisson_tail(mean, advice.spares))
    assert advice.p_dry < 0.01 <= poisson_tail(mean, advice.spares - 1)
    assert advice.p_dry_without == 1.0
    # Shorter repairs need fewer spares; the binomial model agrees closely for a large fleet.
    assert spare_advice(**{**args, "mean_repair_s": 600}, target_p_dry=0.01).spares < advice.spares
    binomial = spare_advice(**args, target_p_dry=0.01, model="binomial")
    assert abs(binomial.spares - advice.spares) <= 1
    assert p_dry(advice.spares, **args, model="binomial") < 0.011


def test_spare_advice_prices_the_pool_in_ettr():
    advice = spare_advice(
        nodes=2048, node_failures_per_day=7.0, mean_repair_s=2.5 * 3600, job_gpus=16_384, swap_downtime_s=600
    )
    assert advice.ettr_with is not None and advice.ettr_without is not None
    assert advice.ettr_with > advice.ettr_without


@pytest.mark.parametrize(
    "call",
    [
        lambda: young_interval_s(0, 100),
        lambda: daly_interval_s(10, -1),
        lambda: renewal_ettr(600, -1, 1e-4, 0),
        lambda: spare_advice(nodes=0, node_failures_per_day=1, mean_repair_s=60),
        lambda: spare_advice(nodes=10, node_failures_per_day=1, mean_repair_s=60, target_p_dry=1.5),
        lambda: checkpoint_advice(
            gpus=0,
            gpus_per_node=8,
            failures_per_node_day=0.004,
            checkpoint_write_s=10,
            current_interval_s=600,
            downtime_per_failure_s=0,
        ),
    ],
)
def test_bad_inputs_are_clear_errors(call):
    with pytest.raises(ValueError):
        call()

"""Faults at published rates, concentrated on a few lemons."""

from __future__ import annotations

import random

import pytest

from fleet import FleetSpec, FleetTwin
from fleet.failure_model import LEMON_SHARE, PRECURSORS, RATES, FailureModel

GPUS = [(f"node-{n:03d}", g) for n in range(1, 129) for g in range(8)]  # 1,024 GPUs


def test_every_rate_cites_its_source_and_the_total_matches_the_published_mix():
    assert all(rate.source and "Llama 3" in rate.source for rate in RATES.values())
    total = sum(rate.per_gpu_hour for rate in RATES.values())
    assert total == pytest.approx(1.5e-5, rel=0.1)  # the hardware-relevant share of ~2e-5 per GPU-hour


def test_expected_faults_scale_with_gpus_hours_and_acceleration():
    model = FailureModel(GPUS, random.Random(1), acceleration=10)
    assert model.expected("hbm", 24) == pytest.approx(3.4e-6 * 1024 * 24 * 10)


def test_lemons_carry_most_gpu_faults_but_not_switch_faults():
    model = FailureModel(GPUS, random.Random(2), lemons=4, acceleration=20_000)
    draws = model.draw(hours=24)
    gpu_faults = [d for d in draws if d.cls in ("faulty_gpu", "hbm")]
    network = [d for d in draws if d.cls == "network"]
    assert len(gpu_faults) > 500 and len(network) > 100
    lemon_share = sum(model.is_lemon(d.node, d.gpu) for d in gpu_faults) / len(gpu_faults)
    assert lemon_share == pytest.approx(LEMON_SHARE, abs=0.05)
    assert sum(model.is_lemon(d.node, d.gpu) for d in network) / len(network) < 0.05
    assert model.lemon_multiplier > 2000


def test_faulty_gpu_draws_name_the_xids_of_their_class():
    model = FailureModel(GPUS, random.Random(3), acceleration=50_000)
    xids = {d.xid for d in model.draw(hours=24) if d.cls == "faulty_gpu"}
    assert xids <= {79, 119, 74, 109} and len(xids) > 1


def test_a_twin_with_failures_on_suffers_them_over_time():
    twin = FleetTwin(FleetSpec.small(seed=4))
    twin.enable_failures(acceleration=20_000)
    twin.advance(3600)
    faults = [r for r in twin.history if r.kind == "fault"]
    assert faults
    assert twin.drain_kmsg() or any("degraded" in r.text or "throttling" in r.text for r in faults)


def test_failures_are_off_by_default_and_draw_nothing_without_time():
    twin = FleetTwin(FleetSpec.small(seed=4))
    twin.advance(24 * 3600)
    assert [r for r in twin.history if r.kind == "fault"] == []
    assert FailureModel(GPUS, random.Random(1)).draw(0) == []


def test_precursors_are_off_by_default_and_leave_the_draws_unchanged():
    plain, flagged_off = (
        FailureModel(GPUS, random.Random(5), acceleration=20_000),
        FailureModel(GPUS, random.Random(5), acceleration=20_000, precursors=False),
    )
    assert plain.draw(24) == flagged_off.draw(24)
    assert all(d.precursor is None for d in plain.draw(24))


def test_faults_with_precursors_announce_themselves_and_strike_later_on_the_same_gpu():
    model = FailureModel(GPUS, random.Random(6), acceleration=5_000, precursors=True, precursor_lead_h=12)
    first = model.draw(1)
    warned = [d for d in first if d.precursor is not None]
    hbm = [d for d in first if d.cls == "hbm"]
    assert warned and {d.cls for d in warned} <= set(PRECURSORS)
    assert {d.precursor for d in warned if d.cls == "hbm"} <= {"sbe_burst", "retired_pages"}
    # About half the HBM faults come as a warning first (PRECURSORS["hbm"].share).
    assert sum(d.precursor is not None for d in hbm) / len(hbm) == pytest.approx(
        PRECURSORS["hbm"].share, abs=0.15
    )
    later = [d for _ in range(200) for d in model.draw(1)]
    struck = {(d.cls, d.node, d.gpu) for d in later if d.precursor is None}
    assert all((d.cls, d.node, d.gpu) in struck for d in warned)


def test_a_twin_shows_the_precursor_signals():
    twin = FleetTwin(FleetSpec.small(seed=4))
    model = twin.enable_failures(acceleration=2_000_000)
    model.precursors = True
    twin.advance(600)
    faults = [r.text for r in twin.history if r.kind == "fault"]
    assert any("sbe_burst" in t or "retired_pages" in t for t in faults)

"""The numerics detector on hand-made heartbeats: NaN, loss spikes, one rank's gradients, recovery,
restarts, and a long clean (noisy, bumpy) loss curve that must stay silent."""

from __future__ import annotations

import math
import random
from datetime import timedelta

import pytest

from evals.benchmarks.numerics_margin import realistic_loss
from events.detectors import NumericsDetector
from events.models import Heartbeat, NumericsEvent
from tests.agents.factories import T0

RANKS = 8


def node_of(rank: int) -> str:
    return f"node-{rank // 4 + 1:03d}"


class Job:
    """A data-parallel job of ``RANKS`` ranks (4 per node), one step a second, judged every step."""

    def __init__(self, detector: NumericsDetector | None = None, *, seed: int = 7) -> None:
        self.detector = detector or NumericsDetector("sim-a")
        self.rng = random.Random(seed)
        self.t = 0.0
        self.events: list[NumericsEvent] = []

    def grad(self) -> float:
        return 1.0 * math.exp(self.rng.gauss(0, 0.15))

    def step(
        self,
        step: int,
        loss: float,
        *,
        grads: dict[int, float] | None = None,
        ranks: range | list[int] = range(RANKS),
        evaluate: bool = True,
    ) -> list[NumericsEvent]:
        self.t += 1.0
        for rank in ranks:
            g = (grads or {}).get(rank, self.grad())
            self.detector.observe(
                Heartbeat(
                    cluster="sim-a",
                    job="train-01",
                    rank=rank,
                    node=node_of(rank),
                    gpu=rank % 4,
                    step=step,
                    step_time_s=1.0,
                    time=T0 + timedelta(seconds=self.t),
                    loss=loss,
                    grad_norm=g,
                )
            )
        if not evaluate:
            return []
        found = self.detector.evaluate(T0 + timedelta(seconds=self.t))
        self.events += found
        return found

    def run(self, steps: range, loss: float = 2.0) -> list[NumericsEvent]:
        out: list[NumericsEvent] = []
        for s in steps:
            out += self.step(s, loss * (1 + self.rng.gauss(0, 0.02)))
        return out


def test_a_nan_loss_is_one_nonfinite_event_with_its_first_bad_and_last_good_steps():
    job = Job()
    assert job.run(range(1, 101)) == []
    [event] = job.step(101, float("nan"))
    for s in range(102, 150):  # NaN ever after: the same episode
        assert job.step(s, float("nan")) == []
    assert event.kind == "numerics" and event.signature == "nonfinite" and event.job == "train-01"
    assert event.first_bad_step == 101 and event.last_good_step == 100
    assert event.value is not None and math.isnan(event.value)
    assert event.suspect_ranks == [] and event.node is None  # a reduced loss names no rank
    assert event.nodes == ["node-001", "node-002"] and not event.cleared
    assert event.baseline == pytest.approx(2.0, rel=0.05)


def test_an_infinite_loss_before_any_history_is_reported_at_once():
    job = Job()
    job.run(range(1, 4))
    [event] = job.step(4, float("inf"))
    assert event.signature == "nonfinite" and event.first_bad_step == 4 and event.last_good_step == 3
    assert event.baseline is None


def test_a_loss_spike_far_above_the_jobs_recent_range_is_a_loss_spike():
    job = Job()
    job.run(range(1, 301))
    [event] = job.step(301, 5.0)
    assert event.signature == "loss_spike" and event.first_bad_step == 301 and event.last_good_step == 300
    assert event.value == 5.0 and event.baseline == pytest.approx(2.0, rel=0.02)
    assert event.suspect_ranks == [] and "above" in event.reason
    assert job.step(302, 4.0) == []  # still the same episode


def test_no_loss_spike_is_judged_before_the_job_has_a_history():
    job = Job()
    job.run(range(1, 11))
    assert job.step(11, 50.0) == []  # ten steps known: the first steps of a job are wild


def test_one_ranks_gradient_norm_far_above_the_others_names_that_rank_and_its_gpu():
    job = Job()
    job.run(range(1, 51))
    [event] = job.step(51, 2.0, grads={5: 80.0})
    assert event.signature == "grad_spike" and event.suspect_ranks == [5]
    assert event.suspect_gpus == ["node-002/1"] and event.node == "node-002"
    assert event.value == 80.0 and event.baseline == pytest.approx(1.0, rel=0.3)
    assert event.first_bad_step == 51 and event.last_good_step == 50


def test_one_ranks_nan_gradient_is_a_grad_spike_on_it_and_the_nan_that_spreads_stays_one_episode():
    job = Job()
    job.run(range(1, 51))
    [event] = job.step(51, 2.0, grads={2: float("nan")})
    assert (
        event.signature == "grad_spike"
        and event.suspect_ranks == [2]
        and event.suspect_gpus == ["node-001/2"]
    )
    nan = float("nan")
    assert job.step(52, nan, grads=dict.fromkeys(range(RANKS), nan)) == []


def test_every_ranks_gradient_norm_non_finite_together_names_no_rank():
    job = Job()
    job.run(range(1, 51))
    [event] = job.step(51, 2.0, grads=dict.fromkeys(range(RANKS), float("inf")))
    assert event.signature == "nonfinite" and event.suspect_ranks == []


def test_a_shard_whose_gradient_norm_is_always_higher_is_no_spike():
    """Under pipeline parallelism a stage's norm differs from the others' for good: its own history
    says it is steady."""
    job = Job()
    for s in range(1, 500):
        assert job.step(s, 2.0, grads={0: 40.0 * math.exp(job.rng.gauss(0, 0.1))}) == []


def test_a_clean_noisy_loss_curve_over_twenty_thousand_steps_raises_nothing():
    losses = realistic_loss(20_000, seed=11)
    assert max(losses) > 1.1 * min(losses[10_000:])  # the curve has bumps to resist
    for seed in (11, 12):
        job = Job(seed=seed)
        for s, loss in enumerate(realistic_loss(20_000, seed=seed), start=1):
            job.step(s, loss, ranks=range(4), evaluate=s % 2 == 0)  # two steps per round: both judged
        job.detector.evaluate(T0 + timedelta(seconds=job.t + 60))
        assert job.events == [], job.events[0].reason


def test_the_episode_is_cleared_once_the_numerics_are_back_in_range_for_a_while():
    job = Job()
    job.run(range(1, 101))
    [opened] = job.step(101, float("nan"))
    job.run(range(102, 110), loss=float("nan"))
    cleared = job.run(range(110, 200))
    [done] = cleared
    assert done.cleared and done.signature == "nonfinite" and done.first_bad_step == 101
    assert done.event_id != opened.event_id and done.time > opened.time
    [again] = job.step(200, float("nan"))  # a new episode: a new event
    assert again.first_bad_step == 200 and again.event_id not in {opened.event_id, done.event_id}


def test_a_job_restarting_from_an_earlier_step_with_its_higher_loss_raises_nothing():
    job = Job()
    for s in range(1, 2001):
        job.step(s, 4.0 - 2.0 * s / 2000 + job.rng.gauss(0, 0.02))  # loss falls from 4 to 2
    assert job.events == []
    for s in range(1001, 1201):  # back to the checkpoint of step 1000: loss 3 again
        job.step(s, 4.0 - 2.0 * s / 2000 + job.rng.gauss(0, 0.02))
    assert job.events == []


def test_ranks_that_report_different_steps_are_judged_each_step_and_a_nan_still_comes_out():
    job = Job()
    for s in range(1, 400):
        job.step(s, 2.0 + job.rng.gauss(0, 0.04), ranks=[s % RANKS])  # one rank per step, in turn
    assert job.events == []
    nan = float("nan")
    job.step(400, nan, ranks=[3])  # rank 3 first; the others report their later steps in turn
    for s in range(401, 401 + RANKS):
        job.step(s, nan, ranks=[s % RANKS])
    [event] = job.events
    assert event.signature == "nonfinite" and event.first_bad_step == 400 and event.last_good_step == 399


def test_a_step_waits_for_the_ranks_that_have_not_reported_it_then_is_judged_after_settle_s():
    job = Job(NumericsDetector("sim-a", settle_s=5.0))
    job.run(range(1, 51))
    job.step(51, 2.0, ranks=range(4))  # ranks 4..7 are late
    assert job.step(51, float("nan"), ranks=[7]) == []  # rank 7's NaN; ranks 4..6 not there yet
    job.t += 10
    [event] = job.detector.evaluate(T0 + timedelta(seconds=job.t))
    assert event.signature == "nonfinite" and event.suspect_ranks == [7] and event.first_bad_step == 51


def test_two_detectors_seeing_the_same_beats_give_the_same_event_id():
    a, b = Job(seed=3), Job(seed=3)
    for job in (a, b):
        job.run(range(1, 60))
        job.step(60, float("nan"))
    assert [e.event_id for e in a.events] == [e.event_id for e in b.events] and len(a.events) == 1


def test_unusable_constants_are_an_error_at_start():
    with pytest.raises(ValueError, match="min_history"):
        NumericsDetector("sim-a", window=10, min_history=20)
    with pytest.raises(ValueError, match="grad_factor"):
        NumericsDetector("sim-a", grad_factor=1.0)


def test_huge_finite_values_are_judged_without_overflowing():
    job = Job()
    job.run(range(1, 101))
    [event] = job.step(101, 1e308)
    assert event.signature == "loss_spike" and event.value == 1e308
    job = Job()
    for s in range(1, 101):  # a history spanning the whole float range: its MAD overflows to inf
        job.step(s, 1e308 if s % 2 else -1e308)
    assert job.events == []
    [event] = job.step(101, float("nan"))
    assert event.signature == "nonfinite"


def test_most_ranks_gradient_norms_turning_nan_together_single_out_none_of_them():
    job = Job()
    job.run(range(1, 51))
    nan = float("nan")
    [event] = job.step(51, 2.0, grads=dict.fromkeys(range(6), nan))
    assert event.signature == "nonfinite" and event.suspect_ranks == [] and "6 of 8" in event.reason


def test_a_late_beat_of_a_step_already_judged_is_not_judged_again_unless_it_is_not_finite():
    job = Job(NumericsDetector("sim-a", settle_s=5.0))
    job.run(range(1, 51))
    job.step(51, 2.0, ranks=range(4))
    job.t += 10
    assert job.detector.evaluate(T0 + timedelta(seconds=job.t)) == []  # judged without ranks 4..7
    assert job.step(51, 9.0, ranks=[4]) == []  # rank 4's late beat: step 51 is done
    assert job.events == []
    job.step(51, float("nan"), ranks=[5])  # but a NaN is a NaN, however late
    job.t += 10  # ranks 6 and 7 still not past step 51: judged after settle_s
    [event] = job.detector.evaluate(T0 + timedelta(seconds=job.t))
    assert event.signature == "nonfinite" and event.first_bad_step == 51 and event.last_good_step == 50


def test_corruption_that_returns_right_after_the_rollback_is_a_new_episode():
    # A GPU the diagnostics missed corrupts again as soon as the job restarts from its checkpoint:
    # the restart ended the first episode, so the second must be reported, not taken as its repeat.
    job = Job()
    job.run(range(1, 801))
    nan = float("nan")
    job.step(801, nan)
    job.step(802, nan)
    [first] = job.events
    job.step(601, 2.0)  # rolled back to the checkpoint of step 600
    job.step(602, nan)
    second = job.events[-1]
    assert len(job.events) == 2 and second.first_bad_step == 602 and second.last_good_step == 601
    assert second.event_id != first.event_id and not second.cleared

"""The numerics detector: training loss and gradient norms in, silent-data-corruption events out.

Silent data corruption raises no Xid and no ECC error; it shows in the numbers a job trains on
(Llama 3 saw 6 in 54 days on 16k H100s): a loss or gradient norm that turns NaN/Inf, a sudden loss
spike, one rank's gradients far off the others'. Per job, the beats of each step are gathered across
ranks and the step is judged once settled: every live rank has reported it or a later step (about
one heartbeat interval; the heartbeat helper sends a non-finite value at once, so every rank's
first NaN arrives together), or ``settle_s`` of detector time after the detector first saw it (a
rank that stopped); steps are judged in order, so the event is out within seconds:

- ``nonfinite``: a NaN/Inf loss, or every rank's gradient norm non-finite. The ranks are named only
  when some ranks' loss is non-finite and the others' finite (a reduced loss names no rank).
- ``grad_spike``: one rank's pre-reduction gradient norm is non-finite while its peers' are finite,
  or is ``grad_factor`` times above both its peers' median at that step (the last value each peer
  reported at or before it) and its own recent median. Both, because under tensor or pipeline
  parallelism ranks hold different shards whose norms differ for good; a rank's own history is
  steady. The rank and its GPU (``node/gpu``) are the suspects.
- ``loss_spike``: the step's loss (the median over the ranks that reported it: data-parallel ranks
  report the same reduced loss) is above ``median + max(k * 1.4826 * MAD, rel_floor * |median|,
  abs_floor)`` of the job's last ``window`` judged steps, once ``min_history`` steps are known.
  Only upward jumps count: a loss that falls is training.

Constants, measured by ``evals/benchmarks/numerics_margin.py`` on a seeded realistic loss (3% noise
with heavy tails, bumps to +15%, outliers to +20%; 20 seeds of 20,000 steps: no event, a clean step
at most +28% over the median and 9.4 robust sigmas; a spike of +60% always caught, +50% half the
time): ``k=10`` robust sigmas and ``rel_floor=0.5`` (half the loss; late in training the binding
one: benign bumps stay under it, SDC's NaN or doubled loss does not), ``window=256`` steps (follows
the decay, a stable MAD), ``min_history=32``, ``grad_factor=10`` (data-parallel ranks' norms are
within a small factor of each other). A spike never enters the history, nor raises the next bar.

One event per episode: the first anomaly opens it (``first_bad_step`` the step that showed it,
``last_good_step`` the last judged step before it; with beats published every ``min_interval_s``
the bad value happened in between, exactly at ``first_bad_step`` for a non-finite one, which the
heartbeat helper sends at once). Its ``event_id`` is stable (cluster, job, signature, step, the
earliest beat time of the step), so replicas and retries dedupe. After ``clear_after_steps`` judged
steps in range and ``clear_after_s`` of detector time, a ``cleared`` event closes it. A job whose
steps go back (a restart from a checkpoint) starts its history afresh: its loss may be higher than
it was, which is not a spike; non-finite values are still caught from the first beat. The restart
ends an open episode too, so corruption that comes back right after a rollback is reported again.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from datetime import datetime

from events.models import Heartbeat, NumericsEvent, NumericsSignature, stable_id

SOURCE = "numerics-detector"
MAD_TO_SIGMA = 1.4826
"""The MAD of a normal distribution times this is its standard deviation."""


@dataclass
class _Rank:
    node: str
    gpu: int | None
    step: int
    time: datetime
    reported: deque[tuple[int, float]] = field(default_factory=lambda: deque(maxlen=16))
    """Its last reported (step, gradient norm), finite or not."""
    grads: deque[float] = field(default_factory=lambda: deque(maxlen=64))
    """Its recent finite gradient norms that were in range: its own steady level."""

    def grad_at(self, step: int) -> float | None:
        """Its gradient norm at ``step``: the last it reported at or before it."""
        for at, value in reversed(self.reported):
            if at <= step:
                return value
        return None


@dataclass
class _Step:
    step: int
    first_seen: datetime
    losses: dict[int, float] = field(default_factory=dict)
    grads: dict[int, float] = field(default_factory=dict)
    pending_since: datetime | None = None


@dataclass
class _Anomaly:
    signature: NumericsSignature
    value: float | None
    baseline: float | None
    suspects: list[int]
    reason: str


@dataclass
class _Job:
    cluster: str
    ranks: dict[int, _Rank] = field(default_factory=dict)
    steps: dict[int, _Step] = field(default_factory=dict)
    history: deque[float] = field(default_factory=deque)
    last_good_step: int | None = None
    latest: datetime | None = None
    open: NumericsEvent | None = None
    good_steps: int = 0
    good_since: datetime | None = None
    judged: int = -1
    """The highest step judged: a late finite beat of an earlier step is not judged again."""
    learned: int = 0
    """Values appended to ``history`` so far."""
    stats: tuple[float, float, int] | None = None
    """(median, bar, ``learned`` then) of the history: recomputed every few new values."""


def _median(values: list[float]) -> float:
    """The median, without overflowing between two huge middle values (``statistics.median`` adds them)."""
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else ordered[mid - 1] / 2 + ordered[mid] / 2


class NumericsDetector:
    def __init__(
        self,
        cluster: str,
        *,
        k: float = 10.0,
        rel_floor: float = 0.5,
        abs_floor: float = 1e-6,
        window: int = 256,
        min_history: int = 32,
        grad_factor: float = 10.0,
        grad_history: int = 8,
        settle_s: float = 5.0,
        stale_after_s: float = 30.0,
        clear_after_steps: int = 20,
        clear_after_s: float = 60.0,
        forget_after_s: float = 3600.0,
        max_pending_steps: int = 4096,
        max_jobs: int = 10_000,
    ) -> None:
        if not (k > 0 and rel_floor >= 0 and abs_floor > 0 and grad_factor > 1):
            raise ValueError("numerics detector: k > 0, rel_floor >= 0, abs_floor > 0, grad_factor > 1")
        if not (0 < min_history <= window and clear_after_steps > 0):
            raise ValueError("numerics detector: 0 < min_history <= window, clear_after_steps > 0")
        self.cluster = cluster
        self.k, self.rel_floor, self.abs_floor = k, rel_floor, abs_floor
        self.window, self.min_history = window, min_history
        self.grad_factor, self.grad_history = grad_factor, grad_history
        self.settle_s, self.stale_after_s = settle_s, stale_after_s
        self.clear_after_steps, self.clear_after_s = clear_after_steps, clear_after_s
        self.forget_after_s = forget_after_s
        self.max_pending_steps = max_pending_steps
        self.max_jobs = max_jobs
        self._jobs: OrderedDict[str, _Job] = OrderedDict()

    def baseline(self, job: str) -> float | None:
        """The job's typical recent loss (the median of its history), once known."""
        state = self._jobs.get(job)
        return self._baseline(state) if state else None

    def observe(self, beat: Heartbeat) -> None:
        job = self._jobs.get(beat.job)
        if job is None:
            job = self._jobs[beat.job] = _Job(beat.cluster, history=deque(maxlen=self.window))
            while len(self._jobs) > self.max_jobs:
                self._jobs.popitem(last=False)
        else:
            self._jobs.move_to_end(beat.job)
        job.latest = max(job.latest or beat.time, beat.time)
        rank = job.ranks.get(beat.rank)
        if rank is not None and beat.step < rank.step:
            # Steps went back: restarted from a checkpoint. A new gang and an earlier, higher loss.
            # The restart also ends an open episode (the platform rolled the job back): corruption
            # that returns at once (a GPU the diagnostics missed) is a new episode, reported again.
            job.ranks.clear()
            job.steps.clear()
            job.history.clear()
            job.last_good_step, job.stats, job.judged = None, None, -1
            job.open, job.good_steps, job.good_since = None, 0, None
            rank = None
        if rank is None:
            rank = job.ranks[beat.rank] = _Rank(beat.node, beat.gpu, beat.step, beat.time)
        elif beat.step == rank.step:
            rank.time = max(rank.time, beat.time)
            return  # a keep-alive repeat of a step already seen
        rank.node, rank.gpu, rank.step, rank.time = beat.node, beat.gpu, beat.step, beat.time
        if beat.grad_norm is not None:
            rank.reported.append((beat.step, beat.grad_norm))
        values = [v for v in (beat.loss, beat.grad_norm) if v is not None]
        if not values or (beat.step <= job.judged and all(math.isfinite(v) for v in values)):
            return
        step = job.steps.get(beat.step)
        if step is None:
            step = job.steps[beat.step] = _Step(beat.step, beat.time)
            if len(job.steps) > self.max_pending_steps:
                del job.steps[min(job.steps)]
        step.first_seen = min(step.first_seen, beat.time)  # the same on every replica, whatever the order
        if beat.loss is not None:
            step.losses[beat.rank] = beat.loss
        if beat.grad_norm is not None:
            step.grads[beat.rank] = beat.grad_norm

    def evaluate(self, now: datetime) -> list[NumericsEvent]:
        """Judge the settled steps of every job; the numerics events (and clearances) due."""
        out: list[NumericsEvent] = []
        for name, job in list(self._jobs.items()):
            if job.latest is not None and (now - job.latest).total_seconds() > self.forget_after_s:
                del self._jobs[name]
                continue
            for step in self._settled(job, now):
                event = self._judge(name, job, step, now)
                if event is not None:
                    out.append(event)
        return out

    def _settled(self, job: _Job, now: datetime) -> list[_Step]:
        if not job.steps:
            return []
        assert job.latest is not None
        live = [
            r.step for r in job.ranks.values() if (job.latest - r.time).total_seconds() <= self.stale_after_s
        ]
        cutoff = min(live) if live else -1
        for s in job.steps.values():
            s.pending_since = s.pending_since or now
            if (now - s.pending_since).total_seconds() >= self.settle_s:
                cutoff = max(cutoff, s.step)  # and every step before it: judged in order
        ready = sorted(n for n in job.steps if n <= cutoff)
        job.judged = max([job.judged, *ready])
        return [job.steps.pop(n) for n in ready]

    def _judge(self, name: str, job: _Job, step: _Step, now: datetime) -> NumericsEvent | None:
        anomaly = self._nonfinite(job, step) or self._grad_spike(job, step) or self._loss_spike(job, step)
        self._learn(job, step, anomaly)
        if anomaly is not None:
            job.good_steps, job.good_since = 0, None
            if job.open is not None:
                return None  # the episode already reported
            job.open = self._event(name, job, step, anomaly, now)
            return job.open
        job.last_good_step = max(job.last_good_step or 0, step.step)
        if job.open is None:
            return None
        job.good_steps += 1
        job.good_since = job.good_since or now
        if (
            job.good_steps < self.clear_after_steps
            or (now - job.good_since).total_seconds() < self.clear_after_s
        ):
            return None
        opened, job.open, job.good_steps, job.good_since = job.open, None, 0, None
        return opened.model_copy(
            update={
                "event_id": stable_id(job.cluster, name, "numerics-cleared", opened.event_id),
                "time": now,
                "value": None,
                "reason": f"numerics back in range for {self.clear_after_steps} steps (to step {step.step})",
                "cleared": True,
            }
        )

    def _nonfinite(self, job: _Job, step: _Step) -> _Anomaly | None:
        bad = sorted(r for r, v in step.losses.items() if not math.isfinite(v))
        if bad:
            some = len(bad) * 2 <= len(step.losses)  # at most half the ranks: those ranks stand out
            return _Anomaly(
                "nonfinite",
                step.losses[bad[0]],
                self._baseline(job),
                bad if some else [],
                f"loss {step.losses[bad[0]]} at step {step.step}"
                + (f" on rank(s) {bad} while the other ranks' is finite" if some else ""),
            )
        bad = sorted(r for r, v in step.grads.items() if not math.isfinite(v))
        if not bad:
            return None
        peers = self._peer_grads(job, step, bad)
        if peers and len(bad) <= len(peers):
            return _Anomaly(
                "grad_spike",
                step.grads[bad[0]],
                _median(peers),
                bad,
                f"gradient norm {step.grads[bad[0]]} on rank(s) {bad} at step {step.step} while the "
                "other ranks' are finite",
            )
        what = "every rank's" if not peers else f"{len(bad)} of {len(bad) + len(peers)} ranks'"
        return _Anomaly(
            "nonfinite", step.grads[bad[0]], None, [], f"{what} gradient norm non-finite at step {step.step}"
        )

    def _peer_grads(self, job: _Job, step: _Step, exclude: list[int]) -> list[float]:
        """The other ranks' finite gradient norms at ``step`` (the last they reported before it when
        they did not report that step)."""
        out: list[float] = []
        for r, state in job.ranks.items():
            if r in exclude:
                continue
            value = state.grad_at(step.step)
            if value is not None and math.isfinite(value):
                out.append(value)
        return out

    def _grad_spike(self, job: _Job, step: _Step) -> _Anomaly | None:
        if not step.grads:
            return None
        at = {r: state.grad_at(step.step) for r, state in job.ranks.items()}
        finite = {r: v for r, v in at.items() if v is not None and math.isfinite(v)}
        if len(finite) < 2:
            return None
        # With three ranks or more the median of all is robust to the one being judged.
        everyone = _median(list(finite.values())) if len(finite) >= 3 else None
        suspects: list[tuple[int, float, float]] = []
        for r, value in sorted(step.grads.items()):
            if not math.isfinite(value):
                continue  # judged as non-finite
            peer = everyone if everyone is not None else _median([v for q, v in finite.items() if q != r])
            if value <= self.grad_factor * max(peer, self.abs_floor):
                continue
            own = job.ranks[r].grads
            if len(own) < self.grad_history or value <= self.grad_factor * max(
                _median(list(own)), self.abs_floor
            ):
                continue  # its own steady level unknown yet, or it is always that high (another shard)
            suspects.append((r, value, peer))
        if not suspects or (len(suspects) * 2 > len(step.grads) and len(step.grads) > 1):
            return None  # most ranks "above the others" is no outlier
        worst = max(suspects, key=lambda s: s[1])
        return _Anomaly(
            "grad_spike",
            worst[1],
            worst[2],
            [s[0] for s in suspects],
            f"gradient norm {worst[1]:.6g} on rank(s) {[s[0] for s in suspects]} at step {step.step}, over "
            f"{self.grad_factor:g}x the other ranks' ({worst[2]:.6g}) and its own recent level",
        )

    def _loss_spike(self, job: _Job, step: _Step) -> _Anomaly | None:
        if not step.losses or len(job.history) < self.min_history:
            return None
        value = _median(list(step.losses.values()))
        base, bar = self._stats(job)
        if value > bar:
            base, bar = self._stats(job, fresh=True)  # a spike is judged on the exact history
        if value <= bar:
            return None
        return _Anomaly(
            "loss_spike",
            value,
            base,
            [],
            f"loss {value:.6g} at step {step.step} above {bar:.6g} (recent median {base:.6g} over "
            f"{len(job.history)} steps)",
        )

    def _stats(self, job: _Job, *, fresh: bool = False) -> tuple[float, float]:
        """(median, bar) of the job's history; between refreshes (every 1/16 of the window's new
        values: sorting the window at every step is most of the detector's time) a bar a little old."""
        if fresh or job.stats is None or job.learned - job.stats[2] >= max(1, self.window // 16):
            base = _median(list(job.history))
            mad = _median([abs(h - base) for h in job.history])
            bar = base + max(self.k * MAD_TO_SIGMA * mad, self.rel_floor * abs(base), self.abs_floor)
            job.stats = (base, bar, job.learned)
        return job.stats[0], job.stats[1]

    def _baseline(self, job: _Job) -> float | None:
        return _median(list(job.history)) if len(job.history) >= self.min_history else None

    def _learn(self, job: _Job, step: _Step, anomaly: _Anomaly | None) -> None:
        """Only values in range teach the job: a spike never raises the bar for the next one."""
        losses = [v for v in step.losses.values() if math.isfinite(v)]
        if losses and anomaly is None:
            job.history.append(_median(losses))
            job.learned += 1
        flagged = set(anomaly.suspects) if anomaly is not None else set()
        for r, value in step.grads.items():
            state = job.ranks.get(r)
            if state is not None and r not in flagged and math.isfinite(value):
                state.grads.append(value)

    def _event(self, name: str, job: _Job, step: _Step, anomaly: _Anomaly, now: datetime) -> NumericsEvent:
        ranks = [job.ranks[r] for r in anomaly.suspects if r in job.ranks]
        suspect_nodes = list(dict.fromkeys(r.node for r in ranks))
        return NumericsEvent(
            event_id=stable_id(
                job.cluster, name, "numerics", anomaly.signature, step.step, step.first_seen.isoformat()
            ),
            time=now,
            cluster=job.cluster,
            source=SOURCE,
            node=suspect_nodes[0] if len(suspect_nodes) == 1 else None,
            job=name,
            signature=anomaly.signature,
            first_bad_step=step.step,
            # A late beat's bad step can be one judged good: the last good is before it, then.
            last_good_step=None if job.last_good_step is None else min(job.last_good_step, step.step - 1),
            value=anomaly.value,
            baseline=anomaly.baseline,
            nodes=list(dict.fromkeys(r.node for _, r in sorted(job.ranks.items()))),
            suspect_ranks=anomaly.suspects,
            suspect_gpus=[f"{r.node}/{r.gpu}" for r in ranks if r.gpu is not None],
            reason=anomaly.reason,
        )

"""Benchmark: how far a clean training loss stays below the numerics detector's loss-spike bar, and
the smallest spike it catches.

The curve (``realistic_loss``, also the false-positive guard of tests/events/detectors/
test_numerics.py) is a pre-training loss: a fast then slow decay, 3% per-step noise with heavy tails
(2% of the steps 8%), small bumps (+3..15%, decaying over ~30 steps, one every ~500 steps) and
single-step outliers (+5..20%, one every ~1000 steps). For each seed, 20,000 steps go through the
detector with its default constants (one rank per step), then the same curve with spikes of
+20%..+200% injected late in training, one at a time.

Reports, over the seeds: the events on the clean curves (must be 0), the highest rise of a clean
step over the history's median and its highest robust z (its distance in MAD sigmas), and per
spike size the share caught. Writes ``evals/out/numerics_margin.json``.
Run: ``.venv/bin/python -m evals.benchmarks.numerics_margin``
"""

from __future__ import annotations

import copy
import json
import math
import random
import statistics
from collections import deque
from datetime import UTC, datetime, timedelta
from pathlib import Path

from events.detectors.numerics import MAD_TO_SIGMA, NumericsDetector
from events.models import Heartbeat

OUT = Path(__file__).resolve().parents[1] / "out" / "numerics_margin.json"
T0 = datetime(2026, 12, 7, tzinfo=UTC)
SEEDS, STEPS = 20, 20_000
SPIKES = (0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0, 2.0)


def realistic_loss(steps: int, seed: int) -> list[float]:
    rng = random.Random(seed)
    out, bump = [], 0.0
    for t in range(steps):
        base = 2.0 + 6.0 * math.exp(-t / 400) + 1.5 / math.sqrt(1 + t / 1000)
        if rng.random() < 1 / 500:
            bump = max(bump, rng.uniform(0.03, 0.15))
        bump *= 0.97
        noise = rng.gauss(0, 0.03) if rng.random() > 0.02 else rng.gauss(0, 0.08)  # heavy tail
        outlier = rng.uniform(0.05, 0.2) if rng.random() < 1 / 1000 else 0.0
        out.append(base * (1 + noise + bump + outlier))
    return out


def feed(detector: NumericsDetector, step: int, loss: float) -> list[str]:
    at = T0 + timedelta(seconds=step)
    detector.observe(
        Heartbeat(cluster="bench", job="j", rank=0, node="n", step=step, step_time_s=1.0, time=at, loss=loss)
    )
    return [e.signature for e in detector.evaluate(at) if not e.cleared]


def margins(losses: list[float], detector: NumericsDetector) -> tuple[float, float]:
    """(highest rise over the median, highest robust z) of the clean steps, as the detector sees them."""
    history: deque[float] = deque(maxlen=detector.window)
    rise = z = 0.0
    for t, value in enumerate(losses):
        if len(history) >= detector.min_history and t % 4 == 0:
            base = statistics.median(history)
            mad = statistics.median(abs(h - base) for h in history)
            rise, z = max(rise, value / base - 1), max(z, (value - base) / (MAD_TO_SIGMA * mad))
        history.append(value)
    return rise, z


def main() -> None:
    defaults = NumericsDetector("bench")
    clean_events, rises, zs = 0, [], []
    caught = dict.fromkeys(SPIKES, 0)
    for seed in range(SEEDS):
        losses = realistic_loss(STEPS, seed)
        spike_at = random.Random(seed).randrange(STEPS // 2, STEPS - 100)
        detector = NumericsDetector("bench")
        for step, loss in enumerate(losses, start=1):
            if step == spike_at:  # each spike size on a copy of the detector as it is then
                for size in SPIKES:
                    caught[size] += "loss_spike" in feed(copy.deepcopy(detector), step, loss * (1 + size))
            clean_events += len(feed(detector, step, loss))
        rise, z = margins(losses, defaults)
        rises.append(rise)
        zs.append(z)
    result = {
        "seeds": SEEDS,
        "steps": STEPS,
        "constants": {"k": defaults.k, "rel_floor": defaults.rel_floor, "window": defaults.window},
        "events_on_clean_curves": clean_events,
        "highest_clean_rise_over_median": round(max(rises), 4),
        "highest_clean_robust_z": round(max(zs), 2),
        "spike_caught_share": {f"+{int(size * 100)}%": caught[size] / SEEDS for size in SPIKES},
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

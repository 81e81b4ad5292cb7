from __future__ import annotations

import dataclasses

import pytest

from events.detectors import DcgmDetector, HangDetector, TextSource, ThroughputDetector
from events.fabric import FabricMap
from events.models import Heartbeat
from fleet import FleetSpec, FleetTwin
from fleet.exporter import render_metrics
from fleet.telemetry import RankBeat


def heartbeat(beat: RankBeat, cluster: str = "sim-a") -> Heartbeat:
    return Heartbeat.model_validate({**dataclasses.asdict(beat), "cluster": cluster})


class Watched:
    """The small demo fleet with every detector attached, driven by the test's clock."""

    def __init__(self) -> None:
        self.twin = FleetTwin(FleetSpec.small(seed=7))
        self.fabric = FabricMap.from_labels({n.name: n.labels for n in self.twin.nodes.values()})
        self.hang = HangDetector("sim-a")
        self.throughput = ThroughputDetector("sim-a", fabric=self.fabric)
        self.dcgm = DcgmDetector("sim-a")
        self.source = TextSource(lambda: render_metrics(self.twin))
        self.twin.subscribe_heartbeats(self._beat)
        self.beats = 0

    def _beat(self, beat: RankBeat) -> None:
        self.beats += 1
        hb = heartbeat(beat)
        self.hang.observe(hb)
        self.throughput.observe(hb)

    def run(self, seconds: float, step_s: float = 10.0) -> list:
        """Advance the twin; the heartbeat detectors' events along the way."""
        out = []
        for _ in range(round(seconds / step_s)):
            self.twin.advance(step_s)
            now = self.twin.now()
            out += self.hang.evaluate(now) + self.throughput.evaluate(now)
        return out

    async def scrape(self) -> list:
        return self.dcgm.observe(await self.source.scrape(), self.twin.now())


@pytest.fixture
def twin() -> FleetTwin:
    return FleetTwin(FleetSpec.small(seed=7))


@pytest.fixture
def watched() -> Watched:
    w = Watched()
    w.twin.advance(45 * 60)
    w.run(100)  # a few heartbeats: throughput baselines are learned
    return w

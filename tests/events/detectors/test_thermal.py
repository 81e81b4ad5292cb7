"""The recurring-thermal-slowdown rule (events/detectors/thermal.py) and the DCGM detector reporting
it from the twin's dcgm-exporter: sustained or recurring slowdowns are a finding, one blip is not."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from events.dcgm_fields import CLOCKS_GPU_IDLE, CLOCKS_HW_THERMAL, CLOCKS_SW_POWER_CAP, CLOCKS_SW_THERMAL
from events.detectors.thermal import ThermalWatch
from events.models import EccEvent
from fleet.failure_model import PRECURSOR_THROTTLE_FACTOR, FaultDraw, apply_draw

T0 = datetime(2026, 12, 7, 12, tzinfo=UTC)
GPU = ("node-001", 3)
HOT = CLOCKS_SW_THERMAL | CLOCKS_HW_THERMAL


def feed(watch: ThermalWatch, pattern: str, start: datetime = T0, every_s: float = 15) -> list[int]:
    """Scrapes every ``every_s``: '#' slowed, '.' not; the indexes of the scrapes that reported."""
    out = []
    for i, mark in enumerate(pattern):
        at = start + timedelta(seconds=i * every_s)
        if watch.observe(GPU, HOT if mark == "#" else 0, at) is not None:
            out.append(i)
    return out


def test_a_sustained_slowdown_is_reported_once_at_the_eighth_slowed_scrape_of_twenty() -> None:
    assert feed(ThermalWatch(), "#" * 30) == [7]


def test_three_separate_episodes_within_the_hour_are_reported_at_the_third() -> None:
    episode = "##" + "." * 38  # 30 s of throttling, then ten quiet minutes
    assert feed(ThermalWatch(), episode * 3) == [80]


def test_one_isolated_blip_is_never_reported() -> None:
    assert feed(ThermalWatch(), "###" + "." * 200) == []


def test_two_episodes_are_not_enough_and_episodes_older_than_the_window_do_not_count() -> None:
    watch = ThermalWatch()
    assert feed(watch, "##" + "." * 38 + "##" + "." * 38) == []
    # the third comes 70 minutes after the first: the first has left the one-hour window
    later = T0 + timedelta(minutes=70)
    assert feed(watch, "##", start=later) == []


def test_a_slowdown_that_never_lets_up_is_reported_once() -> None:
    assert feed(ThermalWatch(), "#" * 200) == [7]


def test_after_twenty_clear_scrapes_a_reported_gpu_is_rearmed_and_reported_again() -> None:
    watch = ThermalWatch()
    assert feed(watch, "#" * 10) == [7]
    assert feed(watch, "." * 19 + "#" * 10, start=T0 + timedelta(minutes=5)) == []  # not clear long enough
    # a repair's reset cures it for five minutes (20 scrapes), then it comes back
    later = T0 + timedelta(minutes=20)
    assert feed(watch, "." * 20 + "#" * 10, start=later) == [27]


def test_a_gpu_without_a_slowdown_for_the_window_is_forgotten() -> None:
    watch = ThermalWatch()
    assert feed(watch, "##" + "." * 38 + "##") == []  # two episodes
    assert watch.observe(GPU, 0, T0 + timedelta(minutes=70)) is None  # an hour without a slowdown
    assert feed(watch, "##", start=T0 + timedelta(minutes=71)) == []  # a first episode again


def test_idle_and_power_cap_reasons_are_not_thermal() -> None:
    watch = ThermalWatch()
    for i in range(40):
        at = T0 + timedelta(seconds=15 * i)
        assert watch.observe(GPU, CLOCKS_GPU_IDLE | CLOCKS_SW_POWER_CAP, at) is None


def test_a_rule_that_cannot_match_is_an_error() -> None:
    with pytest.raises(ValueError):
        ThermalWatch(min_set=30, of_last=20)


async def test_the_detector_reports_the_twins_thermal_precursor_as_an_ecc_finding(watched) -> None:
    await watched.scrape()
    apply_draw(watched.twin, FaultDraw(cls="thermal", node="node-004", gpu=6, precursor="throttle"))
    assert watched.twin.telemetry.counters("node-004", 6).throttle == PRECURSOR_THROTTLE_FACTOR
    found: list[EccEvent] = []
    for _ in range(10):
        watched.twin.advance(15)
        found += [e for e in await watched.scrape() if isinstance(e, EccEvent)]
    [event] = found
    assert (event.node, event.gpu, event.findings) == ("node-004", 6, ["thermal_recurring"])
    assert event.clock_event_reasons & CLOCKS_HW_THERMAL and "thermal" in event.reason


async def test_the_detector_says_nothing_of_one_throttle_blip(watched) -> None:
    await watched.scrape()
    watched.twin.throttle_gpu("node-004", 6, 1.15)
    watched.twin.advance(15)
    assert await watched.scrape() == []
    watched.twin.throttle_gpu("node-004", 6, 1.0)
    for _ in range(30):
        watched.twin.advance(15)
        assert await watched.scrape() == []

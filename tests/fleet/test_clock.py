from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from fleet import RealTimeDriver, VirtualClock


def test_the_clock_starts_at_its_epoch_and_moves_only_when_advanced() -> None:
    epoch = datetime(2026, 11, 29, 6, 50, tzinfo=UTC)
    clock = VirtualClock(epoch)
    assert clock.now() == epoch
    assert clock.elapsed_s == 0.0
    assert clock.advance(90.5) == epoch + timedelta(seconds=90.5)
    assert clock.now() == epoch + timedelta(seconds=90.5)
    assert clock.elapsed_s == 90.5


def test_the_clock_is_utc_even_when_the_epoch_has_another_offset() -> None:
    epoch = datetime.fromisoformat("2026-11-29T07:50:00+01:00")
    clock = VirtualClock(epoch)
    assert clock.now().utcoffset() == timedelta(0)
    assert clock.now() == datetime(2026, 11, 29, 6, 50, tzinfo=UTC)


def test_the_clock_refuses_naive_epochs_and_going_backwards() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        VirtualClock(datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="negative"):
        VirtualClock().advance(-1)


def test_many_small_advances_add_up_exactly() -> None:
    clock = VirtualClock()
    for _ in range(1440):
        clock.advance(60.0)
    assert clock.elapsed_s == 86_400.0
    assert clock.now() == clock.epoch + timedelta(days=1)


def test_the_real_time_driver_scales_wall_time_by_speed() -> None:
    wall = iter([100.0, 100.5, 102.5, 102.0])
    driver = RealTimeDriver(speed=60.0, wall_clock=lambda: next(wall))
    assert driver.speed == 60.0
    assert driver.take() == 30.0
    assert driver.take() == 120.0
    assert driver.take() == 0.0  # a wall clock that steps back never moves simulated time back


def test_the_real_time_driver_refuses_a_non_positive_speed() -> None:
    with pytest.raises(ValueError, match="speed must be positive"):
        RealTimeDriver(speed=0)

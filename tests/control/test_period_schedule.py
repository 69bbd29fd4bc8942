"""When the live service steps: once per period of the plant, never twice within one."""

from __future__ import annotations

import pytest

from control.period_schedule import PeriodSchedule


def test_a_step_waits_for_the_plant_clock_to_move_on_by_a_period() -> None:
    schedule = PeriodSchedule(period_s=300.0, clock_per_wall=300.0)  # 1 s of wall a period
    assert schedule.wait_s(1_000.0) == 0.0  # the first step is due at once
    schedule.stepped(1_000.0)
    # A tick when the plant has moved on by only 140 s (it ran slow, or the tick came
    # early after a long step): wait for the rest of the period, in plant time.
    assert schedule.wait_s(1_140.0) == pytest.approx((1_270.0 - 1_140.0) / 300.0)
    assert schedule.wait_s(1_269.0) == pytest.approx(0.02)  # never a busy loop
    assert schedule.wait_s(1_270.0) == 0.0  # within the tolerance of a period: due
    assert schedule.wait_s(1_900.0) == 0.0  # late: due, once
    schedule.stepped(1_900.0)
    assert schedule.wait_s(1_901.0) > 0.0
    # On the unix clock of a site at real pace the period is wall time.
    unix = PeriodSchedule(period_s=300.0, clock_per_wall=1.0)
    unix.stepped(0.0)
    assert unix.wait_s(100.0) == pytest.approx(170.0)
    assert unix.wait_s(-1e9) == pytest.approx(300.0)  # at most a period at a time


def test_ticks_missed_by_a_long_step_are_dropped_not_caught_up() -> None:
    schedule = PeriodSchedule(period_s=300.0, clock_per_wall=300.0)
    assert schedule.next_tick(10.0, monotonic_now=10.2) == pytest.approx(11.0)
    # The step took 3.5 s: the next tick is now, not three ticks back to back.
    assert schedule.next_tick(10.0, monotonic_now=13.5) == pytest.approx(13.5)


def test_a_schedule_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="positive period"):
        PeriodSchedule(period_s=0.0, clock_per_wall=1.0)
    with pytest.raises(ValueError, match="tolerance"):
        PeriodSchedule(period_s=300.0, clock_per_wall=1.0, tolerance=1.0)

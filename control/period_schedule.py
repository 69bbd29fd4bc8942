"""When the live service steps its controller: once per control period of the clock it
controls on, never twice within one.

The service wakes on wall-clock ticks (one control period scaled by the site's
``time_scale``), but the controller's and the shield's rate limits are per period *of the
plant*. Two things break that if the ticks alone decide: a step that runs long (a busy host)
makes the next ticks due at once, and a plant (or an emulator) that runs slow has not moved
on by a period when the tick comes. :class:`PeriodSchedule` answers both: a step is due only
once the controller's clock has moved on by the period (less a tolerance) since the last
step, and ticks missed meanwhile are dropped, never run back to back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

PERIOD_TOLERANCE = 0.1
"""A step is due once the clock has moved on by this share less than one period."""


@dataclass
class PeriodSchedule:
    """The stepping rule of one service (see the module docstring)."""

    period_s: float
    """A control period on the clock the controller is stepped with (plant or unix s)."""
    clock_per_wall: float
    """That clock's seconds per wall second (the site's ``time_scale`` on the plant clock,
    1 on the unix clock)."""
    tolerance: float = PERIOD_TOLERANCE
    last_s: float = -math.inf

    def __post_init__(self) -> None:
        if not (self.period_s > 0 and self.clock_per_wall > 0 and 0 <= self.tolerance < 1):
            raise ValueError("a schedule needs a positive period and pace, tolerance in [0, 1)")

    @property
    def wall_period_s(self) -> float:
        return self.period_s / self.clock_per_wall

    def wait_s(self, now_s: float) -> float:
        """Wall seconds to wait before the step at clock time ``now_s`` is due: 0 when it
        is due, the remaining time (at least a fiftieth of a period, at most one) when not."""
        due = self.last_s + (1.0 - self.tolerance) * self.period_s
        if now_s >= due:
            return 0.0
        remaining = (due - now_s) / self.clock_per_wall
        return min(max(remaining, 0.02 * self.wall_period_s), self.wall_period_s)

    def stepped(self, now_s: float) -> None:
        """The controller stepped at clock time ``now_s``."""
        self.last_s = now_s

    def next_tick(self, tick: float, monotonic_now: float) -> float:
        """The wall tick after ``tick`` (monotonic seconds): one wall period on, or now when
        the step ran past it (missed ticks are dropped, not caught up)."""
        return max(tick + self.wall_period_s, monotonic_now)

"""A field device's own clock: the time its readings are stamped with.

A BACnet device tells its time in its device object's ``local-date`` and ``local-time``
(what a BMS controller shows on its panel). TwinLoop's BACnet client reads them in every
poll, so a poll's readings carry the device's time of the sample, not the moment the
answer arrived here. That is what lets ``twinloop serve`` run an emulated site on the
plant's clock over BACnet exactly as over MQTT (where the emulator stamps each reading).

**The emulated plant's calendar.** Plant times count seconds from 1 January 00:00 of the
weather file's typical year (``scenario.start_h * 3600 + plant time``); the plant's year
has 365 days, so in a leap year the calendar steps over 29 February
(:class:`PlantCalendar`; the dashboard shows times the same way,
:class:`dashboards.site_time.SiteClock`).

**A device's clock is a network input.** :class:`DeviceClockGuard` checks every time a
device gives before a reading is stamped with it, and names what it refuses:

- ``missing``: the device did not give its date and time, or gave one that is no date
  (a wildcard, 30 February, a day the calendar lacks);
- ``outside_window``: before or after the times the site can have (the scenario's span);
- ``backwards``: earlier than the last accepted time (a device cannot un-sample);
- ``ahead``: further ahead of the last accepted time than the wall time since, at the
  plant's speed, allows (plus ``tolerance_s`` of wall time and one ``max_step_s``).

A refused clock refuses the poll's readings with it (the
:class:`~connectors.field_ingestion.FieldIngestor` treats the poll as unanswered), so a
device lying about time can neither move the plant clock the controller reads nor write
readings at a time it chose.
"""

from __future__ import annotations

import calendar
import logging
import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

logger = logging.getLogger(__name__)

_DAY_S = 86_400.0
_YEAR_S = 365 * _DAY_S
_FEB_29_S = 59 * _DAY_S
DEFAULT_TOLERANCE_S = 5.0
"""Wall seconds a device's clock may run ahead of the plant's pace (a late poll, a busy
device loop)."""
DEFAULT_MAX_STEP_S = 3600.0
"""Plant seconds a device's clock may be ahead besides its pace."""

REASONS: tuple[str, ...] = ("missing", "outside_window", "backwards", "ahead")


def calendar_datetime(first_year: int, time_s: float) -> datetime:
    """The naive date and time of plant second ``time_s`` on the 365-day calendar from
    1 January ``first_year`` (29 February stepped over)."""
    k, rest = divmod(float(time_s), _YEAR_S)
    year = first_year + int(k)
    leap_skip = _DAY_S if calendar.isleap(year) and rest >= _FEB_29_S else 0.0
    return datetime(year, 1, 1) + timedelta(seconds=rest + leap_skip)


def calendar_seconds(first_year: int, local: datetime) -> float | None:
    """Plant seconds of a naive date and time on that calendar (the inverse of
    :func:`calendar_datetime`); None for 29 February, which is not on it."""
    if calendar.isleap(local.year) and (local.month, local.day) == (2, 29):
        return None
    into_year = (local - datetime(local.year, 1, 1)).total_seconds()
    if calendar.isleap(local.year) and local.month > 2:
        into_year -= _DAY_S
    return (local.year - first_year) * _YEAR_S + into_year


class DeviceClockError(ValueError):
    """A date and time that is not on the plant's calendar."""


@dataclass(frozen=True)
class PlantCalendar:
    """Plant seconds <-> the local date and time of a 365-day year from 1 January ``year``."""

    year: int

    def __post_init__(self) -> None:
        if not 1 <= self.year <= 9000:
            raise DeviceClockError(f"plant year {self.year} is not a calendar year")

    def local(self, time_s: float) -> datetime:
        """The plant calendar's date and time of plant second ``time_s`` (naive)."""
        if not math.isfinite(time_s) or time_s < 0:
            raise DeviceClockError(f"plant time {time_s!r} is not on the calendar")
        if self.year + int(float(time_s) // _YEAR_S) > 9999:
            raise DeviceClockError(f"plant time {time_s!r} is past year 9999")
        return calendar_datetime(self.year, time_s)

    def seconds(self, local: datetime) -> float:
        """Plant seconds of a date and time on the calendar (the inverse of :meth:`local`);
        29 February and years before ``year`` are not on it."""
        if local.year < self.year:
            raise DeviceClockError(f"{local:%Y-%m-%d} is before the plant's year {self.year}")
        seconds = calendar_seconds(self.year, local)
        if seconds is None:
            raise DeviceClockError(f"{local:%Y-%m-%d} is not on the plant's 365-day calendar")
        return seconds


class DeviceClockGuard:
    """Checks a device's times before readings are stamped with them (module docstring).

    ``speed`` is plant seconds per wall second (the emulator's pace; 1 on a real site);
    ``window`` the earliest and latest time the device may give, if known."""

    def __init__(
        self,
        *,
        speed: float = 1.0,
        window: tuple[float, float] | None = None,
        tolerance_s: float = DEFAULT_TOLERANCE_S,
        max_step_s: float = DEFAULT_MAX_STEP_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if not (math.isfinite(speed) and speed > 0):
            raise ValueError(f"speed must be positive, got {speed}")
        if not (tolerance_s >= 0 and max_step_s > 0):
            raise ValueError("tolerance_s must be >= 0 and max_step_s positive")
        if window is not None and not (
            math.isfinite(window[0]) and math.isfinite(window[1]) and window[0] <= window[1]
        ):
            raise ValueError(f"window must be two finite times, earliest first: {window}")
        self.speed = float(speed)
        self.window = window
        self.tolerance_s = float(tolerance_s)
        self.max_step_s = float(max_step_s)
        self._monotonic = monotonic
        self.last_s: float | None = None
        self._last_mono = 0.0
        self._counts: Counter[str] = Counter({f"clock_refused.{r}": 0 for r in REASONS})

    def check(self, device_s: float | None) -> tuple[float | None, str]:
        """The device's time if believable, else None and the named reason."""
        mono = self._monotonic()
        reason = self._reason(device_s, mono)
        if reason:
            self._counts[f"clock_refused.{reason}"] += 1
            return None, reason
        assert device_s is not None
        self.last_s, self._last_mono = float(device_s), mono
        self._counts["clock_accepted"] += 1
        return float(device_s), ""

    def _reason(self, device_s: float | None, mono: float) -> str:
        if device_s is None or isinstance(device_s, bool) or not math.isfinite(device_s):
            return "missing"
        if self.window is not None and not self.window[0] <= device_s <= self.window[1]:
            return "outside_window"
        if self.last_s is None:
            return ""
        if device_s < self.last_s:
            return "backwards"
        elapsed = max(0.0, mono - self._last_mono)
        horizon = self.last_s + (elapsed + self.tolerance_s) * self.speed + self.max_step_s
        return "ahead" if device_s > horizon else ""

    def counters(self) -> dict[str, int]:
        """``clock_accepted`` and ``clock_refused.<reason>`` for each of :data:`REASONS`."""
        return dict(self._counts)

"""One time base for every page: the historian's times as the site's local date and time.

A real site's readings carry Unix seconds (wall time); they are shown in the site's time
zone. The emulated site's readings carry *plant* seconds counted from 1 January 00:00 of its
weather file's typical year (``scenario.start_h * 3600 + plant time``, see
:func:`control.live.plant_hour_of_year`); :meth:`SiteClock.plant` maps them to that year's
calendar in the weather file's own zone (typical-year files are in local standard time,
e.g. UTC−05:00 for Miami). The plant's year has 365 days: in a leap weather year the
calendar steps over 29 February, so a scenario starting "07-01" is shown on 1 July.

Decisions of the reservoir are stamped on the wall clock. On a real site that is the
readings' clock; on the emulated one :meth:`SiteClock.from_wall` maps them onto plant time
through an anchor (the plant time at one wall instant and the emulator's speed), so the
audit reads on one time base. Without an anchor a plant clock cannot place a wall time and
says so (None).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd

from connectors.device_clock import calendar_datetime, calendar_seconds
from twinloop.errors import TwinLoopError


class SiteClockError(TwinLoopError, ValueError):
    """A time zone or plant calendar that cannot be used (named in the message)."""


def zone_named(name: str) -> tzinfo:
    """The IANA time zone ``name`` (e.g. ``Europe/Berlin``), or "UTC"."""
    if name.upper() == "UTC":
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise SiteClockError(
            f"unknown time zone {name!r} (an IANA name such as Europe/Berlin, or UTC)"
        ) from None


def machine_zone() -> tzinfo:
    """This machine's local zone (its offset now), for a site that names none."""
    return datetime.now().astimezone().tzinfo or UTC


@dataclass(frozen=True)
class WallAnchor:
    """Plant second ``plant_s`` happened at Unix second ``wall_s``; the plant advances
    ``speed`` plant seconds per wall second."""

    plant_s: float
    wall_s: float
    speed: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.plant_s) and math.isfinite(self.wall_s)):
            raise SiteClockError("a wall anchor needs finite times")
        if not (math.isfinite(self.speed) and self.speed > 0):
            raise SiteClockError(f"a wall anchor needs a positive speed, got {self.speed}")


@dataclass(frozen=True)
class SiteClock:
    """How historian times map to the site's calendar (module docstring)."""

    zone: tzinfo
    plant_year: int | None = None
    """None: historian times are Unix seconds (a real site). Else the typical year whose
    1 January 00:00 (in ``zone``) is plant second 0."""
    anchor: WallAnchor | None = None
    """Places wall-clock instants (decisions) on a plant clock."""

    @classmethod
    def wall(cls, zone: tzinfo | str | None = None) -> SiteClock:
        """A real site: Unix times shown in ``zone`` (default: this machine's)."""
        if isinstance(zone, str):
            zone = zone_named(zone)
        return cls(zone=zone or machine_zone())

    @classmethod
    def plant(
        cls, year: int, zone: tzinfo | str = UTC, anchor: WallAnchor | None = None
    ) -> SiteClock:
        """An emulated site whose plant second 0 is 1 January ``year`` 00:00 in ``zone``."""
        if isinstance(zone, str):
            zone = zone_named(zone)
        if not 1 <= year <= 9000:
            raise SiteClockError(f"plant year {year} is not a calendar year")
        return cls(zone=zone, plant_year=int(year), anchor=anchor)

    @classmethod
    def for_weather_start(
        cls, start: pd.Timestamp | None, anchor: WallAnchor | None = None
    ) -> SiteClock:
        """The emulated site of a weather series that starts at ``start`` (its first row as
        the reader labels it; its zone is the file's, UTC when the file names none)."""
        if start is None:
            raise SiteClockError("the weather series has no start date: no calendar to map to")
        return cls.plant(start.year, start.tzinfo or UTC, anchor)

    @property
    def is_plant(self) -> bool:
        return self.plant_year is not None

    def with_anchor(self, anchor: WallAnchor) -> SiteClock:
        return SiteClock(self.zone, self.plant_year, anchor)

    # ------------------------------------------------------------------ conversions
    def _plant_naive(self, time_s: np.ndarray) -> pd.DatetimeIndex:
        """Local (naive) datetimes of plant seconds; NaN stays NaT."""
        assert self.plant_year is not None
        year = self.plant_year
        return pd.DatetimeIndex(
            [calendar_datetime(year, float(t)) if math.isfinite(t) else None for t in time_s]
        )

    def local(self, times_s: Iterable[float]) -> pd.DatetimeIndex:
        """Site-local datetimes (naive: the wall clock of the site) of historian times, for
        chart axes."""
        values = np.asarray(list(times_s), dtype=float)
        if self.is_plant:
            return self._plant_naive(values)
        stamps = pd.to_datetime(values, unit="s", utc=True).tz_convert(self.zone)
        return stamps.tz_localize(None)

    def historian_time(self, local: datetime) -> float:
        """The historian time of a site-local date and time (naive: the site's wall clock,
        as :meth:`local` shows it), the inverse of :meth:`local`. A wall clock's repeated
        hour (clocks going back) is its first pass. On a plant clock 29 February is not on the
        365-day calendar and is refused."""
        if local.tzinfo is not None:
            local = local.astimezone(self.zone).replace(tzinfo=None)
        if not self.is_plant:
            return float(local.replace(tzinfo=self.zone, fold=0).timestamp())
        assert self.plant_year is not None
        seconds = calendar_seconds(self.plant_year, local)
        if seconds is None:
            raise SiteClockError(
                f"{local:%Y-%m-%d} is not on the emulated plant's 365-day calendar"
            )
        return seconds

    def timestamp(self, time_s: float) -> pd.Timestamp:
        """One historian time as a site-local, zone-aware timestamp."""
        if self.is_plant:
            return pd.Timestamp(self._plant_naive(np.array([float(time_s)]))[0]).tz_localize(
                self.zone
            )
        return pd.Timestamp(float(time_s), unit="s", tz="UTC").tz_convert(self.zone)

    def text(self, time_s: float) -> str:
        """One historian time for a label: ``2026-07-03 14:05:09 UTC-05:00`` (or ``CET``)."""
        if not math.isfinite(time_s):
            return "—"
        stamp = self.timestamp(time_s)
        return f"{stamp:%Y-%m-%d %H:%M:%S} {self.zone_label(stamp)}"

    def zone_label(self, at: pd.Timestamp | None = None) -> str:
        """The zone's name at ``at`` (its abbreviation, or UTC±hh:mm)."""
        stamp = at if at is not None else pd.Timestamp.now(tz=self.zone)
        name = stamp.tzname() or ""
        if not name or name.startswith(("+", "-")):
            offset = stamp.utcoffset() or timedelta(0)
            minutes = int(offset.total_seconds() // 60)
            sign = "+" if minutes >= 0 else "-"
            name = f"UTC{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
        return name

    def axis_title(self) -> str:
        """The x-axis title of every trend."""
        what = "emulated plant" if self.is_plant else "site"
        return f"{what} time ({self.zone_label()})"

    def describe(self) -> str:
        """One line for the page header: which clock and zone the times are in."""
        if self.is_plant:
            return f"site time {self.zone_label()} · emulated plant, weather year {self.plant_year}"
        return f"site time {self.zone_label()} · wall clock"

    def from_wall(self, wall_s: float) -> float | None:
        """The historian time of a wall-clock instant (Unix seconds); None where a plant
        clock has no anchor to place it."""
        if not self.is_plant:
            return float(wall_s)
        if self.anchor is None:
            return None
        return self.anchor.plant_s + (float(wall_s) - self.anchor.wall_s) * self.anchor.speed

    def wall_text(self, iso_utc: str) -> str:
        """A wall-clock stamp (ISO 8601, e.g. a reservoir decision's ``created_at``) on the
        site's time base; marked "(wall clock, UTC)" where a plant clock cannot place it."""
        try:
            stamp = pd.Timestamp(iso_utc)
        except ValueError:
            return iso_utc
        if stamp.tzinfo is None:
            stamp = stamp.tz_localize("UTC")
        placed = self.from_wall(stamp.timestamp())
        if placed is None:
            return f"{stamp.tz_convert('UTC'):%Y-%m-%d %H:%M:%S} (wall clock, UTC)"
        return self.text(placed)

"""Historian times on the site's calendar: the emulated plant's clock on its weather year in
the weather file's zone, a real site's Unix times in its IANA zone, and wall-clock decisions
placed on the plant's clock through an anchor."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from dashboards.site_time import SiteClock, SiteClockError, WallAnchor, zone_named
from physics.weather import hour_of_year, load_weather

MIAMI = dt.timezone(dt.timedelta(hours=-5))


def test_the_demo_sites_plant_time_is_a_july_day_in_miami() -> None:
    clock = SiteClock.for_weather_start(load_weather("pvlib:miami").start)
    assert clock.plant_year == 1962 and clock.zone.utcoffset(None) == dt.timedelta(hours=-5)
    time_s = hour_of_year(7, 3, 14.5) * 3600.0 + 9.0  # the tropical week starts on 07-01
    assert clock.text(time_s) == "1962-07-03 14:30:09 UTC-05:00"
    assert clock.axis_title() == "emulated plant time (UTC-05:00)"
    assert "weather year 1962" in clock.describe()


def test_a_leap_weather_year_steps_over_29_february() -> None:
    clock = SiteClock.plant(1988, MIAMI)
    assert clock.text(hour_of_year(2, 28, 23.0) * 3600.0).startswith("1988-02-28 23:00")
    assert clock.text(hour_of_year(3, 1) * 3600.0).startswith("1988-03-01 00:00")
    assert clock.text(hour_of_year(7, 1) * 3600.0).startswith("1988-07-01 00:00")
    # Past the typical year the calendar goes on into the next one.
    assert clock.text(365 * 86400.0 + 3600.0).startswith("1989-01-01 01:00")


def test_chart_axes_are_naive_site_local_times_and_gaps_stay_gaps() -> None:
    clock = SiteClock.plant(1962, MIAMI)
    axis = clock.local([hour_of_year(7, 1, 6.0) * 3600.0, float("nan")])
    assert axis[0] == pd.Timestamp("1962-07-01 06:00") and axis[0].tzinfo is None
    assert pd.isna(axis[1])
    wall = SiteClock.wall("Europe/Berlin").local(np.array([1_751_371_200.0]))  # 12:00 UTC
    assert wall[0] == pd.Timestamp("2025-07-01 14:00")


def test_a_real_site_shows_wall_time_in_its_zone_with_daylight_saving() -> None:
    clock = SiteClock.wall("Europe/Berlin")
    assert clock.text(1_751_371_200.0) == "2025-07-01 14:00:00 CEST"
    assert clock.text(1_735_732_800.0) == "2025-01-01 13:00:00 CET"
    assert clock.from_wall(1_751_371_200.0) == 1_751_371_200.0
    assert clock.wall_text("2025-07-01T12:00:00+00:00") == "2025-07-01 14:00:00 CEST"
    assert SiteClock.wall("UTC").text(0.0) == "1970-01-01 00:00:00 UTC"


def test_decisions_are_placed_on_the_plant_clock_through_the_anchor() -> None:
    start_s = hour_of_year(7, 1) * 3600.0
    anchor = WallAnchor(plant_s=start_s, wall_s=1_764_936_000.0, speed=300.0)
    clock = SiteClock.plant(1962, MIAMI, anchor)
    # 12 wall seconds after the anchor at 300x: one hour of plant time later.
    assert clock.from_wall(1_764_936_012.0) == pytest.approx(start_s + 3600.0)
    assert clock.wall_text("2025-12-05T12:00:12+00:00") == "1962-07-01 01:00:00 UTC-05:00"
    unanchored = SiteClock.plant(1962, MIAMI)
    assert unanchored.from_wall(1_764_936_012.0) is None
    assert unanchored.wall_text("2025-12-05T12:00:12+00:00") == (
        "2025-12-05 12:00:12 (wall clock, UTC)"
    )


def test_bad_zones_and_calendars_are_refused_with_their_name() -> None:
    with pytest.raises(SiteClockError, match="Mars/Olympus"):
        zone_named("Mars/Olympus")
    with pytest.raises(SiteClockError, match="no start date"):
        SiteClock.for_weather_start(None)
    with pytest.raises(SiteClockError, match="positive speed"):
        WallAnchor(0.0, 0.0, 0.0)
    with pytest.raises(SiteClockError, match="not a calendar year"):
        SiteClock.plant(0)

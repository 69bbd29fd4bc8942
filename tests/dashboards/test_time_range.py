"""The trend pages' time range: presets from the newest reading, an absolute range typed in
site-local time on either clock, and clear refusals of what cannot be used."""

from __future__ import annotations

import datetime as dt

import pytest

from dashboards.site_time import SiteClock
from dashboards.time_range import (
    ABSOLUTE,
    TimeRangeError,
    choose_absolute,
    parse_local,
    range_key,
    resolve,
)
from physics.weather import hour_of_year

MIAMI = dt.timezone(dt.timedelta(hours=-5))
PLANT = SiteClock.plant(1962, MIAMI)
BERLIN = SiteClock.wall("Europe/Berlin")


@pytest.mark.parametrize(
    ("choice", "hours"), [("1h", 1.0), ("6h", 6.0), ("24h", 24.0), ("7d", 168.0), (3.0, 3.0)]
)
def test_presets_end_at_the_newest_reading(choice: str | float, hours: float) -> None:
    rng = resolve(choice, "ignored", "ignored", clock=PLANT, newest_s=1.0e6)
    assert rng.until_s == 1.0e6 and rng.since_s == pytest.approx(1.0e6 - hours * 3600.0)


def test_all_starts_at_the_oldest_and_no_choice_is_six_hours() -> None:
    rng = resolve("all", None, None, clock=PLANT, newest_s=5.0)
    assert rng.since_s is None and rng.start_or(-1.0) == -1.0 and rng.label == "all"
    assert resolve(None, None, None, clock=PLANT, newest_s=7200.0 * 4).label == "last 6 h"


def test_a_plant_clock_reads_the_calendar_its_axes_show() -> None:
    time_s = hour_of_year(7, 3, 14.5) * 3600.0
    assert parse_local("1962-07-03 14:30", PLANT, "start") == time_s
    assert parse_local(" 1962-07-03T14:30:09 ", PLANT, "start") == time_s + 9.0
    # The round trip through the axes' own values.
    assert PLANT.historian_time(PLANT.local([time_s + 61.0])[0].to_pydatetime()) == time_s + 61.0
    leap = SiteClock.plant(1988, MIAMI)
    march = hour_of_year(3, 1, 0.0) * 3600.0
    assert parse_local("1988-03-01 00:00", leap, "end") == march
    with pytest.raises(TimeRangeError, match="not on the emulated plant's 365-day calendar"):
        parse_local("1988-02-29 12:00", leap, "start")


def test_a_wall_clock_reads_the_sites_zone() -> None:
    # 14:00 in Berlin in July is 12:00 UTC; a stated offset is honoured.
    noon_utc = dt.datetime(2026, 7, 3, 12, tzinfo=dt.UTC).timestamp()
    assert parse_local("2026-07-03 14:00", BERLIN, "start") == noon_utc
    assert parse_local("2026-07-03 12:00+00:00", BERLIN, "start") == noon_utc


def test_an_absolute_range() -> None:
    rng = resolve(ABSOLUTE, "1962-07-01 00:30", "1962-07-01 02:00", clock=PLANT, newest_s=0.0)
    start = hour_of_year(7, 1, 0.5) * 3600.0
    assert (rng.since_s, rng.until_s) == (start, start + 5400.0)
    assert rng.label == "1962-07-01 00:30:00 UTC-05:00 to 1962-07-01 02:00:00 UTC-05:00"


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        (
            "1962-07-01 02:00",
            "1962-07-01 01:00",
            "the end (1962-07-01 01:00:00 UTC-05:00) is "
            "not after the start (1962-07-01 02:00:00 UTC-05:00)",
        ),
        ("1962-07-01 02:00", "1962-07-01 02:00", "is not after the start"),
        (
            "yesterday-ish",
            "1962-07-01 01:00",
            "the start 'yesterday-ish' is not a date and time: type it as YYYY-MM-DD HH:MM",
        ),
        ("1962-07-01 00:00", "1962-13-45 25:00", "the end '1962-13-45 25:00' is not a date"),
        ("", "1962-07-01 01:00", "the start is empty"),
        ("1962-07-01 00:00", None, "the end is empty"),
    ],
)
def test_bad_absolute_ranges_are_refused_with_a_message(
    start: str | None, end: str | None, message: str
) -> None:
    with pytest.raises(TimeRangeError) as caught:
        resolve(ABSOLUTE, start, end, clock=PLANT, newest_s=0.0)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("choice", "message"), [("3d", "unknown time range '3d'"), (-1.0, "positive")]
)
def test_unknown_presets_are_refused(choice: str | float, message: str) -> None:
    with pytest.raises(TimeRangeError, match=message):
        resolve(choice, None, None, clock=PLANT, newest_s=0.0)


def test_typing_both_ends_selects_the_absolute_range_and_keys_the_zoom() -> None:
    assert choose_absolute("1962-07-01 00:00", " 1962-07-01 01:00", "6h") == ABSOLUTE
    assert choose_absolute("1962-07-01 00:00", "  ", "6h") == "6h"
    assert range_key("6h", "a", "b") == "6h"
    assert range_key(ABSOLUTE, " a", "b ") == "absolute|a|b" != range_key(ABSOLUTE, "a", "c")

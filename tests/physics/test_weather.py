"""physics.weather: pvlib-read typical years, interpolation, heat waves, EPW round trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from physics.psychrometrics import rel_hum_from_dew_point
from physics.weather import (
    WeatherError,
    WeatherSeries,
    hour_of_year,
    load_weather,
)

EPW_HEADER = [
    "LOCATION,Miami Intl Ap,FL,USA,TMY2-12839,722020,25.80,-80.27,-5.0,2.0",
    "DESIGN CONDITIONS,0",
    "TYPICAL/EXTREME PERIODS,0",
    "GROUND TEMPERATURES,0",
    "HOLIDAYS/DAYLIGHT SAVINGS,No,0,0,0",
    "COMMENTS 1,Written by the TwinLoop test suite from pvlib's Miami TMY2 file",
    "COMMENTS 2,Only temperature humidity and pressure are meaningful",
    "DATA PERIODS,1,1,Data,Sunday, 1/ 1,12/31",
]
# Fields 11-35 of an EPW data row (radiation, wind, sky, precipitation ...), zeros or codes.
EPW_TAIL = ",".join(["0"] * 25)
DAYS_IN_MONTH = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def write_epw(
    path: Path, dry_c: np.ndarray, dew_c: np.ndarray, rh_pct: np.ndarray, p_pa: np.ndarray
) -> None:
    """Write an EnergyPlus weather file with hourly rows starting on 1 January."""
    rows = list(EPW_HEADER)
    i = 0
    for month, days in enumerate(DAYS_IN_MONTH, start=1):
        for day in range(1, days + 1):
            for hour in range(1, 25):
                if i == len(dry_c):
                    break
                rows.append(
                    f"1999,{month},{day},{hour},60,?9?9?9?9E0?9?9?9*9*9?9*9*9?9*9*9?9?9?9?9?9,"
                    f"{dry_c[i]:.1f},{dew_c[i]:.1f},{rh_pct[i]:.0f},{p_pa[i]:.0f},{EPW_TAIL}"
                )
                i += 1
    path.write_text("\n".join(rows) + "\n")


@pytest.fixture(scope="module")
def miami() -> WeatherSeries:
    return load_weather("pvlib:miami")


def test_miami_typical_year(miami: WeatherSeries) -> None:
    assert len(miami) == 8760
    np.testing.assert_array_equal(miami.time_h, np.arange(8760.0))
    assert "MIAMI" in miami.source
    assert miami.start is not None and miami.start.month == 1 and miami.start.day == 1
    assert 24.0 <= float(np.mean(miami.dry_bulb_c)) <= 26.0
    july = (miami.time_h >= hour_of_year(7, 1)) & (miami.time_h < hour_of_year(8, 1))
    assert float(np.mean(miami.wet_bulb_c[july])) > 23.0
    assert np.all(miami.wet_bulb_c <= miami.dry_bulb_c + 1e-6)
    assert np.all(miami.dew_point_c <= miami.wet_bulb_c + 1e-6)
    assert np.all((miami.rel_hum_frac > 0.1) & (miami.rel_hum_frac <= 1.0))
    assert 99_000.0 < float(np.mean(miami.pressure_pa)) < 103_000.0


def test_load_is_cached_and_immutable(miami: WeatherSeries) -> None:
    assert load_weather("pvlib:miami") is miami
    with pytest.raises(ValueError):
        miami.dry_bulb_c[0] = 50.0


def test_sand_point_tmy3_is_cold() -> None:
    sand_point = load_weather("pvlib:sand-point")
    assert len(sand_point) == 8760
    assert "SAND POINT" in sand_point.source
    assert float(np.mean(sand_point.dry_bulb_c)) < 10.0
    np.testing.assert_allclose(sand_point.pressure_pa, 101_200.0)


def test_greensboro_tmy3_is_temperate_with_shoulder_seasons() -> None:
    greensboro = load_weather("pvlib:greensboro")
    assert len(greensboro) == 8760
    np.testing.assert_array_equal(greensboro.time_h, np.arange(8760.0))
    assert "GREENSBORO" in greensboro.source
    assert greensboro.start is not None and greensboro.start.month == 1
    assert 12.0 <= float(np.mean(greensboro.dry_bulb_c)) <= 17.0
    assert -25.0 < float(np.min(greensboro.dry_bulb_c)) < -5.0
    assert 30.0 < float(np.max(greensboro.dry_bulb_c)) < 40.0

    def month_mean(values: np.ndarray, month: int) -> float:
        start = int(hour_of_year(month, 1))
        end = int(hour_of_year(month + 1, 1)) if month < 12 else 8760
        return float(np.mean(values[start:end]))

    # Cold January, hot humid July (near Miami's wet bulb), March and October in between.
    assert month_mean(greensboro.dry_bulb_c, 1) < 5.0
    assert 24.0 < month_mean(greensboro.dry_bulb_c, 7) < 28.0
    assert 20.0 < month_mean(greensboro.wet_bulb_c, 7) < 24.0
    for shoulder in (3, 10):
        assert 5.0 < month_mean(greensboro.wet_bulb_c, shoulder) < 15.0
    assert np.all(greensboro.wet_bulb_c <= greensboro.dry_bulb_c + 1e-6)
    assert np.all(greensboro.dew_point_c <= greensboro.wet_bulb_c + 1e-6)
    assert np.all((greensboro.rel_hum_frac > 0.05) & (greensboro.rel_hum_frac <= 1.0))
    # Station pressure of a ~270 m elevation airport, from the file (not the standard value).
    assert 96_000.0 < float(np.mean(greensboro.pressure_pa)) < 100_000.0
    assert float(np.std(greensboro.pressure_pa)) > 100.0


def test_tmy2_file_path_spec_matches_pvlib_name(miami: WeatherSeries) -> None:
    import pvlib

    path = Path(pvlib.__file__).parent / "data" / "12839.tm2"
    assert load_weather(str(path)) is miami  # one parse per file, whatever the spec


def test_interpolation_exact_at_hours_and_linear_between(miami: WeatherSeries) -> None:
    hours = np.array([0.0, 1.0, 4000.0, 8759.0])
    sample = miami.at(hours)
    np.testing.assert_array_equal(sample.dry_bulb_c, miami.dry_bulb_c[hours.astype(int)])
    np.testing.assert_array_equal(sample.wet_bulb_c, miami.wet_bulb_c[hours.astype(int)])
    mid = miami.at(np.array([100.25, 100.5]))
    lo, hi = miami.dry_bulb_c[100], miami.dry_bulb_c[101]
    np.testing.assert_allclose(mid.dry_bulb_c, [0.75 * lo + 0.25 * hi, 0.5 * (lo + hi)])
    p_lo, p_hi = miami.pressure_pa[100], miami.pressure_pa[101]
    np.testing.assert_allclose(mid.pressure_pa[1], 0.5 * (p_lo + p_hi))
    scalar = miami.at(12.0)
    assert scalar.dry_bulb_c.shape == ()
    assert float(scalar.rel_hum_frac) == miami.rel_hum_frac[12]
    # The last hour holds the last sample; it is still inside the series.
    assert float(miami.at(8759.9).dry_bulb_c) == miami.dry_bulb_c[-1]


@pytest.mark.parametrize("bad", [-0.01, 8760.0, 9000.0, float("nan")])
def test_out_of_range_time_raises(miami: WeatherSeries, bad: float) -> None:
    with pytest.raises(WeatherError, match="outside the weather series"):
        miami.at(np.array([10.0, bad]))


def test_heat_wave_peaks_in_the_middle_and_leaves_outside_untouched(
    miami: WeatherSeries,
) -> None:
    start, duration, peak = hour_of_year(7, 10), 72.0, 4.0
    hot = miami.heat_wave(start, duration, peak)
    mid = int(start + duration / 2)
    assert hot.dry_bulb_c[mid] - miami.dry_bulb_c[mid] == pytest.approx(peak)
    outside = (miami.time_h <= start) | (miami.time_h >= start + duration)
    for name in ("dry_bulb_c", "dew_point_c", "rel_hum_frac", "wet_bulb_c", "pressure_pa"):
        np.testing.assert_array_equal(getattr(hot, name)[outside], getattr(miami, name)[outside])
    delta = hot.dry_bulb_c - miami.dry_bulb_c
    inside = ~outside
    assert np.all((delta[inside] > 0.0) & (delta[inside] <= peak + 1e-12))
    # Smooth ramp: no step larger than the raised cosine's steepest slope (π·peak/duration).
    assert np.max(np.abs(np.diff(delta))) <= np.pi * peak / duration + 1e-9
    # Moisture kept: dew point unchanged, RH down, wet bulb up (but by less than the dry bulb).
    np.testing.assert_array_equal(hot.dew_point_c, miami.dew_point_c)
    assert np.all(hot.rel_hum_frac[inside] < miami.rel_hum_frac[inside])
    wet_delta = hot.wet_bulb_c[inside] - miami.wet_bulb_c[inside]
    assert np.all((wet_delta > 0.0) & (wet_delta < delta[inside]))


def test_heat_wave_plateau_with_short_ramps(miami: WeatherSeries) -> None:
    hot = miami.heat_wave(1000.0, 48.0, 3.0, ramp_h=6.0)
    delta = hot.dry_bulb_c - miami.dry_bulb_c
    np.testing.assert_allclose(delta[1006:1043], 3.0)
    assert 0.0 < delta[1003] < 3.0
    with pytest.raises(ValueError, match="ramp_h"):
        miami.heat_wave(1000.0, 48.0, 3.0, ramp_h=30.0)
    with pytest.raises(ValueError, match="duration_h"):
        miami.heat_wave(1000.0, 0.0, 3.0)


def test_with_offset_keeps_humidity_ratio(miami: WeatherSeries) -> None:
    days = slice(4000, 4048)
    part = WeatherSeries(
        time_h=miami.time_h[days],
        dry_bulb_c=miami.dry_bulb_c[days],
        dew_point_c=miami.dew_point_c[days],
        rel_hum_frac=miami.rel_hum_frac[days],
        wet_bulb_c=miami.wet_bulb_c[days],
        pressure_pa=miami.pressure_pa[days],
        source="slice",
    )
    hot = part.with_offset(3.0)
    np.testing.assert_allclose(hot.dry_bulb_c, part.dry_bulb_c + 3.0)
    np.testing.assert_allclose(hot.humidity_ratio(), part.humidity_ratio(), rtol=1e-6)
    assert np.all(hot.rel_hum_frac < part.rel_hum_frac)
    assert np.all(hot.wet_bulb_c > part.wet_bulb_c)
    same_rh = part.with_offset(3.0, keep_humidity_ratio=False)
    np.testing.assert_allclose(same_rh.rel_hum_frac, part.rel_hum_frac)
    assert np.all(same_rh.dew_point_c > part.dew_point_c)
    assert np.all(same_rh.wet_bulb_c > hot.wet_bulb_c)
    assert part.with_offset(0.0).dry_bulb_c.tolist() == part.dry_bulb_c.tolist()
    cold = part.with_offset(-10.0)  # dew point capped at the new dry bulb
    assert np.all(cold.dew_point_c <= cold.dry_bulb_c)
    assert np.all(cold.rel_hum_frac <= 1.0)


def test_epw_round_trip_of_miami(miami: WeatherSeries, tmp_path: Path) -> None:
    path = tmp_path / "miami.epw"
    write_epw(
        path,
        miami.dry_bulb_c,
        miami.dew_point_c,
        100.0 * miami.rel_hum_frac,
        miami.pressure_pa,
    )
    back = load_weather(str(path))
    assert len(back) == 8760
    assert back.source.startswith("miami.epw")
    assert back.start is not None and (back.start.month, back.start.hour) == (1, 0)
    np.testing.assert_allclose(back.dry_bulb_c, miami.dry_bulb_c, atol=1e-9)
    np.testing.assert_allclose(back.dew_point_c, miami.dew_point_c, atol=1e-9)
    np.testing.assert_allclose(back.pressure_pa, miami.pressure_pa, atol=1e-9)
    np.testing.assert_allclose(back.wet_bulb_c, miami.wet_bulb_c, atol=1e-9)


def test_epw_missing_codes_are_interpolated(tmp_path: Path) -> None:
    n = 48
    dry = 20.0 + np.arange(n) * 0.1
    dew = np.full(n, 12.0)
    rh = 100.0 * rel_hum_from_dew_point(dry, dew)
    pressure = np.full(n, 100_000.0)
    dry[10] = 99.9  # EPW "missing" codes
    dew[20] = 99.9
    pressure[30] = 999999.0
    path = tmp_path / "gaps.epw"
    write_epw(path, dry, dew, rh, pressure)
    series = load_weather(str(path))
    assert len(series) == n
    assert series.dry_bulb_c[10] == pytest.approx(21.0)
    # A missing dew point is derived from the file's (integer %) relative humidity.
    assert series.dew_point_c[20] == pytest.approx(12.0, abs=0.3)
    assert series.pressure_pa[30] == pytest.approx(100_000.0)


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "site.epw"
    with pytest.raises(WeatherError, match="not found") as info:
        load_weather(str(missing))
    assert str(missing) in str(info.value)
    assert "\n" not in str(info.value)


def test_unknown_extension_and_name(tmp_path: Path) -> None:
    odd = tmp_path / "site.xlsx"
    odd.write_text("x")
    with pytest.raises(WeatherError, match="extension") as info:
        load_weather(str(odd))
    assert str(odd) in str(info.value)
    with pytest.raises(WeatherError, match="pvlib:miami"):
        load_weather("pvlib:atlantis")


def test_malformed_file_raises_weather_error(tmp_path: Path) -> None:
    broken = tmp_path / "broken.epw"
    broken.write_text("this is not an EPW file\n")
    with pytest.raises(WeatherError, match=r"broken\.epw"):
        load_weather(str(broken))


def _series(**overrides: np.ndarray) -> WeatherSeries:
    good = np.arange(4.0)
    arrays = {
        "time_h": good,
        "dry_bulb_c": good,
        "dew_point_c": good - 1.0,
        "rel_hum_frac": np.full(4, 0.9),
        "wet_bulb_c": good - 0.5,
        "pressure_pa": np.full(4, 101_325.0),
        **overrides,
    }
    return WeatherSeries(source="test", start=None, **arrays)


def test_series_validation_names_the_field() -> None:
    assert len(_series()) == 4
    with pytest.raises(ValueError, match="wet_bulb_c"):
        _series(wet_bulb_c=np.arange(3.0))
    with pytest.raises(ValueError, match="dry_bulb_c"):
        _series(dry_bulb_c=np.array([1.0, np.nan, 2.0, 3.0]))
    with pytest.raises(ValueError, match="time_h"):
        _series(time_h=np.array([0.0, 2.0, 1.0, 3.0]))
    with pytest.raises(ValueError, match="rel_hum_frac"):
        _series(rel_hum_frac=np.full(4, 1.5))


def test_hour_of_year() -> None:
    assert hour_of_year(1, 1) == 0.0
    assert hour_of_year(1, 2, 6.5) == 30.5
    assert hour_of_year(3, 1) == 59 * 24.0
    assert hour_of_year(12, 31, 23.0) == 8759.0
    with pytest.raises(ValueError, match="day"):
        hour_of_year(2, 29)
    with pytest.raises(ValueError, match="month"):
        hour_of_year(13, 1)
    with pytest.raises(ValueError, match="hour"):
        hour_of_year(1, 1, 24.0)

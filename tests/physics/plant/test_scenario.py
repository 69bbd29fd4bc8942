"""Scenario files: shipped ones load, units convert, and every bad file gets one clear line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from physics.plant.scenario import (
    ScenarioError,
    load_scenario,
    parse_delta_k,
    parse_duration_s,
    shipped_scenarios,
)
from physics.weather import hour_of_year, load_weather

SHORT = """\
name: short
weather: {file: "pvlib:miami", start: "07-01"}
duration: 6 h
"""


def _write(tmp_path: Path, text: str, name: str = "bad.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _error(path: Path) -> str:
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    message = str(info.value)
    assert "\n" not in message, f"error spans several lines: {message!r}"
    assert message.startswith(f"scenario {path.name}: "), message
    return message


# (id, file text, text that must follow "scenario <file>: ", further text the message needs)
BAD_FILES = [
    ("missing-duration", "name: t\n", "duration: required field is missing", ()),
    ("missing-name", "duration: 6 h\n", "name: required field is missing", ()),
    (
        "unknown-unit",
        "name: t\nduration: 7 parsecs\n",
        "duration: unknown time unit 'parsecs'",
        ("s, sec, min, h, d",),
    ),
    (
        "number-without-unit",
        "name: t\nduration: 168\n",
        "duration: needs a time with a unit, e.g. '7 d'",
        (),
    ),
    ("wrong-type", SHORT + "sensor_noise: loud\n", "sensor_noise: ", ("number",)),
    (
        "control-period-not-whole-steps",
        SHORT + "step: 60 s\ncontrol_period: 90 s\n",
        "control_period: must be a whole number of steps",
        (),
    ),
    (
        "unknown-fault",
        SHORT + "faults:\n  - {kind: meteor, at: 1 h}\n",
        "faults[0].kind: unknown fault kind 'meteor'",
        ("chiller_trip",),
    ),
    (
        "fault-after-end",
        SHORT + "faults:\n  - {kind: chiller_trip, at: 7 h}\n",
        "faults[0].at: 7 h is after the end of the run (6 h)",
        (),
    ),
    (
        "fault-at-end",
        SHORT + "faults:\n  - {kind: chiller_trip, at: 6 h}\n",
        "faults[0].at: ",
        (),
    ),
    (
        "fault-target-out-of-range",
        SHORT + "faults:\n  - {kind: crah_fan_trip, at: 1 h, target: 99}\n",
        "faults[0].target: ",
        ("crah_fan_trip", "target 99 out of range 0..11"),
    ),
    (
        "fault-negative-start",
        SHORT + "faults:\n  - {kind: pump_wear, at: -1 h}\n",
        "faults[0]: ",
        ("must not be negative",),
    ),
    (
        "sensor-fault-index-target",
        SHORT + "faults:\n  - {kind: sensor_bias, at: 1 h, target: 3}\n",
        "faults[0]: ",
        ("must name a sensor point",),
    ),
    (
        "unknown-sensor-point",
        SHORT + "faults:\n  - {kind: sensor_bias, at: 1 h, target: nosuch_point}\n",
        "faults[0].target: unknown sensor point 'nosuch_point'",
        (),
    ),
    (
        "heat-wave-zero-duration",
        SHORT
        + "weather: {file: 'pvlib:miami', start: '07-01',"
        + " heat_wave: {start: 1 h, duration: 0 h, peak_offset: 5 K}}\n",
        "weather.heat_wave.duration: must be positive",
        (),
    ),
    (
        "unknown-site-variant",
        SHORT + "site: {variant: martian}\n",
        "site.variant: unknown site variant 'martian'",
        ("reference",),
    ),
    ("unknown-field", SHORT + "duraton: 6 h\n", "duraton: unknown field", ()),
    (
        "bad-weather-start",
        "name: t\nduration: 6 h\nweather: {start: '13-45'}\n",
        "weather.start: ",
        ("'13-45'", "month"),
    ),
    (
        "bad-weather-day",
        "name: t\nduration: 6 h\nweather: {start: '02-29'}\n",
        "weather.start: ",
        ("day",),
    ),
    (
        "run-past-end-of-weather-year",
        "name: t\nduration: 7 d\nweather: {file: 'pvlib:miami', start: '12-30'}\n",
        "weather: ",
        ("outside the weather file", "8712", "8880", "8760"),
    ),
    (
        "missing-weather-file",
        "name: t\nduration: 6 h\nweather: {file: /nonexistent/dir/weather.csv}\n",
        "weather.file: ",
        ("/nonexistent/dir/weather.csv",),
    ),
    (
        "unknown-pvlib-weather",
        "name: t\nduration: 6 h\nweather: {file: 'pvlib:atlantis'}\n",
        "weather.file: ",
        ("atlantis",),
    ),
    ("zero-duration", "name: t\nduration: 0 h\n", "duration: must be positive", ()),
    ("invalid-yaml", "name: t\nduration: [6 h\n", "not valid YAML", ()),
    ("list-at-top-level", "- name: t\n- duration: 6 h\n", "expected a mapping", ()),
    ("empty-file", "", "expected a mapping", ()),
]


@pytest.mark.parametrize(
    ("text", "where", "also"),
    [pytest.param(text, where, also, id=case) for case, text, where, also in BAD_FILES],
)
def test_bad_file_gives_one_line_naming_the_field(
    tmp_path: Path, text: str, where: str, also: tuple[str, ...]
) -> None:
    path = _write(tmp_path, text)
    message = _error(path)
    assert message.startswith(f"scenario bad.yaml: {where}"), message
    for fragment in also:
        assert fragment in message, message


def test_missing_scenario_file_lists_shipped_names(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ScenarioError) as info:
        load_scenario(missing)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"scenario {missing}: no such file")
    for name in shipped_scenarios():
        assert name in message


def test_every_shipped_scenario_loads() -> None:
    shipped = shipped_scenarios()
    assert {"tropical-typical-week", "heat-wave", "chiller-trip", "crah-trip-surge"} <= set(shipped)
    for name, path in shipped.items():
        scenario = load_scenario(path)
        assert scenario.name == name
        assert scenario.source == path.name
        assert scenario.duration_h > 0
        assert scenario.n_steps * scenario.step_s == pytest.approx(scenario.duration_h * 3600)
        # Loading a shipped scenario by name gives the same scenario.
        assert load_scenario(name) == scenario


def test_shipped_scenario_contents_are_converted() -> None:
    trip = load_scenario("chiller-trip")
    assert trip.site.name == "no_redundancy"
    assert trip.site_seed == 3
    assert trip.start_h == hour_of_year(6, 10)
    assert trip.duration_h == 48.0
    assert trip.steps_per_period == 5
    (fault,) = trip.faults
    assert (fault.kind, fault.start_h, fault.duration_h, fault.target) == (
        "chiller_trip",
        36.0,
        2.0,
        0,
    )


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90 min", 5400.0), ("2 d", 172_800.0), ("60 s", 60.0), ("1.5 h", 5400.0), ("30sec", 30.0)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration_s(text) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", [168, "168", "7 parsecs", "7 H", "h", True, None])
def test_parse_duration_rejects_values_without_a_known_unit(bad: object) -> None:
    with pytest.raises(ValueError, match="unit"):
        parse_duration_s(bad)


def test_fault_target_all_loads_as_every_unit(tmp_path: Path) -> None:
    faults = "faults:\n  - {kind: workload_surge, at: 1 h, target: all}\n"
    scenario = load_scenario(_write(tmp_path, SHORT + faults, "surge.yaml"))
    assert scenario.faults[0].kind == "workload_surge" and scenario.faults[0].target is None


def test_parse_delta() -> None:
    assert parse_delta_k("4 K") == 4.0
    with pytest.raises(ValueError, match="unit"):
        parse_delta_k("4 C")


def test_units_convert_in_a_scenario(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "name: units\nduration: 90 min\nstep: 30 s\ncontrol_period: 2 min\n"
        "weather: {start: '07-01 06:30'}\n"
        "faults:\n  - {kind: pump_wear, at: 30 min, duration: 2 d}\n",
        "units.yaml",
    )
    scenario = load_scenario(path)
    assert scenario.duration_h == pytest.approx(1.5)
    assert scenario.step_s == 30.0
    assert scenario.control_period_s == 120.0
    assert scenario.n_steps == 180
    assert scenario.steps_per_period == 4
    assert scenario.start_h == pytest.approx(hour_of_year(7, 1) + 6.5)
    (fault,) = scenario.faults
    assert fault.start_h == pytest.approx(0.5)
    assert fault.duration_h == pytest.approx(48.0)


def test_run_ending_exactly_at_end_of_year_loads(tmp_path: Path) -> None:
    path = _write(tmp_path, "name: eoy\nduration: 7 d\nweather: {start: '12-25'}\n", "eoy.yaml")
    scenario = load_scenario(path)
    assert scenario.start_h + scenario.duration_h == 8760.0


def test_heat_wave_raises_dry_bulb_inside_window_only(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "name: hw\nduration: 4 d\n"
        "weather: {file: 'pvlib:miami', start: '07-01',"
        " heat_wave: {start: 1 d, duration: 2 d, peak_offset: 5 K}}\n",
        "hw.yaml",
    )
    scenario = load_scenario(path)
    assert scenario.heat_wave == (24.0, 48.0, 5.0)
    plain = load_weather("pvlib:miami")
    plain_before = plain.dry_bulb_c.copy()
    hot = scenario.weather()
    start = int(scenario.start_h)
    peak = start + 24 + 24  # middle of the window: the full offset
    assert hot.dry_bulb_c[peak] - plain.dry_bulb_c[peak] == pytest.approx(5.0, abs=1e-9)
    inside = slice(start + 25, start + 71)
    assert np.all(hot.dry_bulb_c[inside] > plain.dry_bulb_c[inside])
    outside = np.r_[start : start + 24, start + 72 : start + 96]
    np.testing.assert_array_equal(hot.dry_bulb_c[outside], plain.dry_bulb_c[outside])
    # The cached typical year itself is left untouched.
    np.testing.assert_array_equal(load_weather("pvlib:miami").dry_bulb_c, plain_before)


def test_scenario_without_heat_wave_uses_the_plain_file(tmp_path: Path) -> None:
    scenario = load_scenario(_write(tmp_path, SHORT, "short.yaml"))
    assert scenario.heat_wave is None
    np.testing.assert_array_equal(
        scenario.weather().dry_bulb_c, load_weather("pvlib:miami").dry_bulb_c
    )


def test_sensor_noise_as_a_mapping_sets_dropouts_and_bad_values_are_named(
    tmp_path: Path,
) -> None:
    good = _write(tmp_path, SHORT + "sensor_noise: {level: 2.0, dropout_prob: 0.01}\n")
    noise = load_scenario(good).noise
    assert (noise.level, noise.dropout_prob) == (2.0, 0.01)
    bad = _write(tmp_path, SHORT + "sensor_noise: {level: 1.0, dropout_prob: 2}\n")
    assert _error(bad).startswith("scenario bad.yaml: sensor_noise.dropout_prob: ")

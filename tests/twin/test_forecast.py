"""Forecasts as a site has them: weather error statistics per level, reproducible draws, and
an IT-load forecast that only ever looks back."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from physics.plant.scenario import FORECAST_LEVELS, Scenario, load_scenario
from twin.forecast import (
    FORECAST_ERRORS,
    FORECAST_ISSUE_H,
    LoadHistory,
    WeatherForecast,
    error_model,
)
from twin.spaces import ObservationSpec
from twin.vec_env import BatchedTwin

SHORT = """\
name: forecast-4h
site: {variant: reference, seed: 3}
weather: {file: "pvlib:miami", start: "07-10"}
workload: {kind: diurnal, mean_frac: 0.6}
duration: 4 h
step: 60 s
control_period: 5 min
seed: 5
"""

LEADS_H = np.array([0.5, 1.0, 3.0, 6.0, 24.0])
ISSUES = 4000.0 + np.arange(3000) * FORECAST_ISSUE_H  # one forecast per issue


def test_every_scenario_level_has_error_statistics() -> None:
    assert set(FORECAST_ERRORS) == set(FORECAST_LEVELS)
    with pytest.raises(ValueError, match="unknown forecast level 'perfect'"):
        error_model("perfect")


@pytest.mark.parametrize("level", ["low", "medium", "high"])
def test_error_std_grows_with_the_lead_and_matches_the_documented_model(level: str) -> None:
    errors = WeatherForecast(level, seed=1).error_k(ISSUES, LEADS_H)
    measured = errors.std(axis=0)
    expected = error_model(level).std_k(LEADS_H)
    assert np.all(np.diff(measured) > 0.0)  # the error grows with the horizon
    assert measured == pytest.approx(expected, rel=0.08)
    assert abs(errors.mean()) < 0.1  # unbiased
    # Autocorrelated along the horizon: neighbouring leads err alike.
    assert np.corrcoef(errors[:, 1], errors[:, 2])[0, 1] > 0.5


def test_documented_figures_per_level() -> None:
    one_h = {lvl: float(error_model(lvl).std_k(1.0)) for lvl in FORECAST_LEVELS}
    day = {lvl: float(error_model(lvl).std_k(24.0)) for lvl in FORECAST_LEVELS}
    assert one_h == pytest.approx({"none": 0.0, "low": 0.4, "medium": 0.6, "high": 0.7})
    assert day == pytest.approx({"none": 0.0, "low": 1.01, "medium": 1.61, "high": 2.14}, abs=0.01)


def test_levels_are_ordered_and_none_is_the_truth() -> None:
    spread = [WeatherForecast(lvl, 2).error_k(ISSUES, [3.0]).std() for lvl in FORECAST_LEVELS]
    assert spread[0] == 0.0 and spread[1] < spread[2] < spread[3]
    truth = np.full((5, 2), 24.0)
    exact = WeatherForecast("none", 2).forecast_c(truth, np.arange(5.0), [1.0, 3.0])
    assert np.array_equal(exact, truth)


def test_draws_are_reproducible_by_seed_and_zero_at_issue() -> None:
    times = np.array([4000.0, 4000.25, 4001.0, 4100.5])
    a = WeatherForecast("medium", 9).error_k(times, LEADS_H)
    b = WeatherForecast("medium", 9).error_k(times, LEADS_H)
    c = WeatherForecast("medium", 10).error_k(times, LEADS_H)
    assert np.array_equal(a, b) and not np.allclose(a, c)
    # Anchored on the measurement at issue: no error at lead 0 of an issue time.
    assert WeatherForecast("high", 9).error_k([4000.0, 4001.0], [0.0]) == pytest.approx(0.0)
    # Between issues the latest forecast is used: 15 min after issue, 1 h ahead is lead 1.25 h.
    later = WeatherForecast("medium", 9).error_k([4000.25], [1.0])
    assert later == pytest.approx(WeatherForecast("medium", 9).error_k([4000.0], [1.25]))


def test_seasonal_naive_load_forecast_recovers_a_repeating_day() -> None:
    history = LoadHistory(1, period_h=5.0 / 60.0)
    day = 288
    load = 600.0 + 100.0 * np.sin(2.0 * np.pi * np.arange(2 * day) / day)
    for k in range(day // 2):
        history.record([load[k]])
    # Less than a day of history: persistence.
    assert history.forecast_kw([1.0])[0, 0] == pytest.approx(load[day // 2 - 1])
    for k in range(day // 2, day + 50):
        history.record([load[k]])
    now = day + 49
    assert history.forecast_kw([1.0])[0, 0] == pytest.approx(load[now + 12], rel=2e-3)


def test_load_forecast_never_sees_the_future() -> None:
    past = 500.0 + 50.0 * np.cos(np.arange(400) / 40.0)
    a, b = LoadHistory(1, 5.0 / 60.0), LoadHistory(1, 5.0 / 60.0)
    for value in past:
        a.record([value])
        b.record([value])
    before = a.forecast_kw([0.5, 1.0, 3.0])
    # Whatever comes next is unknown to a forecast made now; recording it changes later ones.
    assert np.array_equal(before, b.forecast_kw([0.5, 1.0, 3.0]))
    b.record([9_999.0])
    assert not np.array_equal(before, b.forecast_kw([0.5, 1.0, 3.0]))


def test_dropouts_keep_the_last_reading_and_an_empty_history_says_nan() -> None:
    history = LoadHistory(2, 5.0 / 60.0)
    assert np.isnan(history.forecast_kw([1.0])).all()
    history.record([400.0, np.nan])
    history.record([np.nan, np.nan])
    out = history.forecast_kw([1.0])
    assert out[0, 0] == pytest.approx(400.0) and np.isnan(out[1, 0])
    history.reset([0])
    assert np.isnan(history.forecast_kw([1.0])[0, 0])


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    path = tmp_path_factory.mktemp("forecast") / "forecast-4h.yaml"
    path.write_text(SHORT)
    return load_scenario(path)


def test_batched_twin_forecasts_it_power_from_its_history_only(scenario: Scenario) -> None:
    sim = BatchedTwin(1, scenario=scenario, episode_hours=2.0, random_start=False)
    spec = ObservationSpec(n_pods=sim.design.n_pods, design_it_kw=sim.design.design_it_kw)
    column = spec.names.index("forecast_it_power_1h_kw")
    wet_1h = spec.names.index("forecast_wet_bulb_1h_c")
    sim.reset_envs(torch.arange(1))
    for _ in range(3):
        sim.step(torch.zeros(1, 5))
    before = sim.observe()[0]
    # Double every future period's IT load: the forecast made now must not move.
    now = int(sim.start[0] + sim.elapsed[0])
    sim._it[now + 1 :] *= 2.0
    after = sim.observe()[0]
    assert after[column] == before[column]
    # The weather forecast in the observation is the truth plus the medium error.
    centre, scale = spec.centre_scale()
    seen = float(before[wet_1h]) * scale[wet_1h] + centre[wet_1h]
    row = min(now + 12, sim.table.n_periods - 1)
    truth = float(sim.table.wet_bulb_c[row])
    error = sim.weather_forecast.error_k(sim.table.time_h[now], [1.0])[0, 0]
    assert seen == pytest.approx(truth + error, abs=1e-3)
    assert error != 0.0

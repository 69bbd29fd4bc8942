"""Every evaluation run writes its plot (setpoints, hottest inlet vs limits, power)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from control.baselines import TrimAndRespond
from control.evaluation import EvaluationResult, evaluate
from control.evaluation_plots import RUN_PLOT, period_hours, run_series
from physics.plant.scenario import Scenario, load_scenario

SCENARIO = """\
name: plot-hour
site: {variant: reference, seed: 3}
weather: {file: "pvlib:greensboro", start: "10-15 12:00"}
workload: {kind: diurnal, mean_frac: 0.6}
duration: 1 h
step: 60 s
control_period: 5 min
sensor_noise: 1.0
seed: 3
"""

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    path = tmp_path_factory.mktemp("plots") / "plot-hour.yaml"
    path.write_text(SCENARIO)
    return load_scenario(path)


@pytest.mark.parametrize("on", ["plant", "twin"])
def test_each_run_writes_its_plot(scenario: Scenario, tmp_path: Path, on: str) -> None:
    result = evaluate(TrimAndRespond(), scenario, on=on)  # type: ignore[arg-type]
    paths = result.write(tmp_path / on)
    plot = tmp_path / on / RUN_PLOT
    assert plot in paths and all(p.stat().st_size > 0 for p in paths)
    assert plot.read_bytes().startswith(PNG_MAGIC) and plot.stat().st_size > 20_000


def test_run_series_reads_both_targets(scenario: Scenario) -> None:
    plant = evaluate(TrimAndRespond(), scenario, on="plant")
    run = run_series(plant.series, "plant", plant.kpis["duration_h"])
    assert set(run.setpoints_c) == {"Supply air", "CHW supply", "CW supply"}
    assert set(run.setpoints_frac) == {"CRAH fan speed", "Economiser enable"}
    assert "Hottest inlet (plant truth)" in run.inlet_c
    # Per-period energies become mean powers: facility above IT above cooling's share.
    facility, it = run.power_kw["Facility"], run.power_kw["IT"]
    assert np.all(facility > it) and np.all(run.power_kw["Cooling"] > 0.0)
    hours = float(plant.kpis["duration_h"])
    assert facility.mean() == pytest.approx(plant.kpis["facility_kwh"] / hours, rel=0.1)

    twin = evaluate(TrimAndRespond(), scenario, on="twin")
    run = run_series(twin.series, "twin", twin.kpis["duration_h"])
    assert set(run.inlet_c) == {"Hottest inlet (members' mean)", "Hottest inlet (worst member)"}
    assert run.power_band is not None
    lo, hi, _ = run.power_band
    assert np.all(lo <= run.power_kw["Cooling (members' mean)"] + 1e-9)
    assert np.all(run.power_kw["Cooling (members' mean)"] <= hi + 1e-9)


def test_period_from_the_clock_or_the_duration(tmp_path: Path) -> None:
    assert period_hours(pd.DataFrame({"time_h": [1.0, 1.25, 1.5]}), 9.0) == pytest.approx(0.25)
    assert period_hours(pd.DataFrame({"time_h": [1.0]}), 0.5) == pytest.approx(0.5)
    assert period_hours(pd.DataFrame({"reward": [0.0, 0.0]}), 1.0) == pytest.approx(0.5)
    # A series without setpoints or powers still draws (empty panels), never fails.
    bare = EvaluationResult("p", "s", "twin", {"duration_h": 0.5}, pd.DataFrame({"x": [1.0]}), 0)
    assert bare.write(tmp_path)[-1].stat().st_size > 0

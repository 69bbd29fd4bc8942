"""The evaluation engine on the plant and in the twin."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from control.baselines import FixedSetpoints, TrimAndRespond
from control.evaluation import HEADLINE_KPIS, evaluate, savings_percent
from physics.plant.scenario import Scenario, load_scenario

SCENARIO = """\
name: short-hot
site: {variant: reference, seed: 3}
weather: {file: "pvlib:miami", start: "07-10"}
workload: {kind: diurnal, mean_frac: 0.6}
duration: 8 h
step: 60 s
control_period: 5 min
sensor_noise: 1.0
seed: 3
"""


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    path = tmp_path_factory.mktemp("eval") / "short-hot.yaml"
    path.write_text(SCENARIO)
    return load_scenario(path)


def test_plant_evaluation_reports_ground_truth_kpis(scenario: Scenario, tmp_path: Path) -> None:
    fixed = evaluate(FixedSetpoints(), scenario, on="plant")
    trim = evaluate(TrimAndRespond(), scenario, on="plant")
    for result in (fixed, trim):
        assert set(HEADLINE_KPIS) <= set(result.kpis)
        assert result.kpis["duration_h"] == pytest.approx(8.0)
        assert len(result.series) == 8 * 12 - 1
        assert result.kpis["computational_time_ratio"] < 0.01
    # Fixed setpoints hold 19 °C supply air: racks stay cool; trim-and-respond uses the
    # margin to 27 °C and saves cooling energy without a violation.
    assert fixed.kpis["max_inlet_c"] < 23.0
    assert trim.kpis["violation_kh_above_27"] == 0.0
    assert savings_percent(trim, fixed) > 1.0
    paths = trim.write(tmp_path / "out")
    assert all(p.stat().st_size > 0 for p in paths)


def test_twin_evaluation_predicts_the_plant(scenario: Scenario) -> None:
    plant = evaluate(FixedSetpoints(), scenario, on="plant")
    twin = evaluate(FixedSetpoints(), scenario, on="twin")  # the drawings' physics
    assert set(HEADLINE_KPIS) <= set(twin.kpis)
    # Twin runs carry the hour of each period's end, as plant runs do (plots need it).
    steps_h = np.diff(twin.series["time_h"].to_numpy())
    assert twin.series["time_h"].notna().all() and steps_h == pytest.approx(5 / 60)
    assert twin.kpis["cooling_kwh"] == pytest.approx(plant.kpis["cooling_kwh"], rel=0.15)
    assert twin.kpis["pue"] == pytest.approx(plant.kpis["pue"], rel=0.05)
    with pytest.raises(ValueError, match="one scenario"):
        savings_percent(twin, plant)
    with pytest.raises(ValueError, match="plant' or 'twin"):
        evaluate(FixedSetpoints(), scenario, on="moon")  # type: ignore[arg-type]

"""Honest inputs: the MPC plans with the site's forecasts (weather error at the scenario's
level, IT load from what it has observed), the oracle alone with the truth, and every result
records its forecast level."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from control.baselines import FixedSetpoints
from control.comparison import PolicyRuns, write_comparison_report
from control.evaluation import evaluate
from control.mpc import MpcPolicy, OracleMpcPolicy
from physics.plant.scenario import Scenario, load_scenario, with_forecast_level
from twin.spaces import HallReadings, ObservationSpec, build_observation

SCENARIO = """\
name: short-medium-2h
site: {variant: reference, seed: 3}
weather: {file: "pvlib:miami", start: "07-10 12:00"}
workload: {kind: diurnal, mean_frac: 0.6}
duration: 2 h
step: 60 s
control_period: 5 min
sensor_noise: 1.0
seed: 3
"""


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    path = tmp_path_factory.mktemp("honest") / "short-medium-2h.yaml"
    path.write_text(SCENARIO)
    return load_scenario(path)


def _obs(policy: MpcPolicy, row: int, it_kw: float) -> np.ndarray:
    table = policy.table
    spec = ObservationSpec()
    wet = float(table.wet_bulb_c[row])
    hall = HallReadings(
        rack_inlet_c=np.full((1, 4, 25), 22.0),
        hot_aisle_c=np.full((1, 4), 32.0),
        supply_air_c=np.array([19.0]),
        return_air_c=np.array([31.0]),
        chw_supply_c=np.array([7.0]),
        chw_return_c=np.array([12.0]),
        cw_supply_c=np.array([29.4]),
        it_power_kw=np.array([it_kw]),
        cooling_power_kw=np.array([250.0]),
        facility_power_kw=np.array([1100.0]),
        outdoor_dry_bulb_c=np.array([float(table.dry_bulb_c[row])]),
        outdoor_wet_bulb_c=np.array([wet]),
    )
    return build_observation(
        spec,
        hall,
        time_h=float(table.time_h[row]),
        forecast_wet_bulb_1h_c=wet,
        forecast_wet_bulb_3h_c=wet,
        forecast_it_power_1h_kw=it_kw,
        last_action=np.zeros(5),
    )


def test_the_default_level_is_medium_and_a_bad_level_names_the_field(scenario: Scenario) -> None:
    assert scenario.forecast_level == "medium"
    with pytest.raises(ValueError, match=r"forecast\.level: unknown forecast level 'exact'"):
        with_forecast_level(scenario, "exact")


def test_the_mpc_plans_with_forecast_error_and_the_oracle_with_the_truth(
    scenario: Scenario,
) -> None:
    mpc = MpcPolicy(scenario=scenario, horizon=6)
    oracle = OracleMpcPolicy(scenario, horizon=6)
    assert mpc.forecast_level == "medium" and oracle.forecast_level == "none"
    for policy in (mpc, oracle):
        policy.reset(1)
        for row in range(3):
            policy.act(_obs(policy, row, 700.0 + 10.0 * row))
    values = {"it_power_kw": np.array([720.0])}
    planned = mpc._forecast(2, values, 0, mpc._memory[0])
    truth = mpc.table.wet_bulb_c[2:8]
    assert not np.allclose(planned.wet_bulb_c, truth)
    assert np.abs(planned.wet_bulb_c - truth).max() < 4.0
    # The MPC's IT forecast comes from what it observed (no day of history: persistence),
    # never from the schedule.
    assert planned.it_power_kw.sum(axis=1) == pytest.approx(np.full(6, 720.0), rel=1e-3)
    seen = oracle._forecast(2, values, 0, oracle._memory[0])
    assert seen.wet_bulb_c == pytest.approx(oracle.table.wet_bulb_c[2:8])
    assert seen.it_power_kw.sum(axis=1) == pytest.approx(
        (oracle.table.it_power_kw[2:8] * oracle.truth.pod_it_scale).sum(axis=1)
    )
    # At level none the MPC's weather forecast is the truth.
    exact = MpcPolicy(scenario=replace(scenario, forecast_level="none"), horizon=6)
    exact.reset(1)
    exact.act(_obs(exact, 2, 720.0))
    assert exact._forecast(2, values, 0, exact._memory[0]).wet_bulb_c == pytest.approx(truth)


def test_the_mpc_runs_on_the_plant_at_medium_and_results_record_the_level(
    scenario: Scenario,
) -> None:
    mpc = MpcPolicy(scenario=scenario)
    result = evaluate(mpc, scenario, on="plant")
    assert result.kpis["forecast_level"] == "medium"
    assert result.kpis["forecast_wet_bulb_std_1h_k"] == pytest.approx(0.6)
    assert result.kpis["violation_kh_above_27"] == 0.0
    assert mpc.stats.fallbacks == 0
    fixed = evaluate(FixedSetpoints(), with_forecast_level(scenario, "high"), on="plant")
    assert fixed.kpis["forecast_level"] == "high"


def test_the_comparison_table_names_each_policys_forecast_level(tmp_path: Path) -> None:
    def run(policy: str, cooling_kwh: float, level: str | None) -> PolicyRuns:
        kpis = {
            "cooling_kwh": cooling_kwh,
            "facility_kwh": 2_000.0,
            "it_kwh": 1_500.0,
            "violation_kh_above_27": 0.0,
            "max_inlet_c": 25.0,
            "actuator_travel": {},
        }
        if level is not None:
            kpis["forecast_level"] = level
        return PolicyRuns(policy, "plant", {"s1": kpis}, tmp_path)

    runs = [
        run("fixed", 500.0, "medium"),
        run("mpc", 400.0, "medium"),
        run("oracle", 350.0, "none"),
    ]
    runs.append(run("old", 450.0, None))
    paths = write_comparison_report(runs, tmp_path / "cmp", baseline="fixed", oracle="oracle")
    markdown = paths[2].read_text(encoding="utf-8")
    assert "fixed medium, mpc medium, oracle none, old unrecorded" in markdown
    csv = paths[0].read_text(encoding="utf-8")
    assert "forecast_level" in csv.splitlines()[0]

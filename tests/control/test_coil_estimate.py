"""The coil UA estimator on the real plant: it finds a fouled coil's UA from the supply air
the coils reach, and a clean coil that reaches its setpoints never lowers it."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from control.coil_estimate import UA_RANGE, CoilUaEstimator
from physics.crah import CrahParams
from physics.plant.faults import FaultEvent
from physics.plant.scenario import Scenario, load_scenario
from physics.plant.simulation import build_plant
from physics.plant.site import draw_hidden_params
from physics.plant.site_control import SetpointCommand


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    return load_scenario("holdout-typical-week")


def run_estimator(
    scenario: Scenario, supply_c: float, chw_c: float, fan: float, hours: float
) -> tuple[CoilUaEstimator, float]:
    """The plant held at the given setpoints, the estimator fed each period; the estimator
    and the site's true mean coil UA multiplier (its hidden per-unit draw times fouling)."""
    plant = build_plant(scenario)
    site = scenario.site
    hidden = draw_hidden_params(site, (scenario.site_seed,))
    fouling = 1.0 - sum(e.magnitude or 0.0 for e in scenario.faults if e.kind == "coil_fouling")
    true_ua = float(hidden.crah_ua_mult[0].mean()) * fouling
    names = list(plant.point_names)
    estimator = CoilUaEstimator(site.crah)
    plant.apply_command(
        SetpointCommand("hold", 1e12, supply_air_c=supply_c, fan_speed_frac=fan, chw_supply_c=chw_c)
    )
    for _ in range(round(hours * 3600 / scenario.control_period_s)):
        _, readings = plant.advance(scenario.steps_per_period)
        mean = np.nanmean(readings[:, 0], axis=0)
        estimator.update(
            float(mean[names.index("supply_air_c")]),
            supply_c,
            float(mean[names.index("return_air_c")]),
            float(mean[names.index("chw_supply_c")]),
            fan,
        )
    return estimator, true_ua


def test_a_fouled_coil_that_falls_short_is_found(scenario: Scenario) -> None:
    fouled = replace(
        scenario, faults=(FaultEvent("coil_fouling", 0.0, magnitude=0.3, target="all"),)
    )
    # Supply air asked for below what warm chilled water can give: the valves open fully.
    estimator, true_ua = run_estimator(fouled, supply_c=16.0, chw_c=14.0, fan=0.5, hours=4.0)
    print(f"estimate {estimator.estimate:.3f}, true {true_ua:.3f}")
    assert estimator.updates > 20
    assert estimator.estimate == pytest.approx(true_ua, rel=0.12)


def test_a_coil_that_reaches_its_setpoint_is_never_marked_down(scenario: Scenario) -> None:
    estimator, _ = run_estimator(scenario, supply_c=20.0, chw_c=9.0, fan=0.6, hours=4.0)
    assert estimator.estimate >= 1.0
    low = CoilUaEstimator(CrahParams(), estimate=0.3)
    low.update(20.0, 20.0, 32.0, 9.0, 0.6)  # reached: the UA is at least the one reaching it
    assert low.estimate > 0.3


def test_readings_that_describe_no_working_coil_teach_nothing() -> None:
    estimator = CoilUaEstimator(CrahParams())
    for reading in (
        (float("nan"), 20.0, 30.0, 10.0, 0.5),  # dropout
        (31.0, 20.0, 30.0, 10.0, 0.5),  # supply warmer than the return
        (9.0, 20.0, 30.0, 10.0, 0.5),  # supply colder than the water
        (25.0, 20.0, 30.0, 10.0, 0.0),  # no fan
    ):
        estimator.update(*reading)
    assert estimator.estimate == 1.0 and estimator.updates == 0
    assert UA_RANGE[0] <= CoilUaEstimator(CrahParams(), estimate=99.0).estimate <= UA_RANGE[1]
    with pytest.raises(ValueError):
        CoilUaEstimator(CrahParams(), gain=0.0)

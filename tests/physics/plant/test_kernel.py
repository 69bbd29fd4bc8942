"""The compiled plant step must do exactly what the numpy reference plant does."""

from __future__ import annotations

import numpy as np
import pytest

from physics.plant.faults import FaultEvent
from physics.plant.plant import Plant
from physics.plant.scenario import load_scenario
from physics.plant.sensors import SensorNoise
from physics.plant.simulation import run_scenario
from physics.plant.site import site_variant
from physics.plant.site_control import SetpointCommand
from physics.weather import hour_of_year, load_weather

EVERY_FAULT = [
    FaultEvent("coil_fouling", 0.5, 2.0, magnitude=0.3, target=1),
    FaultEvent("chiller_trip", 1.0, 1.0, target=0),
    FaultEvent("condenser_fouling", 1.5, 2.0, magnitude=2.0),
    FaultEvent("tower_fan_failure", 2.0, 0.5, magnitude=1.0),
    FaultEvent("tower_fan_failure", 3.0, 0.5, magnitude=0.5),
    FaultEvent("crah_fan_trip", 2.5, 1.0, target=3),
    FaultEvent("stuck_valve", 0.2, 3.0, magnitude=0.8, target=5),
    FaultEvent("containment_door_open", 3.5, 1.0, target=2),
    FaultEvent("pump_wear", 1.2, 2.0, magnitude=0.3),
    FaultEvent("sensor_bias", 0.7, 1.0, magnitude=1.5, target="chw_supply_c"),
    FaultEvent("sensor_stuck", 1.7, 1.0, target="rack_inlet_c.1.03"),
    FaultEvent("workload_surge", 2.2, 1.5, magnitude=0.3, target=0),
]


def _plant(engine: str, *, variant: str = "reference", dropouts: float = 0.0) -> Plant:
    n_steps = 300
    time_h = np.arange(n_steps) / 60.0
    util = 0.55 + 0.1 * np.sin(time_h[:, None] + np.arange(4)[None, :])
    return Plant(
        site_variant(variant),
        weather=load_weather("pvlib:sand-point"),  # cold: the economiser runs
        utilisation=util,
        start_h=[hour_of_year(7, 1), hour_of_year(1, 15)],
        seeds=(3, 4),
        faults=EVERY_FAULT,
        noise=SensorNoise(dropout_prob=dropouts),
        engine=engine,  # type: ignore[arg-type]
        warmup_steps=60,
    )


def _drive(plant: Plant, chunk: int) -> tuple[np.ndarray, np.ndarray]:
    """Site control, then a command that expires mid-chunk, then site control again."""
    logs, reads = [], []
    while not plant.done:
        k = plant.step_index
        if k == 46:
            plant.apply_command(
                SetpointCommand(
                    "c1",
                    expires_at_s=(k + 97) * plant.step_s + 13.0,
                    supply_air_c=np.array([24.0, np.nan]),
                    fan_speed_frac=0.65,
                    chw_supply_c=16.0,
                    cw_supply_c=20.0,
                    economiser_enable=1.0,
                )
            )
        m = min(chunk, plant.n_steps - k, 46 - k if k < 46 else chunk)
        log, read = plant.advance(m)
        logs.append(log)
        reads.append(read)
    return np.concatenate(logs), np.concatenate(reads)


@pytest.mark.parametrize("variant", ["reference", "no_redundancy"])
def test_compiled_step_matches_the_numpy_plant_under_every_fault(variant: str) -> None:
    ref_log, ref_read = _drive(_plant("numpy", variant=variant), chunk=1)
    fast_log, fast_read = _drive(_plant("numba", variant=variant), chunk=23)
    np.testing.assert_allclose(fast_log, ref_log, rtol=1e-7, atol=1e-7)
    np.testing.assert_allclose(fast_read, ref_read, rtol=1e-7, atol=1e-7)
    # The run really went through its faults and the command.
    names = _plant("numpy").log_names
    assert ref_log[:, :, names.index("command_active")].max() == 1.0
    assert ref_log[:, :, names.index("economiser_heat_kw")].max() > 10.0
    assert (
        ref_log[:, :, names.index("chillers_on")].min()
        < ref_log[:, :, names.index("chillers_on")].max()
    )


def test_chunking_does_not_change_readings_even_with_dropouts() -> None:
    one_log, one_read = _drive(_plant("numba", dropouts=0.05), chunk=300)
    many_log, many_read = _drive(_plant("numba", dropouts=0.05), chunk=7)
    np.testing.assert_array_equal(one_log, many_log)
    np.testing.assert_array_equal(np.isnan(one_read), np.isnan(many_read))
    np.testing.assert_allclose(one_read, many_read, rtol=0, atol=0, equal_nan=True)
    assert 0.03 < np.isnan(one_read).mean() < 0.07


def test_scenario_kpis_agree_between_engines() -> None:
    scenario = load_scenario("chiller-trip")
    fast = run_scenario(scenario, engine="numba").kpis.to_dict()
    ref = run_scenario(scenario, engine="numpy").kpis.to_dict()
    for key, value in ref.items():
        if isinstance(value, float):
            assert fast[key] == pytest.approx(value, rel=1e-7, abs=1e-9), key

"""The plant reproduces the golden trajectories recorded before its physics was unified."""

from __future__ import annotations

import json

import numpy as np
import pytest

from physics.plant.sensors import SensorNoise
from tests.physics.plant.golden import trajectories as golden

RTOL = ATOL = 1e-7


@pytest.mark.parametrize("variant", golden.VARIANTS)
def test_every_fault_and_a_command_on_two_sites(variant: str) -> None:
    expected = np.load(golden.HERE / f"faulted-{variant}.npz")["log"]
    plant = golden.faulted_plant(variant)
    log, _ = golden.drive_with_command(plant, chunk=23)
    np.testing.assert_allclose(log, expected, rtol=RTOL, atol=ATOL)
    # The run really went through its faults and the command.
    names = plant.log_names
    assert log[:, :, names.index("command_active")].max() == 1.0
    assert log[:, :, names.index("economiser_heat_kw")].max() > 10.0
    on = log[:, :, names.index("chillers_on")]
    assert on.min() < on.max()


def test_step_by_step_equals_chunked() -> None:
    expected = np.load(golden.HERE / "faulted-reference.npz")["log"]
    log, _ = golden.drive_with_command(golden.faulted_plant("reference"), chunk=1)
    np.testing.assert_allclose(log, expected, rtol=RTOL, atol=ATOL)


def test_a_controller_moving_every_setpoint_each_period() -> None:
    expected = np.load(golden.HERE / "controlled.npz")["hourly_log"]
    np.testing.assert_allclose(
        golden.drive_every_setpoint(golden.controlled_plant()), expected, rtol=RTOL, atol=ATOL
    )


@pytest.mark.parametrize("name", golden.SCENARIOS)
def test_scenario_kpis(name: str) -> None:
    expected = json.loads((golden.HERE / "scenario_kpis.json").read_text())[name]
    got = golden.scenario_kpis(name)
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-7, abs=1e-9), key


def test_chunking_does_not_change_readings_even_with_dropouts() -> None:
    def run(chunk: int) -> tuple[np.ndarray, np.ndarray]:
        plant = golden.faulted_plant("reference", noise=SensorNoise(dropout_prob=0.05))
        return golden.drive_with_command(plant, chunk=chunk)

    one_log, one_read = run(300)
    many_log, many_read = run(7)
    np.testing.assert_array_equal(one_log, many_log)
    np.testing.assert_array_equal(np.isnan(one_read), np.isnan(many_read))
    np.testing.assert_allclose(one_read, many_read, rtol=0, atol=0, equal_nan=True)
    assert 0.03 < np.isnan(one_read).mean() < 0.07

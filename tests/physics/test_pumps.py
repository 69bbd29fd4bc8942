"""Tests for variable- and constant-speed pump power."""

from __future__ import annotations

import numpy as np
import pytest

from physics.pumps import constant_speed_pump_power_kw, pump_power_kw


def test_cubic_affinity_law() -> None:
    flow = np.array([0.3, 0.5, 0.8, 1.0, 1.1])
    np.testing.assert_allclose(pump_power_kw(20.0, flow), 20.0 * flow**3)
    assert pump_power_kw(20.0, 0.5) == pytest.approx(20.0 / 8.0)


def test_min_speed_and_off() -> None:
    power = pump_power_kw(20.0, np.array([0.0, 0.05, 0.2, 0.3]), min_speed_frac=0.3)
    np.testing.assert_allclose(power, [0.0, 20.0 * 0.027, 20.0 * 0.027, 20.0 * 0.027])


def test_static_head_flattens_the_curve() -> None:
    flow = np.linspace(0.3, 1.0, 15)
    with_static = pump_power_kw(20.0, flow, static_head_frac=0.4)
    assert np.all(with_static >= pump_power_kw(20.0, flow) - 1e-12)
    assert with_static[-1] == pytest.approx(20.0)
    np.testing.assert_allclose(with_static, 20.0 * flow * (0.4 + 0.6 * flow**2))


def test_wear_raises_power_and_shapes_broadcast() -> None:
    worn = pump_power_kw(np.array([[10.0], [20.0]]), np.array([0.5, 1.0]), 0.3, 0.0, 0.8)
    assert worn.shape == (2, 2)
    assert worn[1, 1] == pytest.approx(25.0)


def test_constant_speed_pump() -> None:
    np.testing.assert_array_equal(
        constant_speed_pump_power_kw(15.0, np.array([True, False])), [15.0, 0.0]
    )

"""Reference tests for the IT load model (Fan/Weber/Barroso power, leakage, server fans)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from physics.constants import CP_AIR_KJ_KG_K
from physics.servers import (
    ServerParams,
    server_fan_speed,
    server_operating_point,
    utilisation_power_frac,
)

PARAMS = ServerParams()
NOMINAL_INLET_C = 22.0  # below the 25 °C leakage/fan onset


def test_power_is_p_max_at_full_utilisation_and_nominal_inlet() -> None:
    op = server_operating_point(PARAMS, 1.0, NOMINAL_INLET_C)
    assert float(op.power_kw) == pytest.approx(PARAMS.max_power_kw, rel=1e-12)
    # Fans run at nominal speed below the onset whatever the utilisation.
    op_all = server_operating_point(PARAMS, np.array([0.0, 0.3, 1.0]), NOMINAL_INLET_C)
    np.testing.assert_allclose(op_all.fan_power_kw, PARAMS.fan_power_frac * PARAMS.max_power_kw)


def test_fan_weber_barroso_fraction_at_hand_computed_points() -> None:
    # u = 0.5: 2u − u^1.4 = 1 − 0.378929 = 0.621071 (0.5^1.4 = e^{−1.4 ln 2}),
    # so idle 0.5 gives 0.5 + 0.5 · 0.621071 = 0.810535.
    assert float(utilisation_power_frac(0.5, 0.5)) == pytest.approx(0.810535, abs=1e-6)
    # u = 0.2 with idle 0.35: 0.4 − 0.2^1.4 = 0.4 − 0.105061 = 0.294939 → 0.35 + 0.65·0.294939.
    assert float(utilisation_power_frac(0.35, 0.2)) == pytest.approx(0.541710, abs=1e-6)
    np.testing.assert_allclose(utilisation_power_frac(0.5, np.array([0.0, 1.0])), [0.5, 1.0])


def test_rack_power_follows_2u_minus_u_pow_1_4_between_idle_and_full() -> None:
    u = np.array([0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0])
    power = server_operating_point(PARAMS, u, NOMINAL_INLET_C).power_kw
    shape = (power - power[0]) / (power[-1] - power[0])
    # Hand-computed 2u − u^1.4 at u = 0.5: 0.621071.
    assert shape[3] == pytest.approx(0.621071, abs=1e-6)
    np.testing.assert_allclose(shape, 2.0 * u - u**1.4, rtol=1e-12, atol=1e-14)


def test_utilisation_outside_unit_interval_is_clipped() -> None:
    frac = utilisation_power_frac(0.5, np.array([-0.3, 0.0, 1.0, 1.7]))
    np.testing.assert_allclose(frac, [0.5, 0.5, 1.0, 1.0])


@given(
    idle=st.floats(0.05, 0.95),
    u1=st.floats(0.0, 1.0),
    u2=st.floats(0.0, 1.0),
)
def test_power_fraction_is_monotone_and_bounded(idle: float, u1: float, u2: float) -> None:
    lo, hi = min(u1, u2), max(u1, u2)
    f_lo = float(utilisation_power_frac(idle, lo))
    f_hi = float(utilisation_power_frac(idle, hi))
    assert idle - 1e-12 <= f_lo <= f_hi + 1e-12
    assert f_hi <= 1.0 + 1e-12


def test_leakage_and_fan_power_grow_only_above_onset() -> None:
    inlet = np.linspace(10.0, 40.0, 61)
    op = server_operating_point(PARAMS, 0.7, inlet)
    below = inlet <= PARAMS.leakage_onset_c
    np.testing.assert_allclose(op.power_kw[below], op.power_kw[below][0], rtol=1e-14)
    np.testing.assert_allclose(op.fan_power_kw[below], op.fan_power_kw[below][0], rtol=1e-14)
    np.testing.assert_allclose(op.airflow_kg_s[below], PARAMS.design_airflow_kg_s, rtol=1e-14)
    above = ~below
    assert np.all(np.diff(op.power_kw[above]) > 0.0)
    assert np.all(op.power_kw[above] > op.power_kw[below][0])


def test_power_above_onset_at_hand_computed_point() -> None:
    # Inlet 30 °C, u = 1: 5 K above the onset.
    # Board: 10 · 0.96 · 1 · (1 + 0.006·5) = 9.888 kW; fan speed 1 + 0.05·5 = 1.25,
    # fan: 10 · 0.04 · 1.25³ = 0.78125 kW; total 10.66925 kW.
    op = server_operating_point(PARAMS, 1.0, 30.0)
    assert float(op.fan_power_kw) == pytest.approx(0.78125, rel=1e-12)
    assert float(op.power_kw) == pytest.approx(10.66925, rel=1e-12)
    assert float(op.airflow_kg_s) == pytest.approx(1.25 * PARAMS.design_airflow_kg_s, rel=1e-12)


def test_fan_power_goes_with_speed_cubed_and_airflow_with_speed() -> None:
    inlet = np.array([20.0, 27.0, 31.0, 35.0, 45.0])
    speed = server_fan_speed(PARAMS, inlet)
    np.testing.assert_allclose(speed, [1.0, 1.1, 1.3, 1.5, PARAMS.max_fan_speed], rtol=1e-12)
    op = server_operating_point(PARAMS, 0.4, inlet)
    ratio = speed / speed[0]
    np.testing.assert_allclose(op.fan_power_kw / op.fan_power_kw[0], ratio**3, rtol=1e-12)
    np.testing.assert_allclose(op.airflow_kg_s / op.airflow_kg_s[0], ratio, rtol=1e-12)


def test_fan_speed_saturates_at_maximum() -> None:
    speed = server_fan_speed(PARAMS, np.array([37.0, 40.0, 60.0]))
    # 1 + 0.05 · 12 K = 1.6 is exactly the cap.
    np.testing.assert_allclose(speed, PARAMS.max_fan_speed, rtol=1e-12)


@pytest.mark.parametrize("power_scale", [0.5, 1.0, 1.3])
def test_design_airflow_gives_design_delta_t_at_p_max(power_scale: float) -> None:
    # 10 kW / (1.006 kJ/(kg·K) · 12 K) = 0.828363 kg/s.
    assert PARAMS.design_airflow_kg_s == pytest.approx(0.828363, rel=1e-6)
    op = server_operating_point(PARAMS, 1.0, NOMINAL_INLET_C, power_scale=power_scale)
    assert float(op.power_kw) == pytest.approx(power_scale * PARAMS.max_power_kw, rel=1e-12)
    delta_t = op.power_kw / (op.airflow_kg_s * CP_AIR_KJ_KG_K)
    assert float(delta_t) == pytest.approx(PARAMS.design_delta_t_k, rel=1e-12)


def test_vectorised_over_sites_pods_racks() -> None:
    rng = np.random.default_rng(7)
    shape = (2, 3, 4)
    util = rng.uniform(0.0, 1.0, shape)
    inlet = rng.uniform(18.0, 38.0, shape)
    scale = rng.uniform(0.8, 1.2, (1, 1, 4))
    op = server_operating_point(PARAMS, util, inlet, power_scale=scale)
    for arr in (op.power_kw, op.fan_power_kw, op.airflow_kg_s):
        assert arr.shape == shape
    for idx in np.ndindex(*shape):
        one = server_operating_point(PARAMS, util[idx], inlet[idx], power_scale=scale[0, 0, idx[2]])
        assert op.power_kw[idx] == pytest.approx(float(one.power_kw), rel=1e-14)
        assert op.fan_power_kw[idx] == pytest.approx(float(one.fan_power_kw), rel=1e-14)
        assert op.airflow_kg_s[idx] == pytest.approx(float(one.airflow_kg_s), rel=1e-14)
    # A scalar inlet still yields per-rack airflow of the full shape.
    flat = server_operating_point(PARAMS, util, NOMINAL_INLET_C)
    assert flat.airflow_kg_s.shape == shape
    np.testing.assert_allclose(flat.airflow_kg_s, PARAMS.design_airflow_kg_s)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_power_kw": 0.0},
        {"max_power_kw": -1.0},
        {"idle_frac": 0.0},
        {"idle_frac": 1.0},
        {"fan_power_frac": -0.01},
        {"fan_power_frac": 0.5},
        {"max_fan_speed": 0.9},
        {"design_delta_t_k": 0.0},
    ],
)
def test_invalid_params_raise(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        ServerParams(**kwargs)


def test_idle_power_is_idle_fraction_of_nameplate_including_fans() -> None:
    params = ServerParams()
    point = server_operating_point(params, 0.0, 22.0)
    np.testing.assert_allclose(point.power_kw, params.idle_frac * params.max_power_kw)
    half = server_operating_point(params, 0.5, 22.0)
    expected = params.max_power_kw * (0.5 + 0.5 * (1.0 - 0.5**1.4))
    np.testing.assert_allclose(half.power_kw, expected)

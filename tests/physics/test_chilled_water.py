"""Reference tests for the chilled-water loop: mixed tanks, primary flow, mixing, chillers."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from physics.chilled_water import (
    ChilledWaterLoopParams,
    chiller_leaving_c,
    mixed_return_c,
    mixed_tank_step,
    primary_flow_kg_s,
)
from physics.constants import CP_WATER_KJ_KG_K, RHO_WATER_KG_M3

PARAMS = ChilledWaterLoopParams()


def test_tank_masses_from_volumes() -> None:
    assert PARAMS.supply_mass_kg == pytest.approx(12.0 * RHO_WATER_KG_M3)
    assert PARAMS.return_mass_kg == pytest.approx(12.0 * 997.0)


@pytest.mark.parametrize("dt_s", [1.0, 60.0, 600.0, 7200.0])
def test_mixed_tank_matches_analytic_exponential(dt_s: float) -> None:
    mass = PARAMS.supply_mass_kg
    flow = np.array([0.0, 5.0, 40.0, 120.0])
    out = mixed_tank_step(14.0, 7.0, flow, mass, dt_s)
    analytic = 7.0 + (14.0 - 7.0) * np.exp(-flow * dt_s / mass)
    np.testing.assert_allclose(out.temp_c, analytic, rtol=1e-13)
    # Stored heat is M c_p ΔT / dt; no flow stores nothing.
    np.testing.assert_allclose(
        out.stored_kw, mass * CP_WATER_KJ_KG_K * (analytic - 14.0) / dt_s, rtol=1e-12
    )
    assert out.stored_kw[0] == 0.0
    assert np.all(out.stored_kw[1:] < 0.0)


def test_mixed_tank_hand_computed_time_constant() -> None:
    # 11 964 kg at 11.964 kg/s: τ = 1000 s; after one τ, 1 − e^{−1} = 63.212 % of the way.
    out = mixed_tank_step(20.0, 10.0, 11.964, 11_964.0, 1_000.0)
    assert float(out.temp_c) == pytest.approx(10.0 + 10.0 * 0.367879, abs=1e-5)


def test_mixed_tank_steps_compose_exactly_and_energy_closes() -> None:
    mass, flow, dt_s = PARAMS.return_mass_kg, 30.0, 20.0
    inflow = np.array([12.0, 14.0, 16.0, 13.0, 11.0, 15.0])
    temp = np.array(9.0)
    stored_kj = 0.0
    advected_kj = 0.0
    for t_in in inflow:
        # Enthalpy in − out over the step: m c_p ∫ (T_in − T(t)) dt, by fine quadrature of
        # the analytic trajectory T(t) = T_in + (T_0 − T_in) e^{−m t / M}.
        times = np.linspace(0.0, dt_s, 2_001)
        traj = t_in + (temp - t_in) * np.exp(-flow * times / mass)
        gap = t_in - traj
        advected_kj += (
            flow * CP_WATER_KJ_KG_K * float(np.sum(0.5 * (gap[1:] + gap[:-1]) * np.diff(times)))
        )
        step = mixed_tank_step(temp, t_in, flow, mass, dt_s)
        stored_kj += float(step.stored_kw) * dt_s
        temp = step.temp_c
    assert stored_kj == pytest.approx(advected_kj, rel=1e-6)
    assert stored_kj == pytest.approx(mass * CP_WATER_KJ_KG_K * (float(temp) - 9.0), rel=1e-12)
    # Constant inflow: ten short steps equal one long one.
    t = np.array(20.0)
    for _ in range(10):
        t = mixed_tank_step(t, 8.0, flow, mass, 30.0).temp_c
    one = mixed_tank_step(20.0, 8.0, flow, mass, 300.0).temp_c
    assert float(t) == pytest.approx(float(one), rel=1e-13)


@pytest.mark.parametrize(
    ("coil_flow", "chillers_on", "expected"),
    [
        (50.0, 1, 50.0),
        (5.0, 1, 12.0),
        (20.0, 2, 24.0),
        (30.0, 2, 30.0),
        (7.0, 0, 7.0),
        (0.0, 3, 36.0),
    ],
)
def test_primary_flow_respects_minimum_per_running_chiller(
    coil_flow: float, chillers_on: int, expected: float
) -> None:
    assert float(primary_flow_kg_s(coil_flow, chillers_on, PARAMS)) == pytest.approx(expected)


def test_primary_flow_vectorised() -> None:
    out = primary_flow_kg_s(np.array([5.0, 30.0, 10.0]), np.array([1, 2, 3]), PARAMS)
    np.testing.assert_allclose(out, [12.0, 30.0, 36.0])


@given(
    coil_return=st.floats(8.0, 25.0),
    supply=st.floats(4.0, 12.0),
    coil_flow=st.floats(0.0, 80.0),
    chillers_on=st.integers(0, 4),
)
def test_mixing_energy_balance(
    coil_return: float, supply: float, coil_flow: float, chillers_on: int
) -> None:
    primary = float(primary_flow_kg_s(coil_flow, chillers_on, PARAMS))
    assume(primary > 0.0)
    mixed = float(mixed_return_c(coil_return, coil_flow, supply, primary))
    bypass = primary - coil_flow
    assert bypass >= 0.0
    enthalpy_in = coil_flow * coil_return + bypass * supply
    assert primary * mixed == pytest.approx(enthalpy_in, rel=1e-12, abs=1e-9)
    assert min(coil_return, supply) - 1e-9 <= mixed <= max(coil_return, supply) + 1e-9


def test_mixing_hand_computed() -> None:
    # 30 kg/s at 16 °C from the coils plus 10 kg/s bypassed at 7 °C → (480 + 70)/40 = 13.75 °C.
    assert float(mixed_return_c(16.0, 30.0, 7.0, 40.0)) == pytest.approx(13.75)
    # No bypass: the coil return passes unchanged.
    assert float(mixed_return_c(16.0, 40.0, 7.0, 40.0)) == pytest.approx(16.0)


def test_chiller_meets_setpoint_when_capacity_suffices() -> None:
    # 40 kg/s from 13 to 7 °C needs 40 · 4.186 · 6 = 1004.64 kW.
    leave = chiller_leaving_c(13.0, 40.0, 7.0, np.array([1004.64 + 1e-6, 1500.0, 1e5]))
    np.testing.assert_allclose(leave, 7.0)


def test_chiller_short_of_capacity_leaves_warmer() -> None:
    capacity = np.array([0.0, 400.0, 1000.0])
    leave = chiller_leaving_c(13.0, 40.0, 7.0, capacity)
    np.testing.assert_allclose(leave, 13.0 - capacity / (40.0 * CP_WATER_KJ_KG_K), rtol=1e-12)
    # 400 kW on 167.44 kW/K: 13 − 2.388915 = 10.611085 °C.
    assert leave[1] == pytest.approx(10.611085, abs=1e-6)


def test_chiller_never_heats_the_water() -> None:
    assert float(chiller_leaving_c(6.0, 40.0, 7.0, 800.0)) == pytest.approx(6.0)


@given(
    entering=st.floats(5.0, 25.0),
    flow=st.floats(1.0, 120.0),
    setpoint=st.floats(4.0, 14.0),
    capacity=st.floats(0.0, 5_000.0),
)
def test_chiller_load_never_exceeds_capacity(
    entering: float, flow: float, setpoint: float, capacity: float
) -> None:
    leave = float(chiller_leaving_c(entering, flow, setpoint, capacity))
    load = flow * CP_WATER_KJ_KG_K * (entering - leave)
    assert -1e-9 <= load <= capacity * (1.0 + 1e-12) + 1e-9
    assert leave >= min(setpoint, entering) - 1e-9
    assert leave <= entering


@pytest.mark.parametrize(
    "kwargs",
    [
        {"supply_volume_m3": 0.0},
        {"return_volume_m3": -1.0},
        {"design_flow_kg_s": 0.0},
        {"min_flow_per_chiller_kg_s": -0.1},
    ],
)
def test_invalid_params_raise(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        ChilledWaterLoopParams(**kwargs)


def test_supply_main_conserves_energy_and_delays_a_step_change() -> None:
    from physics.chilled_water import mixed_tank_step, segmented_main_step

    mass_kg, flow, dt = 4_000.0, np.array([40.0]), 10.0
    segments = np.full((3, 1), 7.0)
    single = np.array([7.0])
    stored_kj = 0.0
    outlet, outlet_single = [], []
    for _ in range(30):  # the chillers' water steps from 7 to 12 °C
        step = segmented_main_step(segments, np.array([12.0]), flow, mass_kg, dt)
        stored_kj += float(step.stored_kw[0]) * dt
        segments = step.temp_c
        single = mixed_tank_step(single, np.array([12.0]), flow, mass_kg, dt).temp_c
        outlet.append(float(segments[-1, 0]))
        outlet_single.append(float(single[0]))
    # Stored heat equals the pipe's enthalpy change.
    expected_kj = mass_kg / 3 * CP_WATER_KJ_KG_K * float((segments[:, 0] - 7.0).sum())
    assert stored_kj == pytest.approx(expected_kj, rel=1e-9)
    # Segments in series respond later than one mixed volume of the same size.
    assert outlet[1] < outlet_single[1]
    assert outlet[-1] == pytest.approx(12.0, abs=0.2)

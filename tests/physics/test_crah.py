"""Reference tests for the CRAH coil (ε-NTU counterflow), its valve loop and fan."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from physics.constants import CP_AIR_KJ_KG_K, CP_WATER_KJ_KG_K
from physics.crah import (
    CrahParams,
    coil_leaving_air_c,
    coil_ua_kw_k,
    counterflow_effectiveness,
    fan_airflow_kg_s,
    fan_power_kw,
    ntu_for_effectiveness,
    supply_air_from_heat_balance_c,
    valve_water_flow_for_setpoint,
)
from physics.plant.faults import FaultEvent
from physics.plant.scenario import load_scenario
from physics.plant.simulation import build_plant

PARAMS = CrahParams()


def _counterflow_outlets(
    hot_in_c: float, cold_in_c: float, c_hot: float, c_cold: float, ua: float
) -> tuple[float, float]:
    """Outlet temperatures of a counterflow exchanger by integrating the ODEs (RK4).

    Along the hot stream (x from 0 to 1): C_h dT_h/dx = −UA (T_h − T_c) and, the cold stream
    running the other way, C_c dT_c/dx = −UA (T_h − T_c). The system is linear, so the
    transfer matrix from x = 0 to x = 1 is integrated once and the unknown cold outlet
    (at x = 0) is solved for from the known cold inlet at x = 1.
    """
    a = ua * np.array([[-1.0 / c_hot, 1.0 / c_hot], [-1.0 / c_cold, 1.0 / c_cold]])
    n = 4_000
    h = 1.0 / n
    phi = np.eye(2)
    k1 = a
    k2 = a @ (np.eye(2) + 0.5 * h * k1)
    k3 = a @ (np.eye(2) + 0.5 * h * k2)
    k4 = a @ (np.eye(2) + h * k3)
    step = np.eye(2) + h / 6.0 * (k1 + 2.0 * k2 + 2.0 * k3 + k4)
    for _ in range(n):
        phi = step @ phi
    # T_c(1) = phi[1,0] T_h(0) + phi[1,1] T_c(0) = cold_in.
    cold_out = (cold_in_c - phi[1, 0] * hot_in_c) / phi[1, 1]
    hot_out = phi[0, 0] * hot_in_c + phi[0, 1] * cold_out
    return float(hot_out), float(cold_out)


def test_counterflow_effectiveness_textbook_values() -> None:
    # Incropera Table 11.3 / Fig. 11.15: NTU = 1, C_r = 0.5 → ε = 0.565.
    assert float(counterflow_effectiveness(1.0, 0.5)) == pytest.approx(0.565, abs=5e-4)
    # Hand-computed: (1 − e^{−0.5}) / (1 − 0.75 e^{−0.5}) = 0.39347 / 0.54510 = 0.72183.
    assert float(counterflow_effectiveness(2.0, 0.75)) == pytest.approx(0.72183, abs=1e-5)
    ntu = np.array([0.1, 0.5, 1.0, 2.0, 5.0])
    np.testing.assert_allclose(counterflow_effectiveness(ntu, 0.0), 1.0 - np.exp(-ntu))
    np.testing.assert_allclose(counterflow_effectiveness(ntu, 1.0), ntu / (1.0 + ntu))
    # Balanced exchanger, NTU = 3: ε = 0.75.
    assert float(counterflow_effectiveness(3.0, 1.0)) == pytest.approx(0.75)


def test_effectiveness_is_continuous_at_balanced_flow() -> None:
    ntu = np.array([0.3, 1.0, 4.0])
    near = counterflow_effectiveness(ntu, 1.0 - 1e-4)
    np.testing.assert_allclose(near, ntu / (1.0 + ntu), atol=1e-4)


@pytest.mark.parametrize(("ntu", "cr"), [(0.4, 0.2), (1.0, 0.5), (2.5, 0.9), (1.5, 1.0)])
def test_effectiveness_matches_integrated_counterflow_exchanger(ntu: float, cr: float) -> None:
    c_min = 5.0
    hot_out, cold_out = _counterflow_outlets(40.0, 10.0, c_min, c_min / cr, ntu * c_min)
    eps_numeric = (40.0 - hot_out) / 30.0
    assert float(counterflow_effectiveness(ntu, cr)) == pytest.approx(eps_numeric, abs=1e-9)
    # The integration itself balances: heat lost by hot = heat gained by cold.
    assert c_min * (40.0 - hot_out) == pytest.approx(c_min / cr * (cold_out - 10.0), rel=1e-9)


@given(ntu=st.floats(0.01, 5.0), cr=st.floats(0.0, 1.0))
def test_ntu_for_effectiveness_inverts_counterflow_effectiveness(ntu: float, cr: float) -> None:
    eps = float(counterflow_effectiveness(ntu, cr))
    assert ntu_for_effectiveness(eps, cr) == pytest.approx(ntu, rel=1e-6)


def test_design_ua_reproduces_design_effectiveness_at_design_flows() -> None:
    # Design: C_air = 11 · 1.006 = 11.066 kW/K (C_min), C_w = 4.5 · 4.186 = 18.837 kW/K.
    c_air = PARAMS.design_airflow_kg_s * CP_AIR_KJ_KG_K
    c_w = PARAMS.design_water_flow_kg_s * CP_WATER_KJ_KG_K
    ntu = PARAMS.design_ua_kw_k / c_air
    assert float(counterflow_effectiveness(ntu, c_air / c_w)) == pytest.approx(0.6, rel=1e-12)
    ua = coil_ua_kw_k(PARAMS, PARAMS.design_airflow_kg_s, PARAMS.design_water_flow_kg_s, 1.0)
    assert float(ua) == pytest.approx(PARAMS.design_ua_kw_k, rel=1e-12)
    # Air is C_min, so its temperature drop is ε · (T_air,in − T_water,in): 35 − 0.6 · 25 = 20.
    leave = coil_leaving_air_c(
        PARAMS, 35.0, 10.0, PARAMS.design_airflow_kg_s, PARAMS.design_water_flow_kg_s
    )
    assert float(leave) == pytest.approx(20.0, abs=1e-9)


@pytest.mark.parametrize(
    ("airflow", "water_flow", "ua_mult"), [(11.0, 4.5, 1.0), (5.0, 2.0, 0.9), (8.0, 0.5, 1.1)]
)
def test_coil_matches_integrated_exchanger_and_balances(
    airflow: float, water_flow: float, ua_mult: float
) -> None:
    air_in, water_in = 34.0, 11.0
    leave = float(coil_leaving_air_c(PARAMS, air_in, water_in, airflow, water_flow, ua_mult))
    c_air = airflow * CP_AIR_KJ_KG_K
    c_w = water_flow * CP_WATER_KJ_KG_K
    ua = float(coil_ua_kw_k(PARAMS, airflow, water_flow, ua_mult))
    ref_leave, ref_water_out = _counterflow_outlets(air_in, water_in, c_air, c_w, ua)
    assert leave == pytest.approx(ref_leave, abs=1e-8)
    # Water leaving temperature from the coil duty: air heat lost = water heat gained.
    q_kw = c_air * (air_in - leave)
    water_out = water_in + q_kw / c_w
    assert water_out == pytest.approx(ref_water_out, abs=1e-8)
    assert q_kw > 0.0


@settings(max_examples=200)
@given(
    air_in=st.floats(20.0, 45.0),
    water_in=st.floats(5.0, 20.0),
    airflow=st.floats(1.0, 15.0),
    water_flow=st.floats(0.05, 8.0),
    ua_mult=st.floats(0.5, 1.5),
)
def test_coil_obeys_second_law(
    air_in: float, water_in: float, airflow: float, water_flow: float, ua_mult: float
) -> None:
    leave = float(coil_leaving_air_c(PARAMS, air_in, water_in, airflow, water_flow, ua_mult))
    q_kw = airflow * CP_AIR_KJ_KG_K * (air_in - leave)
    water_out = water_in + q_kw / (water_flow * CP_WATER_KJ_KG_K)
    q_max = min(airflow * CP_AIR_KJ_KG_K, water_flow * CP_WATER_KJ_KG_K) * (air_in - water_in)
    assert 0.0 <= q_kw <= q_max * (1.0 + 1e-12) + 1e-12
    # Counterflow: air never below the entering water, water never above the entering air.
    assert leave >= water_in - 1e-9
    assert water_out <= air_in + 1e-9


def test_no_water_or_warm_water_means_no_cooling() -> None:
    assert float(coil_leaving_air_c(PARAMS, 30.0, 10.0, 8.0, 0.0)) == pytest.approx(30.0)
    assert float(coil_leaving_air_c(PARAMS, 30.0, 32.0, 8.0, 4.0)) == pytest.approx(30.0)


def test_ua_scaling_exponents_by_finite_ratio() -> None:
    r_a = PARAMS.air_side_resistance_frac
    ua0 = PARAMS.design_ua_kw_k
    m_a0, m_w0 = PARAMS.design_airflow_kg_s, PARAMS.design_water_flow_kg_s

    def air_resistance(m_a: float) -> float:
        return 1.0 / float(coil_ua_kw_k(PARAMS, m_a, m_w0, 1.0)) - (1.0 - r_a) / ua0

    def water_resistance(m_w: float) -> float:
        return 1.0 / float(coil_ua_kw_k(PARAMS, m_a0, m_w, 1.0)) - r_a / ua0

    exp_air = math.log(air_resistance(0.5 * m_a0) / air_resistance(m_a0)) / math.log(2.0)
    exp_water = math.log(water_resistance(0.4 * m_w0) / water_resistance(m_w0)) / math.log(2.5)
    assert exp_air == pytest.approx(0.8, rel=1e-9)
    assert exp_water == pytest.approx(0.85, rel=1e-9)
    # Air at half flow, water at design: UA0 / (0.7 · 2^0.8 + 0.3) = UA0 / 1.518771.
    ua_half = float(coil_ua_kw_k(PARAMS, 0.5 * m_a0, m_w0, 1.0))
    assert ua_half == pytest.approx(ua0 / 1.518771, rel=1e-6)
    # Fouling/site multiplier is linear.
    ua_fouled = float(coil_ua_kw_k(PARAMS, 7.0, 3.0, 0.8))
    assert ua_fouled == pytest.approx(0.8 * float(coil_ua_kw_k(PARAMS, 7.0, 3.0, 1.0)))


def test_leaving_air_falls_monotonically_with_water_flow() -> None:
    flow = np.linspace(0.0, PARAMS.max_water_flow_kg_s, 121)
    leave = coil_leaving_air_c(PARAMS, 36.0, 12.0, 9.0, flow, 1.0)
    assert leave[0] == pytest.approx(36.0)
    assert np.all(np.diff(leave) < 0.0)
    assert leave[-1] > 12.0


@settings(max_examples=150, deadline=None)
@given(
    air_in=st.floats(24.0, 42.0),
    water_in=st.floats(6.0, 16.0),
    airflow=st.floats(3.3, 11.0),
    ua_mult=st.floats(0.7, 1.3),
    where=st.floats(0.02, 0.98),
)
def test_valve_reaches_a_reachable_setpoint(
    air_in: float, water_in: float, airflow: float, ua_mult: float, where: float
) -> None:
    a = np.array([air_in])
    w = np.array([water_in])
    m = np.array([airflow])
    mult = np.array([ua_mult])
    coldest = float(coil_leaving_air_c(PARAMS, a, w, m, PARAMS.max_water_flow_kg_s, mult)[0])
    setpoint = coldest + where * (air_in - coldest)
    flow = valve_water_flow_for_setpoint(PARAMS, a, w, m, np.array([setpoint]), mult)
    assert 0.0 < float(flow[0]) <= PARAMS.max_water_flow_kg_s
    achieved = float(coil_leaving_air_c(PARAMS, a, w, m, flow, mult)[0])
    assert achieved == pytest.approx(setpoint, abs=0.1)


def test_valve_opens_fully_when_unreachable_and_closes_when_already_met() -> None:
    air_in = np.array([35.0, 35.0, 22.0, 30.0])
    water_in = np.array([10.0, 10.0, 10.0, 31.0])
    airflow = np.full(4, 9.0)
    mult = np.ones(4)
    coldest = coil_leaving_air_c(PARAMS, air_in, water_in, airflow, PARAMS.max_water_flow_kg_s)
    # Unreachable: 1 K below what a fully open valve gives; entering already below setpoint;
    # water warmer than air cannot cool at all.
    setpoint = np.array([coldest[0] - 1.0, 15.0, 24.0, 20.0])
    flow = valve_water_flow_for_setpoint(PARAMS, air_in, water_in, airflow, setpoint, mult)
    np.testing.assert_allclose(
        flow, [PARAMS.max_water_flow_kg_s, PARAMS.max_water_flow_kg_s, 0.0, 6.0]
    )


def test_fan_affinity_laws_and_speed_clipping() -> None:
    speed = np.array([0.0, 0.1, 0.3, 0.5, 0.8, 1.0, 1.4])
    clipped = np.array([0.3, 0.3, 0.3, 0.5, 0.8, 1.0, 1.0])
    np.testing.assert_allclose(fan_airflow_kg_s(PARAMS, speed), 11.0 * clipped)
    np.testing.assert_allclose(fan_power_kw(PARAMS, speed), 6.5 * clipped**3)
    # Half speed: half the air for an eighth of the power.
    assert float(fan_power_kw(PARAMS, 0.5)) == pytest.approx(6.5 / 8.0)
    assert float(fan_airflow_kg_s(PARAMS, 0.5)) == pytest.approx(5.5)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"min_speed_frac": 0.0},
        {"min_speed_frac": 1.0},
        {"design_effectiveness": 0.0},
        {"design_effectiveness": 1.0},
        {"max_water_flow_kg_s": 4.0},
        {"air_side_resistance_frac": 0.0},
        {"air_side_resistance_frac": 1.0},
    ],
)
def test_invalid_params_raise(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        CrahParams(**kwargs)


def test_the_heat_balance_gives_the_plants_supply_air_from_its_meters() -> None:
    """On the plant's own truth (a 2-day run with a CRAH fan trip and the economiser) the
    supply air the coil load implies is the mixed supply air within a few hundredths of a
    kelvin once the chilled-water loop has settled; no airflow gives NaN, not a number."""
    scenario = replace(
        load_scenario("eval-summer-2d"),
        faults=(FaultEvent("crah_fan_trip", 20.0, duration_h=6.0, target=2),),
    )
    plant = build_plant(scenario)
    logs, _ = plant.advance(round(48 * 3600 / scenario.step_s))
    names = list(plant.log_names)
    column = {n: logs[:, 0, names.index(n)] for n in names}
    implied = supply_air_from_heat_balance_c(
        column["return_air_c"],
        column["crah_airflow_kg_s"],
        column["crah_fan_power_kw"],
        column["chw_flow_kg_s"],
        column["chw_supply_c"],
        column["chw_return_c"],
    )
    settled = slice(60, None)  # the first hour starts from a guessed loop state
    error = np.abs(implied[settled] - column["supply_air_c"][settled])
    # Step by step the loop's storage lags the load by a minute or two after a trip; over a
    # 5-min control period, what the sensor check compares, the two agree.
    periods = error[: len(error) // 5 * 5].reshape(-1, 5).mean(axis=1)
    print(f"step: mean {error.mean():.3f} K, max {error.max():.3f} K; 5-min {periods.max():.3f}")
    assert error.mean() < 0.03 and np.quantile(error, 0.99) < 0.1 and periods.max() < 0.3
    assert np.isnan(supply_air_from_heat_balance_c(24.0, 0.0, 0.0, 50.0, 10.0, 15.0))

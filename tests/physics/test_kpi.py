"""KPI formulas against analytic values and hand computations."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from physics import kpi

STEP_S = 60.0
N_DAY = 24 * 60  # one day of 1-minute samples


def _frame(n: int = N_DAY, *, inlet_c: float = 24.0, with_sp: bool = True) -> pd.DataFrame:
    """A plant log: 1000 kW IT, 400 kW cooling, 50 kW losses, 10 kW lighting/aux."""
    data: dict[str, np.ndarray] = {
        "time_h": np.arange(n) * STEP_S / 3600.0,
        "it_power_kw": np.full(n, 1000.0),
        "chiller_power_kw": np.full(n, 250.0),
        "crah_fan_power_kw": np.full(n, 60.0),
        "chw_pump_power_kw": np.full(n, 30.0),
        "cw_pump_power_kw": np.full(n, 20.0),
        "tower_fan_power_kw": np.full(n, 15.0),
        "economiser_power_kw": np.full(n, 25.0),
        "ups_loss_kw": np.full(n, 30.0),
        "pdu_loss_kw": np.full(n, 12.0),
        "transformer_loss_kw": np.full(n, 8.0),
        "lighting_kw": np.full(n, 6.0),
        "aux_kw": np.full(n, 4.0),
        "facility_power_kw": np.full(n, 1460.0),
        "water_use_kg_s": np.full(n, 0.5),
    }
    for pod in range(2):
        for rack in range(3):
            data[f"rack_inlet_c.{pod}.{rack:02d}"] = np.full(n, inlet_c)
    if with_sp:
        data["sp.crah_supply_air_temp_c"] = np.where(np.arange(n) < n // 2, 20.0, 22.0)
        data["sp.economiser_enable"] = np.zeros(n)
    return pd.DataFrame(data)


def test_constant_day_energy_and_pue_are_exact() -> None:
    it = np.full(N_DAY, 1000.0)
    cooling = np.full(N_DAY, 400.0)
    it_kwh = kpi.energy_kwh(it, STEP_S)
    facility_kwh = kpi.energy_kwh(it + cooling, STEP_S)
    assert it_kwh == pytest.approx(24_000.0, rel=1e-12)
    assert kpi.pue(facility_kwh, it_kwh) == pytest.approx(1.4, rel=1e-12)
    assert kpi.cooling_ratio(kpi.energy_kwh(cooling, STEP_S), it_kwh) == pytest.approx(0.4)


def test_energy_per_column_and_zero_it_gives_nan() -> None:
    power = np.column_stack([np.full(10, 3600.0), np.full(10, 360.0)])
    np.testing.assert_allclose(kpi.energy_kwh(power, 1.0), [10.0, 1.0])
    assert math.isnan(float(kpi.pue(100.0, 0.0)))
    with pytest.raises(ValueError, match="step_s"):
        kpi.energy_kwh(power, 0.0)


def test_wue_and_co2_with_scalar_and_series_intensity() -> None:
    assert kpi.wue_l_per_kwh(1800.0, 1000.0) == pytest.approx(1.8)
    power = np.full(4, 100.0)  # 4 h at 100 kW with 1 h steps
    assert kpi.co2_kg(power, 0.5, 3600.0) == pytest.approx(200.0)
    intensity = np.array([0.1, 0.2, 0.3, 0.4])
    assert kpi.co2_kg(power, intensity, 3600.0) == pytest.approx(100.0)
    per_rack = kpi.co2_kg(np.column_stack([power, 2 * power]), intensity, 3600.0)
    np.testing.assert_allclose(per_rack, [100.0, 200.0])
    with pytest.raises(ValueError, match="samples"):
        kpi.co2_kg(power, intensity[:3], 3600.0)


def test_degree_hours_of_a_triangle() -> None:
    # 28 °C peak: rises 1 K above 27 °C over 1 h, falls back over 1 h, 1-minute samples.
    t_h = np.arange(0, 4 * 60 + 1) / 60.0
    inlet = 27.0 + np.maximum(0.0, 1.0 - np.abs(t_h - 2.0))
    assert kpi.violation_degree_hours(inlet, 60.0, 27.0) == pytest.approx(1.0, rel=1e-9)
    # the part above 27.5 °C is a triangle of half the base and half the height
    assert kpi.violation_degree_hours(inlet, 60.0, 27.5) == pytest.approx(0.25, rel=1e-9)
    assert kpi.violation_degree_hours(inlet, 60.0, 32.0) == 0.0
    two_racks = np.column_stack([inlet, inlet])
    assert kpi.violation_degree_hours(two_racks, 60.0, 27.0) == pytest.approx(2.0)
    assert kpi.max_inlet_c(two_racks) == pytest.approx(28.0)


def test_rci_hi_bounds_and_midpoint() -> None:
    rng = np.random.default_rng(0)
    assert kpi.rci_hi_percent(rng.uniform(18.0, 27.0, (100, 12))) == 100.0
    assert kpi.rci_hi_percent(np.full((100, 12), 32.0)) == pytest.approx(0.0, abs=1e-12)
    half = np.column_stack([np.full(10, 24.0), np.full(10, 32.0)])  # mean over-temp 2.5 K
    assert kpi.rci_hi_percent(half) == pytest.approx(50.0)
    assert kpi.rci_hi_percent(np.full(5, 37.0)) == pytest.approx(-100.0)


def test_rate_of_change_on_ramps() -> None:
    t_min = np.arange(0, 121, dtype=np.float64)  # 2 h at 1-minute steps
    ramp = 20.0 + 0.2 * t_min  # 0.2 K/min → 3 K per 15 min
    assert kpi.max_rate_of_change_c_per_15min(ramp, 60.0) == pytest.approx(3.0)
    steep = np.column_stack([ramp, 20.0 + 0.5 * t_min])  # second sensor: 7.5 K per 15 min
    assert kpi.max_rate_of_change_c_per_15min(steep, 60.0) == pytest.approx(7.5)
    assert kpi.max_rate_of_change_c_per_15min(-steep, 60.0) == pytest.approx(7.5)
    # a 4 K step and back within 10 minutes counts once, not twice
    blip = np.full(121, 22.0)
    blip[50:60] = 26.0
    assert kpi.max_rate_of_change_c_per_15min(blip, 60.0) == pytest.approx(4.0)
    # 5-minute steps: a window spans 3 steps; a 30-minute step is scaled to 15 minutes
    assert kpi.max_rate_of_change_c_per_15min(ramp[::5], 300.0) == pytest.approx(3.0)
    assert kpi.max_rate_of_change_c_per_15min(ramp[::30], 1800.0) == pytest.approx(3.0)
    assert kpi.max_rate_of_change_c_per_15min(ramp[:6], 60.0) == pytest.approx(1.0)


@given(arrays(np.float64, st.integers(2, 60), elements=st.floats(-50, 50)), st.integers(1, 30))
def test_sliding_range_matches_brute_force(x: np.ndarray, length: int) -> None:
    length = min(length, x.size)
    got = kpi._sliding_range(x, length)
    want = [np.ptp(x[i : i + length]) for i in range(x.size - length + 1)]
    np.testing.assert_allclose(got, want)


def test_control_quality() -> None:
    sp = np.array([[20.0, 0.5], [21.0, 0.5], [21.0, 0.7], [19.0, 0.7]])
    np.testing.assert_allclose(kpi.actuator_travel(sp), [3.0, 0.2])
    # 4 samples of 15 min = 1 h: 2 changes and 1 change
    np.testing.assert_allclose(kpi.setpoint_changes_per_hour(sp, 900.0), [2.0, 1.0])
    assert kpi.setpoint_changes_per_hour(sp[:, 1], 900.0, tol=0.5) == 0.0
    assert kpi.computational_time_ratio([0.1, 0.3], 60.0) == pytest.approx(0.2 / 60.0)


def test_twin_quality_against_hand_computation() -> None:
    y = np.array([10.0, 12.0, 14.0, 16.0])
    y_hat = np.array([11.0, 11.0, 14.0, 14.0])  # residuals y − ŷ: −1, 1, 0, 2
    # ȳ = 13; Σr² = 6; n − p = 3 → CV(RMSE) = sqrt(2)/13; Σr = 2 → NMBE = 2/(3·13)
    assert kpi.cv_rmse_percent(y, y_hat) == pytest.approx(math.sqrt(2.0) / 13.0 * 100.0)
    assert kpi.nmbe_percent(y, y_hat) == pytest.approx(2.0 / 39.0 * 100.0)
    assert kpi.nmbe_percent(y, y_hat) > 0.0  # the model under-predicts on balance
    assert kpi.cv_rmse_percent(y, y_hat, p=0) == pytest.approx(math.sqrt(1.5) / 13.0 * 100.0)
    assert kpi.median_abs_error(y, y_hat) == pytest.approx(1.0)
    assert kpi.p95_abs_error(y, y_hat) == pytest.approx(np.percentile([1, 1, 0, 2], 95))
    assert kpi.mape_percent(y, y_hat) == pytest.approx((0.1 + 1 / 12 + 0 + 2 / 16) / 4 * 100)
    assert math.isnan(kpi.cv_rmse_percent([1.0], [1.0]))
    assert math.isnan(kpi.mape_percent([0.0], [1.0]))


def test_compute_kpis_on_a_constant_day() -> None:
    report = kpi.compute_kpis(_frame(), STEP_S, carbon_intensity_kg_per_kwh=0.5)
    assert report.duration_h == pytest.approx(24.0)
    assert report.it_kwh == pytest.approx(24_000.0)
    assert report.cooling_kwh == pytest.approx(400.0 * 24)
    assert report.chiller_kwh == pytest.approx(250.0 * 24)
    assert report.pump_kwh == pytest.approx(50.0 * 24)
    assert report.power_chain_loss_kwh == pytest.approx(50.0 * 24)
    assert report.lighting_aux_kwh == pytest.approx(10.0 * 24)
    assert report.facility_kwh == pytest.approx(1460.0 * 24)
    assert report.pue == pytest.approx(1.46)
    assert report.cooling_ratio == pytest.approx(0.4)
    assert report.water_l == pytest.approx(0.5 * 86_400)
    assert report.wue_l_per_kwh == pytest.approx(1.8)
    assert report.co2_kg == pytest.approx(0.5 * 1460.0 * 24)
    assert report.violation_kh_above_27 == 0.0
    assert report.rci_hi_percent == 100.0
    assert report.max_inlet_c == report.min_inlet_c == 24.0
    assert report.actuator_travel == {"crah_supply_air_temp_c": 2.0, "economiser_enable": 0.0}
    assert report.setpoint_changes_per_hour["crah_supply_air_temp_c"] == pytest.approx(1 / 24)
    encoded = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert encoded["pue"] == pytest.approx(1.46)
    assert encoded["actuator_travel"]["crah_supply_air_temp_c"] == 2.0


def test_compute_kpis_optional_columns_and_hot_racks() -> None:
    frame = _frame(120, inlet_c=32.0, with_sp=False).drop(columns="economiser_power_kw")
    report = kpi.compute_kpis(frame, STEP_S)
    assert report.cooling_kwh == pytest.approx(375.0 * 2)
    assert report.violation_kh_above_27 == pytest.approx(5.0 * 6 * 2)
    assert report.violation_kh_above_32 == 0.0
    assert report.rci_hi_percent == pytest.approx(0.0, abs=1e-12)
    assert report.actuator_travel == {} and report.setpoint_changes_per_hour == {}


def test_to_dict_maps_nan_to_none() -> None:
    frame = _frame(10)
    frame["it_power_kw"] = 0.0
    encoded = kpi.compute_kpis(frame, STEP_S).to_dict()
    assert encoded["pue"] is None
    json.dumps(encoded, allow_nan=False)


def test_missing_columns_are_named() -> None:
    frame = _frame(10).drop(columns=["chiller_power_kw", "water_use_kg_s"])
    with pytest.raises(ValueError, match=r"chiller_power_kw, water_use_kg_s"):
        kpi.compute_kpis(frame, STEP_S)
    frame = _frame(10)
    no_racks = frame.drop(columns=kpi.rack_inlet_columns(frame))
    with pytest.raises(ValueError, match="rack_inlet_c"):
        kpi.compute_kpis(no_racks, STEP_S)

"""Reference tests for the YorkCalc variable-speed cooling tower."""

from __future__ import annotations

import numpy as np
import pytest

from physics.cooling_tower import (
    YORKCALC_COEFFS,
    CoolingTowerParams,
    airflow_ratio_for_setpoint,
    approach_k,
    tower_fan_power_kw,
    tower_leaving_water_c,
    tower_water_use_kg_s,
)

PARAMS = CoolingTowerParams(design_water_flow_kg_s=60.0, design_fan_power_kw=15.0)


def test_coefficients_match_energyplus_table() -> None:
    assert len(YORKCALC_COEFFS) == 27
    assert YORKCALC_COEFFS[0] == -0.359741205
    assert YORKCALC_COEFFS[9] == 2.84765801111111
    assert YORKCALC_COEFFS[26] == -0.000001516821552


def test_approach_at_correlation_reference_point() -> None:
    # YorkCalc reference: 2.4 gpm/ton, 78 °F wet bulb, 95 → 85 °F water, i.e. a 7 °F
    # (3.89 K) approach at a 10 °F (5.56 K) range with both flow ratios at 1.
    a = approach_k(25.0 + 5.0 / 9.0, 50.0 / 9.0, 1.0, 1.0)
    assert a == pytest.approx(3.89, abs=0.06)
    # Explicit 27-term sum in the Engineering Reference order, independent of the module.
    twb, tr, lg = 25.6, 5.6, 1.0
    terms = [
        twb**i * tr**j * lg**k for k in range(3) for j in range(3) for i in range(3)
    ]  # order: const, Twb, Twb², Tr, Twb·Tr, Twb²·Tr, Tr², ...
    expected = sum(c * t for c, t in zip(YORKCALC_COEFFS, terms, strict=True))
    assert approach_k(twb, tr, lg, 1.0) == pytest.approx(expected, rel=1e-12)


def test_approach_falls_with_airflow_and_rises_with_range() -> None:
    airflow = np.linspace(0.2, 1.0, 33)
    a = approach_k(25.0, 5.6, 1.0, airflow)
    assert np.all(np.diff(a) < 0.0)
    assert np.all(np.diff(approach_k(25.0, np.linspace(1.1, 12.0, 20), 1.0, 1.0)) > 0.0)


def test_wet_bulb_effect() -> None:
    # Like manufacturers' tower curves, the approach shrinks as the wet bulb rises, but
    # the leaving water still gets warmer.
    wet_bulb = np.linspace(10.0, 26.0, 17)
    a = approach_k(wet_bulb, 5.6, 1.0, 1.0)
    assert np.all(np.diff(a) < 0.0)
    leaving = tower_leaving_water_c(PARAMS, wet_bulb, wet_bulb + 10.0, 60.0, 1.0)
    assert np.all(np.diff(leaving) > 0.0)


def test_wet_bulb_and_water_flow_ratio_are_clamped() -> None:
    assert approach_k(29.0, 5.6, 1.0, 1.0) == approach_k(26.7, 5.6, 1.0, 1.0)
    assert approach_k(-40.0, 5.6, 1.0, 1.0) == approach_k(-34.4, 5.6, 1.0, 1.0)
    assert approach_k(20.0, 5.6, 1.6, 1.0) == approach_k(20.0, 5.6, 1.25, 1.0)
    assert approach_k(20.0, 5.6, 0.5, 1.0) == approach_k(20.0, 5.6, 0.75, 1.0)
    # Tropical 28 °C wet bulb: the approach of 26.7 °C added to the actual wet bulb.
    t_out = tower_leaving_water_c(PARAMS, 28.0, 36.0, 60.0, 1.0)
    assert t_out - 28.0 == pytest.approx(approach_k(26.7, 36.0 - t_out, 1.0, 1.0), abs=1e-4)


def test_leaving_water_between_wet_bulb_and_entering() -> None:
    rng = np.random.default_rng(1)
    wet_bulb = rng.uniform(5.0, 29.0, size=(3, 200))
    entering = wet_bulb + rng.uniform(-2.0, 15.0, size=(3, 200))
    flow = rng.uniform(0.0, 80.0, size=(3, 200))
    ratio = rng.uniform(0.0, 1.0, size=(3, 200))
    t_out = tower_leaving_water_c(PARAMS, wet_bulb, entering, flow, ratio)
    assert t_out.shape == (3, 200)
    assert np.all(t_out <= entering + 1e-9)
    assert np.all(t_out >= np.minimum(wet_bulb, entering) - 1e-9)
    # It solves T = Twb + approach(Tin − T) where the bracket does not bind.
    t_fan = tower_leaving_water_c(PARAMS, 25.6, 35.0, 60.0, 1.0)
    assert t_fan == pytest.approx(25.6 + approach_k(25.6, 35.0 - t_fan, 1.0, 1.0), abs=1e-4)
    assert t_fan == pytest.approx(29.44, abs=0.01)


def test_no_flow_leaves_water_unchanged() -> None:
    assert tower_leaving_water_c(PARAMS, 20.0, 32.0, 0.0, 1.0) == 32.0


def test_free_convection_and_cycling() -> None:
    t_max = tower_leaving_water_c(PARAMS, 25.6, 35.0, 60.0, 1.0)
    t_off = tower_leaving_water_c(PARAMS, 25.6, 35.0, 60.0, 0.0)
    assert t_off == pytest.approx(35.0 - 0.125 * (35.0 - t_max))
    ratios = np.linspace(0.0, 1.0, 51)
    t = tower_leaving_water_c(PARAMS, 25.6, 35.0, 60.0, ratios)
    assert np.all(np.diff(t) <= 1e-12)


@pytest.mark.parametrize("setpoint", [28.0, 29.6, 30.5, 32.0, 34.0])
def test_airflow_solve_round_trips(setpoint: float) -> None:
    ratio = airflow_ratio_for_setpoint(PARAMS, 25.6, 35.0, 60.0, setpoint)
    t_out = tower_leaving_water_c(PARAMS, 25.6, 35.0, 60.0, ratio)
    t_max = float(tower_leaving_water_c(PARAMS, 25.6, 35.0, 60.0, 1.0))
    if setpoint < t_max:
        assert ratio == 1.0
    else:
        assert 0.0 < ratio < 1.0
        assert t_out == pytest.approx(setpoint, abs=0.05)


def test_airflow_solve_vectorised_and_fan_off_when_free_convection_suffices() -> None:
    wet_bulb = np.array([[18.0, 22.0, 26.0], [24.0, 25.0, 26.5]])
    ratio = airflow_ratio_for_setpoint(PARAMS, wet_bulb, 35.0, 55.0, 30.0)
    assert ratio.shape == (2, 3)
    t_out = tower_leaving_water_c(PARAMS, wet_bulb, 35.0, 55.0, ratio)
    reachable = ratio < 1.0
    np.testing.assert_allclose(t_out[reachable], 30.0, atol=0.05)
    assert airflow_ratio_for_setpoint(PARAMS, 20.0, 31.0, 60.0, 31.5) == 0.0


def test_fan_power_cubic_with_cycling_below_minimum() -> None:
    ratios = np.array([0.2, 0.5, 0.8, 1.0])
    np.testing.assert_allclose(tower_fan_power_kw(PARAMS, ratios), 15.0 * ratios**3)
    assert tower_fan_power_kw(PARAMS, 0.0) == 0.0
    assert tower_fan_power_kw(PARAMS, 0.1) == pytest.approx(0.5 * 15.0 * 0.2**3)


def test_water_use_for_one_megawatt() -> None:
    use = tower_water_use_kg_s(PARAMS, 1000.0, 60.0)
    assert use.evaporation_kg_s == pytest.approx(0.4115, abs=1e-3)
    assert use.drift_kg_s == pytest.approx(0.0048)
    assert use.blowdown_kg_s == pytest.approx(0.4115 / 2.0 - 0.0048, abs=1e-3)
    np.testing.assert_allclose(
        use.total_kg_s, use.evaporation_kg_s + use.drift_kg_s + use.blowdown_kg_s
    )
    none = tower_water_use_kg_s(PARAMS, np.zeros(3), np.full(3, 60.0))
    np.testing.assert_array_equal(none.blowdown_kg_s, 0.0)


def test_params_validate() -> None:
    with pytest.raises(ValueError, match="cycles"):
        CoolingTowerParams(cycles_of_concentration=1.0)
    with pytest.raises(ValueError, match="min_airflow_ratio"):
        CoolingTowerParams(min_airflow_ratio=0.0)

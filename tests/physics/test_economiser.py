"""Tests for the waterside economiser plate heat exchanger."""

from __future__ import annotations

import numpy as np
import pytest

from physics.constants import CP_WATER_KJ_KG_K
from physics.economiser import economiser_available, economiser_heat_kw


def test_duty_is_effectiveness_times_cmin_delta_t() -> None:
    flows = economiser_heat_kw(0.8, True, 18.0, 40.0, 12.0, 50.0)
    c_min = 40.0 * CP_WATER_KJ_KG_K
    assert flows.heat_kw == pytest.approx(0.8 * c_min * 6.0)
    # The C_min stream (chilled water) changes by ε·ΔT_max.
    assert flows.chw_leave_c == pytest.approx(18.0 - 0.8 * 6.0)


def test_energy_balance_on_both_sides() -> None:
    rng = np.random.default_rng(2)
    shape = (5, 40)
    chw_ret = rng.uniform(12.0, 22.0, shape)
    cw_sup = rng.uniform(5.0, 25.0, shape)
    chw_flow = rng.uniform(10.0, 60.0, shape)
    cw_flow = rng.uniform(10.0, 60.0, shape)
    flows = economiser_heat_kw(0.8, np.ones(shape, bool), chw_ret, chw_flow, cw_sup, cw_flow)
    assert flows.heat_kw.shape == shape
    chw_side = chw_flow * CP_WATER_KJ_KG_K * (chw_ret - flows.chw_leave_c)
    cw_side = cw_flow * CP_WATER_KJ_KG_K * (flows.cw_leave_c - cw_sup)
    np.testing.assert_allclose(chw_side, flows.heat_kw, rtol=1e-10, atol=1e-9)
    np.testing.assert_allclose(cw_side, flows.heat_kw, rtol=1e-10, atol=1e-9)
    # Second law: neither stream crosses the other's inlet temperature.
    assert np.all(flows.chw_leave_c >= np.minimum(cw_sup, chw_ret) - 1e-12)
    assert np.all(flows.cw_leave_c <= np.maximum(chw_ret, cw_sup) + 1e-12)


def test_zero_when_water_too_warm_or_disabled() -> None:
    warm = economiser_heat_kw(0.8, True, 15.0, 40.0, np.array([15.0, 20.0]), 50.0)
    np.testing.assert_array_equal(warm.heat_kw, 0.0)
    np.testing.assert_array_equal(warm.chw_leave_c, 15.0)
    off = economiser_heat_kw(0.8, False, 18.0, 40.0, 10.0, 50.0)
    assert off.heat_kw == 0.0
    no_flow = economiser_heat_kw(0.8, True, 18.0, 0.0, 10.0, 50.0)
    assert no_flow.heat_kw == 0.0
    assert no_flow.chw_leave_c == 18.0


def test_enable_logic() -> None:
    enabled = economiser_available(np.array([5.0, 8.0, 9.0, 24.0]), 12.0, 4.0)
    np.testing.assert_array_equal(enabled, [True, True, False, False])

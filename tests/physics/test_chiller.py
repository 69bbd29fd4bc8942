"""Reference tests for the Chiller:Electric:EIR model and chiller staging."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.typing import ArrayLike

from physics.chiller import (
    ChillerCurves,
    ChillerOperatingPoint,
    ChillerParams,
    ChillerStagingState,
    StagingParams,
    capft,
    chiller_power_kw,
    eirfplr,
    eirft,
    stage_chillers,
    update_staging,
)

CURVES = ChillerCurves()
PARAMS = ChillerParams()
REF_X, REF_Y = 6.67, 29.4


def _full_load(chw_leave_c: ArrayLike, cw_enter_c: ArrayLike) -> ChillerOperatingPoint:
    capacity = PARAMS.ref_capacity_kw * capft(CURVES, chw_leave_c, cw_enter_c)
    return chiller_power_kw(PARAMS, capacity, chw_leave_c, cw_enter_c)


def test_curves_are_unity_at_reference_point() -> None:
    assert capft(CURVES, REF_X, REF_Y) == pytest.approx(1.0, rel=0.005)
    assert eirft(CURVES, REF_X, REF_Y) == pytest.approx(1.0, rel=0.005)
    assert eirfplr(CURVES, 1.0) == pytest.approx(1.0, rel=0.005)


def test_full_load_cop_at_reference_equals_ref_cop() -> None:
    op = chiller_power_kw(PARAMS, 700.0 * capft(CURVES, REF_X, REF_Y), REF_X, REF_Y)
    assert op.plr == pytest.approx(1.0)
    assert op.cop == pytest.approx(PARAMS.ref_cop, rel=0.005)
    # Published DOE-2 centrifugal: 5.5 · 1 / EIRFT(ref) = 5.505 with these coefficients.
    assert op.cop == pytest.approx(5.505, abs=0.001)


def test_cop_falls_as_condenser_water_warms() -> None:
    cw = np.linspace(24.0, 35.0, 23)
    op = _full_load(REF_X, cw)
    cop = op.cop
    assert np.all(np.diff(cop) < 0.0)
    assert cop[0] == pytest.approx(6.18, abs=0.01)
    assert cop[-1] == pytest.approx(4.81, abs=0.01)


def test_cop_rises_as_chilled_water_warms() -> None:
    chw = np.linspace(5.0, 10.0, 21)
    cop = _full_load(chw, REF_Y).cop
    assert np.all(np.diff(cop) > 0.0)


def test_curve_inputs_are_clamped_to_validity_range() -> None:
    for func in (capft, eirft):
        assert func(CURVES, 2.0, REF_Y) == func(CURVES, 5.0, REF_Y)
        assert func(CURVES, 14.0, REF_Y) == func(CURVES, 10.0, REF_Y)
        assert func(CURVES, REF_X, 18.0) == func(CURVES, REF_X, 24.0)
        assert func(CURVES, REF_X, 40.0) == func(CURVES, REF_X, 35.0)
    assert eirfplr(CURVES, 1.3) == eirfplr(CURVES, 1.0)
    # A tropical 38 °C condenser entering temperature is evaluated at 35 °C.
    hot = chiller_power_kw(PARAMS, 500.0, REF_X, 38.0)
    edge = chiller_power_kw(PARAMS, 500.0, REF_X, 35.0)
    assert hot.power_kw == edge.power_kw


def test_condenser_heat_is_met_load_plus_power_exactly() -> None:
    rng = np.random.default_rng(0)
    load = rng.uniform(0.0, 900.0, size=(4, 50))
    chw = rng.uniform(4.0, 11.0, size=(4, 50))
    cw = rng.uniform(20.0, 38.0, size=(4, 50))
    op = chiller_power_kw(PARAMS, load, chw, cw)
    assert op.power_kw.shape == (4, 50)
    np.testing.assert_array_equal(op.condenser_heat_kw, op.met_load_kw + op.power_kw)
    np.testing.assert_array_equal(op.met_load_kw, np.minimum(load, op.available_capacity_kw))
    assert np.all(op.plr <= 1.0)


def test_zero_load_means_chiller_off_and_low_load_false_loads() -> None:
    op = chiller_power_kw(PARAMS, np.array([0.0, 20.0, 70.0]), REF_X, REF_Y)
    assert op.power_kw[0] == 0.0
    assert op.cop[0] == 0.0
    # Below min PLR (0.1) the power is that of min PLR: 20 kW and 70 kW loads cost the same.
    assert op.power_kw[1] == pytest.approx(op.power_kw[2])
    assert op.power_kw[2] == pytest.approx(
        702.34 / 5.5 * float(eirft(CURVES, REF_X, REF_Y)) * float(eirfplr(CURVES, 0.1)), rel=1e-3
    )


def test_multipliers_scale_power_and_capacity() -> None:
    fouled = ChillerParams(eir_multiplier=1.2)
    base = chiller_power_kw(PARAMS, 500.0, REF_X, REF_Y)
    worse = chiller_power_kw(fouled, 500.0, REF_X, REF_Y)
    assert worse.power_kw == pytest.approx(1.2 * base.power_kw)
    derated = chiller_power_kw(ChillerParams(cap_multiplier=0.5), 500.0, REF_X, REF_Y)
    assert derated.met_load_kw == pytest.approx(0.5 * 700.0 * float(capft(CURVES, REF_X, REF_Y)))


def test_params_validate() -> None:
    with pytest.raises(ValueError, match="min_plr"):
        ChillerParams(min_plr=1.5)
    with pytest.raises(ValueError, match="6 biquadratic"):
        ChillerCurves(capft=(1.0, 0.0))


def test_stage_chillers() -> None:
    n = stage_chillers(np.array([0.0, 100.0, 630.0, 631.0, 1300.0, 5000.0]), 700.0, 3)
    np.testing.assert_array_equal(n, [0, 1, 1, 2, 3, 3])
    batch = stage_chillers(np.array([[500.0], [1500.0]]), 700.0, np.array([[0], [2]]))
    np.testing.assert_array_equal(batch, [[0], [2]])


STAGING = StagingParams(min_on_time_s=900.0, min_off_time_s=300.0, restart_delay_s=600.0)


def test_lead_chiller_starts_first_and_min_on_time_holds() -> None:
    state = ChillerStagingState.all_off(3, batch_shape=(2,))
    avail = np.ones((2, 3), dtype=bool)
    state = update_staging(state, np.array([1, 2]), avail, 60.0, STAGING)
    np.testing.assert_array_equal(state.on, [[True, False, False], [True, True, False]])
    # Request drops to zero: min on time (900 s) keeps them on for 14 more minutes.
    for _ in range(14):
        state = update_staging(state, 0, avail, 60.0, STAGING)
        assert state.on[:, 0].all()
    state = update_staging(state, 0, avail, 60.0, STAGING)
    assert not state.on.any()


def test_lag_chiller_stops_first() -> None:
    state = ChillerStagingState.all_off(3)
    avail = np.ones(3, dtype=bool)
    state = update_staging(state, 3, avail, 1000.0, STAGING)
    state = update_staging(state, 1, avail, 1000.0, STAGING)
    np.testing.assert_array_equal(state.on, [True, False, False])


def test_min_off_time_blocks_restart() -> None:
    state = ChillerStagingState.all_off(1)
    avail = np.ones(1, dtype=bool)
    state = update_staging(state, 1, avail, 1000.0, STAGING)
    state = update_staging(state, 0, avail, 1000.0, STAGING)  # past min on: stops
    assert not state.on[0]
    starts = []
    for _ in range(6):
        state = update_staging(state, 1, avail, 60.0, STAGING)
        starts.append(bool(state.on[0]))
    # Off for 60, 120, 180, 240 s → blocked; 300 s → starts.
    assert starts == [False, False, False, False, True, True]


def test_trip_forces_restart_delay_and_lag_chiller_covers() -> None:
    state = ChillerStagingState.all_off(2)
    both = np.ones(2, dtype=bool)
    state = update_staging(state, 1, both, 60.0, STAGING)
    np.testing.assert_array_equal(state.on, [True, False])
    # Chiller 0 trips for one step: it goes off at once and chiller 1 starts.
    state = update_staging(state, 1, np.array([False, True]), 60.0, STAGING)
    np.testing.assert_array_equal(state.on, [False, True])
    assert state.restart_timer_s[0] == 600.0
    # Request both: chiller 0 is available again but locked out for the 600 s delay.
    history = []
    for _ in range(11):
        state = update_staging(state, 2, both, 60.0, STAGING)
        history.append(bool(state.on[0]))
    assert history == [False] * 9 + [True, True]
    assert state.on.all()

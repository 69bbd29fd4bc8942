"""physics.psychrometrics against ASHRAE Handbook reference values and identities."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from physics.constants import STANDARD_PRESSURE_PA
from physics.psychrometrics import (
    dew_point_from_rh_c,
    humidity_ratio_from_rh,
    rel_hum_from_dew_point,
    wet_bulb_from_dew_point_c,
    wet_bulb_from_rh_c,
)

# (dry bulb °C, RH, wet bulb °C, dew point °C, humidity ratio kg/kg) at 101 325 Pa, read off
# the ASHRAE Handbook—Fundamentals psychrometric chart No. 1.
ASHRAE_POINTS = [
    (30.0, 0.50, 22.0, 18.4, 0.0133),
    (20.0, 0.50, 13.8, 9.3, 0.0073),
]


@pytest.mark.parametrize(("dry", "rh", "wet", "dew", "w"), ASHRAE_POINTS)
def test_ashrae_reference_points(dry: float, rh: float, wet: float, dew: float, w: float) -> None:
    assert float(wet_bulb_from_rh_c(dry, rh)) == pytest.approx(wet, abs=0.1)
    assert float(dew_point_from_rh_c(dry, rh)) == pytest.approx(dew, abs=0.1)
    assert float(humidity_ratio_from_rh(dry, rh)) == pytest.approx(w, rel=0.01)
    assert float(wet_bulb_from_dew_point_c(dry, dew)) == pytest.approx(wet, abs=0.1)
    assert float(rel_hum_from_dew_point(dry, dew)) == pytest.approx(rh, abs=0.01)


def test_ashrae_fundamentals_chapter1_example2() -> None:
    # 40 °C dry bulb, 20 °C thermodynamic wet bulb, 101.325 kPa: φ = 14 %, W ≈ 0.0064-0.0065.
    assert float(wet_bulb_from_rh_c(40.0, 0.140)) == pytest.approx(20.0, abs=0.1)
    assert float(humidity_ratio_from_rh(40.0, 0.140)) == pytest.approx(0.00645, rel=0.02)


def test_lower_pressure_lowers_wet_bulb_and_raises_humidity_ratio() -> None:
    # At altitude (~1500 m, 84.6 kPa) the same RH means more water per kg of dry air.
    p_alt = 84_556.0
    assert wet_bulb_from_rh_c(30.0, 0.5, p_alt) < wet_bulb_from_rh_c(30.0, 0.5)
    assert humidity_ratio_from_rh(30.0, 0.5, p_alt) > humidity_ratio_from_rh(30.0, 0.5)


def test_shapes_and_broadcasting() -> None:
    dry = np.linspace(10.0, 40.0, 12).reshape(3, 4)
    out = wet_bulb_from_rh_c(dry, 0.6)
    assert out.shape == (3, 4)
    assert out.dtype == np.float64
    assert np.asarray(wet_bulb_from_rh_c(25.0, 0.5)).shape == ()
    assert wet_bulb_from_rh_c(np.array([]), np.array([])).shape == (0,)
    # Element-wise result equals the scalar result.
    assert out[1, 2] == pytest.approx(float(wet_bulb_from_rh_c(dry[1, 2], 0.6)))


def test_saturation_identities() -> None:
    dry = np.array([-10.0, 0.0, 15.0, 30.0, 45.0])
    np.testing.assert_allclose(wet_bulb_from_rh_c(dry, 1.0), dry, atol=1e-3)
    np.testing.assert_allclose(dew_point_from_rh_c(dry, 1.0), dry, atol=1e-3)
    np.testing.assert_allclose(rel_hum_from_dew_point(dry, dry), 1.0, atol=1e-9)
    np.testing.assert_allclose(wet_bulb_from_dew_point_c(dry, dry), dry, atol=1e-3)


def test_inconsistent_inputs_are_clipped() -> None:
    # RH slightly above 1 and dew point slightly above dry bulb occur in weather files.
    saturated_wet_bulb_c = float(wet_bulb_from_rh_c(30.0, 1.0))
    assert float(wet_bulb_from_rh_c(30.0, 1.02)) == pytest.approx(saturated_wet_bulb_c)
    assert float(wet_bulb_from_dew_point_c(30.0, 30.4)) == pytest.approx(30.0, abs=1e-3)
    assert float(rel_hum_from_dew_point(30.0, 30.4)) == pytest.approx(1.0)
    # RH of zero (or negative) does not crash psychrolib: the dew point is just very low.
    assert float(dew_point_from_rh_c(30.0, 0.0)) < -20.0
    assert float(wet_bulb_from_rh_c(30.0, -0.1)) < 12.0


def test_non_finite_input_raises() -> None:
    with pytest.raises(ValueError, match="finite"):
        wet_bulb_from_rh_c(np.array([25.0, np.nan]), 0.5)


def test_monotonic_in_humidity() -> None:
    rh = np.linspace(0.05, 1.0, 20)
    wet = wet_bulb_from_rh_c(30.0, rh)
    dew = dew_point_from_rh_c(30.0, rh)
    assert np.all(np.diff(wet) > 0)
    assert np.all(np.diff(dew) > 0)
    assert np.all(np.diff(humidity_ratio_from_rh(30.0, rh)) > 0)


@settings(max_examples=60, deadline=None)
@given(
    dry=st.floats(min_value=-20.0, max_value=50.0),
    rh=st.floats(min_value=0.02, max_value=1.0),
    pressure=st.floats(min_value=80_000.0, max_value=105_000.0),
)
def test_ordering_and_round_trip(dry: float, rh: float, pressure: float) -> None:
    wet = float(wet_bulb_from_rh_c(dry, rh, pressure))
    dew = float(dew_point_from_rh_c(dry, rh))
    assert dew <= wet + 1e-6
    assert wet <= dry + 1e-6
    assert float(rel_hum_from_dew_point(dry, dew)) == pytest.approx(rh, abs=1e-6)
    assert float(wet_bulb_from_dew_point_c(dry, dew, pressure)) == pytest.approx(wet, abs=2e-3)


def test_default_pressure_is_standard() -> None:
    assert float(wet_bulb_from_rh_c(28.0, 0.7)) == float(
        wet_bulb_from_rh_c(28.0, 0.7, STANDARD_PRESSURE_PA)
    )

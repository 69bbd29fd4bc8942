"""Moist-air psychrometrics: thin, vectorised wrappers over :mod:`psychrolib` (SI units).

psychrolib implements the ASHRAE Handbook—Fundamentals equations on scalars. These wrappers
broadcast their inputs, evaluate psychrolib once per *distinct* input combination (weather
files repeat values a lot) and return ``float64`` arrays of the broadcast shape. They run at
weather-load time, not inside the simulation step, so the Python loop is acceptable.

Inputs are sanitised the way real weather files need: relative humidity is clipped to
``[MIN_REL_HUM_FRAC, 1]`` (psychrolib rejects a vapour pressure of exactly zero) and the dew
point is clipped to at most the dry bulb.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import psychrolib
from numpy.typing import ArrayLike, NDArray

from physics.constants import STANDARD_PRESSURE_PA

psychrolib.SetUnitSystem(psychrolib.SI)

MIN_REL_HUM_FRAC = 1e-3
"""Lower clip for relative humidity (fraction): psychrolib cannot take a zero vapour pressure."""

__all__ = [
    "MIN_REL_HUM_FRAC",
    "dew_point_from_rh_c",
    "humidity_ratio_from_rh",
    "rel_hum_from_dew_point",
    "wet_bulb_from_dew_point_c",
    "wet_bulb_from_rh_c",
]


def _apply(func: Callable[..., float], *args: ArrayLike) -> NDArray[np.float64]:
    """Evaluate scalar ``func`` element-wise over the broadcast ``args``, once per distinct row."""
    arrays = np.broadcast_arrays(*(np.asarray(a, dtype=np.float64) for a in args))
    shape = arrays[0].shape
    stacked = np.stack([a.ravel() for a in arrays], axis=1)
    if stacked.shape[0] == 0:
        return np.zeros(shape, dtype=np.float64)
    if not np.all(np.isfinite(stacked)):
        raise ValueError("psychrometric inputs must be finite")
    unique_rows, inverse = np.unique(stacked, axis=0, return_inverse=True)
    values = np.fromiter(
        (func(*(float(v) for v in row)) for row in unique_rows),
        dtype=np.float64,
        count=unique_rows.shape[0],
    )
    return values[inverse.ravel()].reshape(shape)


def _clip_rh(rel_hum_frac: ArrayLike) -> NDArray[np.float64]:
    return np.clip(np.asarray(rel_hum_frac, dtype=np.float64), MIN_REL_HUM_FRAC, 1.0)


def _clip_dew(dry_bulb_c: ArrayLike, dew_point_c: ArrayLike) -> NDArray[np.float64]:
    return np.minimum(
        np.asarray(dew_point_c, dtype=np.float64), np.asarray(dry_bulb_c, dtype=np.float64)
    )


def wet_bulb_from_rh_c(
    dry_bulb_c: ArrayLike,
    rel_hum_frac: ArrayLike,
    pressure_pa: ArrayLike = STANDARD_PRESSURE_PA,
) -> NDArray[np.float64]:
    """Thermodynamic wet-bulb temperature (°C) from dry bulb (°C) and relative humidity (0..1)."""
    return _apply(psychrolib.GetTWetBulbFromRelHum, dry_bulb_c, _clip_rh(rel_hum_frac), pressure_pa)


def wet_bulb_from_dew_point_c(
    dry_bulb_c: ArrayLike,
    dew_point_c: ArrayLike,
    pressure_pa: ArrayLike = STANDARD_PRESSURE_PA,
) -> NDArray[np.float64]:
    """Thermodynamic wet-bulb temperature (°C) from dry bulb and dew point (°C)."""
    return _apply(
        psychrolib.GetTWetBulbFromTDewPoint,
        dry_bulb_c,
        _clip_dew(dry_bulb_c, dew_point_c),
        pressure_pa,
    )


def dew_point_from_rh_c(dry_bulb_c: ArrayLike, rel_hum_frac: ArrayLike) -> NDArray[np.float64]:
    """Dew-point temperature (°C) from dry bulb (°C) and relative humidity (0..1)."""
    return _apply(psychrolib.GetTDewPointFromRelHum, dry_bulb_c, _clip_rh(rel_hum_frac))


def humidity_ratio_from_rh(
    dry_bulb_c: ArrayLike,
    rel_hum_frac: ArrayLike,
    pressure_pa: ArrayLike = STANDARD_PRESSURE_PA,
) -> NDArray[np.float64]:
    """Humidity ratio (kg water / kg dry air) from dry bulb (°C) and relative humidity (0..1)."""
    return _apply(psychrolib.GetHumRatioFromRelHum, dry_bulb_c, _clip_rh(rel_hum_frac), pressure_pa)


def rel_hum_from_dew_point(dry_bulb_c: ArrayLike, dew_point_c: ArrayLike) -> NDArray[np.float64]:
    """Relative humidity (fraction 0..1) from dry bulb and dew point (°C)."""
    rel_hum = _apply(
        psychrolib.GetRelHumFromTDewPoint, dry_bulb_c, _clip_dew(dry_bulb_c, dew_point_c)
    )
    return np.clip(rel_hum, 0.0, 1.0)

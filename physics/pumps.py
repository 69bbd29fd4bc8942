"""Pumps: variable-speed (affinity laws on a system curve, with a minimum speed) and
constant-speed.

For a system curve with a static-head share ``h_s`` of the design head,
``H/H_d = h_s + (1 − h_s) · q²`` with ``q`` the flow fraction, and hydraulic power
``∝ q · H``. With no static head this is the cubic law ``P = P_d · q³``. Below the minimum
speed the pump runs at minimum speed (flow recirculates or the loop's bypass opens), so
power is that at ``q = min_speed_frac``. Zero flow means the pump is off.
``efficiency_multiplier`` < 1 models wear (impeller, bearings): power rises as 1/η.
"""

from __future__ import annotations

import logging

import numpy as np
from numpy.typing import ArrayLike, NDArray

logger = logging.getLogger(__name__)

FloatArray = NDArray[np.float64]


def pump_power_kw(
    design_power_kw: ArrayLike,
    flow_frac: ArrayLike,
    min_speed_frac: ArrayLike = 0.3,
    static_head_frac: ArrayLike = 0.0,
    efficiency_multiplier: ArrayLike = 1.0,
) -> FloatArray:
    """Electric power of a variable-speed pump delivering ``flow_frac`` of design flow."""
    design = np.asarray(design_power_kw, dtype=np.float64)
    flow = np.maximum(np.asarray(flow_frac, dtype=np.float64), 0.0)
    q = np.maximum(flow, np.asarray(min_speed_frac, dtype=np.float64))
    h_s = np.clip(np.asarray(static_head_frac, dtype=np.float64), 0.0, 1.0)
    eta = np.maximum(np.asarray(efficiency_multiplier, dtype=np.float64), 1e-6)
    power = design * q * (h_s + (1.0 - h_s) * q * q) / eta
    return np.asarray(np.where(flow > 0.0, power, 0.0), dtype=np.float64)


def constant_speed_pump_power_kw(
    design_power_kw: ArrayLike, on: ArrayLike, efficiency_multiplier: ArrayLike = 1.0
) -> FloatArray:
    """Electric power of a constant-speed pump: design power when on, else zero."""
    design = np.asarray(design_power_kw, dtype=np.float64)
    eta = np.maximum(np.asarray(efficiency_multiplier, dtype=np.float64), 1e-6)
    running = np.asarray(on, dtype=np.bool_)
    return np.asarray(np.where(running, design / eta, 0.0), dtype=np.float64)

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

import numpy as np
from numpy.typing import ArrayLike, NDArray

from physics.compiled import elementwise, jit

FloatArray = NDArray[np.float64]


@jit
def variable_speed_power(
    design_power_kw: float,
    flow_frac: float,
    min_speed_frac: float,
    static_head_frac: float,
    efficiency_multiplier: float,
) -> float:
    """Electric power of a variable-speed pump delivering ``flow_frac`` of design flow."""
    flow = max(flow_frac, 0.0)
    if flow <= 0.0:
        return 0.0
    q = max(flow, min_speed_frac)
    h_s = min(max(static_head_frac, 0.0), 1.0)
    return design_power_kw * q * (h_s + (1.0 - h_s) * q * q) / max(efficiency_multiplier, 1e-6)


def pump_power_kw(
    design_power_kw: ArrayLike,
    flow_frac: ArrayLike,
    min_speed_frac: ArrayLike = 0.3,
    static_head_frac: ArrayLike = 0.0,
    efficiency_multiplier: ArrayLike = 1.0,
) -> FloatArray:
    """Electric power of a variable-speed pump delivering ``flow_frac`` of design flow."""
    return np.asarray(
        elementwise(
            variable_speed_power,
            design_power_kw,
            flow_frac,
            min_speed_frac,
            static_head_frac,
            efficiency_multiplier,
        )
    )


def constant_speed_pump_power_kw(
    design_power_kw: ArrayLike, on: ArrayLike, efficiency_multiplier: ArrayLike = 1.0
) -> FloatArray:
    """Electric power of a constant-speed pump: design power when on, else zero."""
    design = np.asarray(design_power_kw, dtype=np.float64)
    eta = np.maximum(np.asarray(efficiency_multiplier, dtype=np.float64), 1e-6)
    running = np.asarray(on, dtype=np.bool_)
    return np.asarray(np.where(running, design / eta, 0.0), dtype=np.float64)

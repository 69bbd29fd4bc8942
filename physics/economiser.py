"""Waterside economiser: a plate heat exchanger that pre-cools the chilled-water return
with condenser (tower) water when the weather allows, upstream of the chillers.

Heat transfer is the ε-method with a fixed effectiveness (≈ 0.8 for a gasketed plate
exchanger near its design flows)::

    Q = ε · C_min · (T_chw,return − T_cw,supply),   C = ṁ · c_p

and zero when the economiser is disabled or the tower water is not colder than the
chilled-water return. Both streams are water, so the balance closes with one c_p.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from physics.constants import CP_WATER_KJ_KG_K

logger = logging.getLogger(__name__)

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]

DEFAULT_EFFECTIVENESS = 0.8


@dataclass(frozen=True)
class EconomiserFlows:
    """Heat exchanged and leaving temperatures (arrays broadcast from the inputs)."""

    heat_kw: FloatArray
    """Heat moved from the chilled water to the condenser water (≥ 0)."""
    chw_leave_c: FloatArray
    """Pre-cooled chilled-water temperature entering the chillers."""
    cw_leave_c: FloatArray
    """Condenser water leaving the exchanger (back toward the tower)."""


def economiser_heat_kw(
    effectiveness: ArrayLike,
    enabled: ArrayLike,
    chw_return_c: ArrayLike,
    chw_flow_kg_s: ArrayLike,
    cw_supply_c: ArrayLike,
    cw_flow_kg_s: ArrayLike,
) -> EconomiserFlows:
    """Plate exchanger duty ε·C_min·ΔT_max and the resulting stream temperatures.

    A stream with zero flow leaves at its entering temperature and no heat moves.
    """
    eps = np.clip(np.asarray(effectiveness, dtype=np.float64), 0.0, 1.0)
    on = np.asarray(enabled, dtype=np.bool_)
    t_chw = np.asarray(chw_return_c, dtype=np.float64)
    t_cw = np.asarray(cw_supply_c, dtype=np.float64)
    c_chw = np.maximum(np.asarray(chw_flow_kg_s, dtype=np.float64), 0.0) * CP_WATER_KJ_KG_K
    c_cw = np.maximum(np.asarray(cw_flow_kg_s, dtype=np.float64), 0.0) * CP_WATER_KJ_KG_K
    delta_t_max = np.maximum(t_chw - t_cw, 0.0)
    heat = np.where(on, eps * np.minimum(c_chw, c_cw) * delta_t_max, 0.0)
    heat, c_chw, c_cw, t_chw, t_cw = np.broadcast_arrays(heat, c_chw, c_cw, t_chw, t_cw)
    chw_drop = np.divide(heat, c_chw, out=np.zeros_like(heat), where=c_chw > 0.0)
    cw_rise = np.divide(heat, c_cw, out=np.zeros_like(heat), where=c_cw > 0.0)
    return EconomiserFlows(
        heat_kw=np.asarray(heat, dtype=np.float64),
        chw_leave_c=np.asarray(t_chw - chw_drop, dtype=np.float64),
        cw_leave_c=np.asarray(t_cw + cw_rise, dtype=np.float64),
    )


def economiser_available(
    wet_bulb_c: ArrayLike, chw_supply_setpoint_c: ArrayLike, approach_k: ArrayLike
) -> BoolArray:
    """Enable when the tower can make water cold enough to help: the wet bulb plus the
    combined tower and exchanger approach is at or below the chilled-water supply
    setpoint (full free cooling; partial pre-cooling is left to the plant's controller)."""
    wet_bulb = np.asarray(wet_bulb_c, dtype=np.float64)
    limit = np.asarray(chw_supply_setpoint_c, dtype=np.float64)
    return np.asarray(wet_bulb + np.asarray(approach_k, dtype=np.float64) <= limit, np.bool_)

"""Waterside economiser: a plate heat exchanger that pre-cools the chilled-water return
with condenser (tower) water when the weather allows, upstream of the chillers.

Heat transfer is the ε-method with a fixed effectiveness (≈ 0.8 for a gasketed plate
exchanger near its design flows)::

    Q = ε · C_min · (T_chw,return − T_cw,supply),   C = ṁ · c_p

and zero when the economiser is disabled or the tower water is not colder than the
chilled-water return. Both streams are water, so the balance closes with one c_p.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from physics.compiled import elementwise, jit
from physics.constants import CP_WATER_KJ_KG_K

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


@jit
def exchange(
    effectiveness: float,
    enabled: bool,
    chw_return_c: float,
    chw_flow_kg_s: float,
    cw_supply_c: float,
    cw_flow_kg_s: float,
) -> tuple[float, float, float]:
    """Plate exchanger duty ε·C_min·ΔT_max (kW) and the two leaving temperatures (°C).

    A stream with zero flow leaves at its entering temperature and no heat moves.
    """
    eps = min(max(effectiveness, 0.0), 1.0)
    c_chw = max(chw_flow_kg_s, 0.0) * CP_WATER_KJ_KG_K
    c_cw = max(cw_flow_kg_s, 0.0) * CP_WATER_KJ_KG_K
    heat = eps * min(c_chw, c_cw) * max(chw_return_c - cw_supply_c, 0.0) if enabled else 0.0
    chw_leave = chw_return_c - heat / c_chw if c_chw > 0.0 else chw_return_c
    cw_leave = cw_supply_c + heat / c_cw if c_cw > 0.0 else cw_supply_c
    return heat, chw_leave, cw_leave


def economiser_heat_kw(
    effectiveness: ArrayLike,
    enabled: ArrayLike,
    chw_return_c: ArrayLike,
    chw_flow_kg_s: ArrayLike,
    cw_supply_c: ArrayLike,
    cw_flow_kg_s: ArrayLike,
) -> EconomiserFlows:
    """Plate exchanger duty and the resulting stream temperatures (:func:`exchange`)."""
    heat, chw_leave, cw_leave = elementwise(
        lambda e, on, *rest: exchange(e, on > 0.5, *rest),
        effectiveness,
        np.asarray(enabled, dtype=np.bool_).astype(np.float64),
        chw_return_c,
        chw_flow_kg_s,
        cw_supply_c,
        cw_flow_kg_s,
        n_out=3,
    )
    return EconomiserFlows(heat_kw=heat, chw_leave_c=chw_leave, cw_leave_c=cw_leave)


def economiser_available(
    wet_bulb_c: ArrayLike, chw_supply_setpoint_c: ArrayLike, approach_k: ArrayLike
) -> BoolArray:
    """Enable when the tower can make water cold enough to help: the wet bulb plus the
    combined tower and exchanger approach is at or below the chilled-water supply
    setpoint (full free cooling; partial pre-cooling is left to the plant's controller)."""
    wet_bulb = np.asarray(wet_bulb_c, dtype=np.float64)
    limit = np.asarray(chw_supply_setpoint_c, dtype=np.float64)
    return np.asarray(wet_bulb + np.asarray(approach_k, dtype=np.float64) <= limit, np.bool_)

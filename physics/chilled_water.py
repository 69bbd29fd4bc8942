"""Chilled-water loop: well-mixed supply and return volumes, a supply main with transport
delay (mixed segments in series, so the delay shortens as flow rises), variable
primary flow with a minimum-flow bypass, and the chillers' leaving temperature.

Each volume is a mixed tank, ``M c_p dT/dt = m c_p (T_in − T)``, integrated exactly over a
step with the inflow held; the tank's stored heat is returned so loop energy balances close.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from physics.constants import CP_WATER_KJ_KG_K, RHO_WATER_KG_M3

logger = logging.getLogger(__name__)

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class ChilledWaterLoopParams:
    """Loop volumes and the minimum flow a running chiller's evaporator needs."""

    supply_volume_m3: float = 12.0
    return_volume_m3: float = 12.0
    min_flow_per_chiller_kg_s: float = 12.0
    design_flow_kg_s: float = 60.0
    """Pump design flow (pump power is referenced to it)."""
    supply_main_volume_m3: float = 4.0
    """Supply main between the chillers and the supply volume (transport delay)."""
    supply_main_segments: int = 3
    """The main is modelled as this many mixed segments in series (plug flow with dispersion)."""

    def __post_init__(self) -> None:
        for name in ("supply_volume_m3", "return_volume_m3", "design_flow_kg_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.min_flow_per_chiller_kg_s < 0:
            raise ValueError("min_flow_per_chiller_kg_s must not be negative")
        if self.supply_main_volume_m3 < 0 or self.supply_main_segments < 1:
            raise ValueError("the supply main needs a non-negative volume and >= 1 segment")

    @property
    def supply_mass_kg(self) -> float:
        return self.supply_volume_m3 * RHO_WATER_KG_M3

    @property
    def supply_main_mass_kg(self) -> float:
        return self.supply_main_volume_m3 * RHO_WATER_KG_M3

    @property
    def return_mass_kg(self) -> float:
        return self.return_volume_m3 * RHO_WATER_KG_M3


@dataclass(frozen=True)
class TankStep:
    """New tank temperature and the heat it stored during the step."""

    temp_c: FloatArray
    stored_kw: FloatArray


def mixed_tank_step(
    temp_c: ArrayLike, inflow_c: ArrayLike, flow_kg_s: ArrayLike, mass_kg: float, dt_s: float
) -> TankStep:
    """Exact update of a well-mixed volume fed at ``inflow_c`` for one step."""
    t = np.asarray(temp_c, dtype=np.float64)
    t_in = np.asarray(inflow_c, dtype=np.float64)
    decay = np.exp(-np.asarray(flow_kg_s, dtype=np.float64) * dt_s / mass_kg)
    new = t_in + (t - t_in) * decay
    stored = mass_kg * CP_WATER_KJ_KG_K * (new - t) / dt_s
    return TankStep(temp_c=np.asarray(new, dtype=np.float64), stored_kw=np.asarray(stored))


def primary_flow_kg_s(
    coil_flow_kg_s: ArrayLike, chillers_on: ArrayLike, params: ChilledWaterLoopParams
) -> FloatArray:
    """Evaporator flow: the coils' demand, raised to the chillers' minimum by the bypass."""
    minimum = np.asarray(chillers_on, dtype=np.float64) * params.min_flow_per_chiller_kg_s
    return np.asarray(np.maximum(np.asarray(coil_flow_kg_s, dtype=np.float64), minimum))


def mixed_return_c(
    coil_return_c: ArrayLike,
    coil_flow_kg_s: ArrayLike,
    supply_c: ArrayLike,
    primary_kg_s: ArrayLike,
) -> FloatArray:
    """Water entering the return volume: coil returns mixed with bypassed supply water."""
    coil = np.asarray(coil_flow_kg_s, dtype=np.float64)
    primary = np.maximum(np.asarray(primary_kg_s, dtype=np.float64), 1e-9)
    bypass = np.maximum(primary - coil, 0.0)
    mixed = (coil * np.asarray(coil_return_c) + bypass * np.asarray(supply_c)) / primary
    return np.asarray(mixed, dtype=np.float64)


def chiller_leaving_c(
    entering_c: ArrayLike, flow_kg_s: ArrayLike, setpoint_c: ArrayLike, capacity_kw: ArrayLike
) -> FloatArray:
    """Leaving chilled water: the setpoint when capacity allows, else what capacity reaches."""
    t_in = np.asarray(entering_c, dtype=np.float64)
    c_w = np.maximum(np.asarray(flow_kg_s, dtype=np.float64), 1e-9) * CP_WATER_KJ_KG_K
    reachable = t_in - np.asarray(capacity_kw, dtype=np.float64) / c_w
    return np.asarray(np.minimum(t_in, np.maximum(np.asarray(setpoint_c), reachable)))


def segmented_main_step(
    segment_c: FloatArray, inflow_c: FloatArray, flow_kg_s: FloatArray, mass_kg: float, dt_s: float
) -> TankStep:
    """Advance a pipe of ``len(segment_c)`` equal mixed segments (axis 0) fed at ``inflow_c``.

    Returns the segments' new temperatures and the heat the whole pipe stored.
    """
    n = segment_c.shape[0]
    new = np.empty_like(segment_c)
    stored = np.zeros_like(inflow_c)
    upstream = inflow_c
    for i in range(n):
        step = mixed_tank_step(segment_c[i], upstream, flow_kg_s, mass_kg / n, dt_s)
        new[i] = step.temp_c
        stored = stored + step.stored_kw
        upstream = step.temp_c
    return TankStep(temp_c=new, stored_kw=np.asarray(stored, dtype=np.float64))

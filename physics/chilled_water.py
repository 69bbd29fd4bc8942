"""Chilled-water loop: well-mixed supply and return volumes, a supply main with transport
delay (mixed segments in series, so the delay shortens as flow rises), variable
primary flow with a minimum-flow bypass, and the chillers' leaving temperature.

Each volume is a mixed tank, ``M c_p dT/dt = m c_p (T_in − T)``, integrated exactly over a
step with the inflow held; the tank's stored heat is returned so loop energy balances close.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from physics.compiled import elementwise, jit, record_type
from physics.constants import CP_WATER_KJ_KG_K, RHO_WATER_KG_M3

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


ChilledWaterLoopParamsRecord = record_type(
    ChilledWaterLoopParams, derived=("supply_mass_kg", "supply_main_mass_kg", "return_mass_kg")
)


@dataclass(frozen=True)
class TankStep:
    """New tank temperature and the heat it stored during the step."""

    temp_c: FloatArray
    stored_kw: FloatArray


@jit
def tank_step(
    temp_c: float, inflow_c: float, flow_kg_s: float, mass_kg: float, dt_s: float
) -> tuple[float, float]:
    """Exact update of a well-mixed volume fed at ``inflow_c`` for one step: the new
    temperature and the heat stored during the step (kW)."""
    new = inflow_c + (temp_c - inflow_c) * math.exp(-flow_kg_s * dt_s / mass_kg)
    return new, mass_kg * CP_WATER_KJ_KG_K * (new - temp_c) / dt_s


@jit
def primary_flow(coil_flow_kg_s: float, chillers_on: float, min_flow_per_chiller: float) -> float:
    """Evaporator flow: the coils' demand, raised to the chillers' minimum by the bypass."""
    return max(coil_flow_kg_s, chillers_on * min_flow_per_chiller)


@jit
def mixed_return(
    coil_return_c: float, coil_flow_kg_s: float, supply_c: float, primary_kg_s: float
) -> float:
    """Water entering the return volume: coil returns mixed with bypassed supply water."""
    primary = max(primary_kg_s, 1e-9)
    bypass = max(primary - coil_flow_kg_s, 0.0)
    return (coil_flow_kg_s * coil_return_c + bypass * supply_c) / primary


@jit
def chiller_leaving(
    entering_c: float, flow_kg_s: float, setpoint_c: float, capacity_kw: float
) -> float:
    """Leaving chilled water: the setpoint when capacity allows, else what capacity reaches."""
    reachable = entering_c - capacity_kw / (max(flow_kg_s, 1e-9) * CP_WATER_KJ_KG_K)
    return min(entering_c, max(setpoint_c, reachable))


@jit
def main_step(
    segment_c: FloatArray, inflow_c: float, flow_kg_s: float, mass_kg: float, dt_s: float
) -> float:
    """Advance a pipe of equal mixed segments fed at ``inflow_c`` in place; heat stored (kW)."""
    n = segment_c.shape[0]
    stored = 0.0
    upstream = inflow_c
    for i in range(n):
        segment_c[i], heat = tank_step(segment_c[i], upstream, flow_kg_s, mass_kg / n, dt_s)
        stored += heat
        upstream = segment_c[i]
    return stored


def mixed_tank_step(
    temp_c: ArrayLike, inflow_c: ArrayLike, flow_kg_s: ArrayLike, mass_kg: float, dt_s: float
) -> TankStep:
    """Exact update of a well-mixed volume fed at ``inflow_c`` for one step."""
    new, stored = elementwise(tank_step, temp_c, inflow_c, flow_kg_s, mass_kg, dt_s, n_out=2)
    return TankStep(temp_c=new, stored_kw=stored)


def primary_flow_kg_s(
    coil_flow_kg_s: ArrayLike, chillers_on: ArrayLike, params: ChilledWaterLoopParams
) -> FloatArray:
    """Evaporator flow: the coils' demand, raised to the chillers' minimum by the bypass."""
    return np.asarray(
        elementwise(primary_flow, coil_flow_kg_s, chillers_on, params.min_flow_per_chiller_kg_s)
    )


def mixed_return_c(
    coil_return_c: ArrayLike,
    coil_flow_kg_s: ArrayLike,
    supply_c: ArrayLike,
    primary_kg_s: ArrayLike,
) -> FloatArray:
    """Water entering the return volume: coil returns mixed with bypassed supply water."""
    return np.asarray(
        elementwise(mixed_return, coil_return_c, coil_flow_kg_s, supply_c, primary_kg_s)
    )


def chiller_leaving_c(
    entering_c: ArrayLike, flow_kg_s: ArrayLike, setpoint_c: ArrayLike, capacity_kw: ArrayLike
) -> FloatArray:
    """Leaving chilled water: the setpoint when capacity allows, else what capacity reaches."""
    return np.asarray(elementwise(chiller_leaving, entering_c, flow_kg_s, setpoint_c, capacity_kw))


def segmented_main_step(
    segment_c: FloatArray, inflow_c: FloatArray, flow_kg_s: FloatArray, mass_kg: float, dt_s: float
) -> TankStep:
    """Advance a pipe of ``len(segment_c)`` equal mixed segments (axis 0) fed at ``inflow_c``.

    Returns the segments' new temperatures and the heat the whole pipe stored.
    """
    segments = np.array(segment_c, dtype=np.float64)
    inflow, flow = np.broadcast_arrays(
        np.asarray(inflow_c, dtype=np.float64), np.asarray(flow_kg_s, dtype=np.float64)
    )
    stored = np.zeros(inflow.shape)
    for index in np.ndindex(inflow.shape):
        column = np.ascontiguousarray(segments[(slice(None), *index)])
        stored[index] = main_step(column, float(inflow[index]), float(flow[index]), mass_kg, dt_s)
        segments[(slice(None), *index)] = column
    return TankStep(temp_c=segments, stored_kw=stored)

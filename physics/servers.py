"""IT equipment: utilisation and inlet temperature to electrical power, heat and airflow.

Power follows Fan, Weber & Barroso (2007), P = P_idle + (P_max − P_idle)(2u − u^1.4), split
into a CPU/board part that grows with leakage above an inlet-temperature onset and a server
fan part that speeds up with inlet temperature (the shape of EnergyPlus
``ElectricEquipment:ITE:AirCooled`` with its default curves: fan power ∝ speed³, airflow ∝
speed). All of the electrical power ends up as heat in the air stream.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from physics.compiled import as_record, elementwise, jit, record_type
from physics.constants import CP_AIR_KJ_KG_K

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class ServerParams:
    """A rack of servers (all values per rack)."""

    max_power_kw: float = 10.0
    """Electrical power at full utilisation and nominal inlet (P_max), fans included."""
    idle_frac: float = 0.5
    """P_idle / P_max (0.35–0.65 in the literature)."""
    fan_power_frac: float = 0.04
    """Share of P_max drawn by server fans at nominal speed."""
    leakage_onset_c: float = 25.0
    """Inlet temperature above which CPU leakage and fan speed grow."""
    leakage_frac_per_k: float = 0.006
    """Relative growth of CPU/board power per K of inlet above the onset."""
    fan_speed_per_k: float = 0.05
    """Relative fan speed increase per K of inlet above the onset."""
    max_fan_speed: float = 1.6
    """Upper bound on fan speed relative to nominal."""
    design_delta_t_k: float = 12.0
    """Air temperature rise across the rack at P_max and nominal fan speed."""

    def __post_init__(self) -> None:
        if self.max_power_kw <= 0:
            raise ValueError("max_power_kw must be positive")
        if not 0.0 < self.idle_frac < 1.0:
            raise ValueError("idle_frac must lie in (0, 1)")
        if not 0.0 <= self.fan_power_frac < self.idle_frac:
            raise ValueError("fan_power_frac must lie in [0, idle_frac)")
        if self.max_fan_speed < 1.0:
            raise ValueError("max_fan_speed must be at least 1")
        if self.design_delta_t_k <= 0:
            raise ValueError("design_delta_t_k must be positive")

    @property
    def design_airflow_kg_s(self) -> float:
        """Airflow at nominal fan speed, sized for design_delta_t_k at P_max."""
        return self.max_power_kw / (CP_AIR_KJ_KG_K * self.design_delta_t_k)


ServerParamsRecord = record_type(ServerParams, derived=("design_airflow_kg_s",))


@dataclass(frozen=True)
class ServerOperatingPoint:
    """Electrical power (all of it becomes heat), fan share and airflow of each rack."""

    power_kw: FloatArray
    fan_power_kw: FloatArray
    airflow_kg_s: FloatArray


@jit
def power_frac(idle_frac: float, util_frac: float) -> float:
    """Fan/Weber/Barroso power as a fraction of P_max: idle + (1 − idle)(2u − u^1.4)."""
    u = min(max(util_frac, 0.0), 1.0)
    return float(idle_frac + (1.0 - idle_frac) * (2.0 * u - u**1.4))


@jit
def fan_speed(p: ServerParams, inlet_c: float) -> float:
    """Server fan speed relative to nominal as the inlet warms past the onset."""
    return min(1.0 + p.fan_speed_per_k * max(inlet_c - p.leakage_onset_c, 0.0), p.max_fan_speed)


@jit
def rack_operating_point(
    p: ServerParams, load_frac: float, inlet_c: float, power_scale: float
) -> tuple[float, float, float]:
    """One rack's electrical power, fan power and airflow (kW, kW, kg/s) at a load fraction
    of P_max (:func:`power_frac` of the utilisation, shared by a pod's racks).

    At nominal inlet the total is P_max·load_frac; the fans' nominal share is part of it.
    Above the onset, CPU leakage grows the board power and the fans speed up (power ∝
    speed³, airflow ∝ speed). ``power_scale`` multiplies P_max (installed IT per rack).
    """
    p_max_kw = p.max_power_kw * power_scale
    excess_k = max(inlet_c - p.leakage_onset_c, 0.0)
    board_kw = p_max_kw * (load_frac - p.fan_power_frac) * (1.0 + p.leakage_frac_per_k * excess_k)
    speed = fan_speed(p, inlet_c)
    fan_kw = p_max_kw * p.fan_power_frac * speed**3
    return board_kw + fan_kw, fan_kw, p.design_airflow_kg_s * power_scale * speed


def utilisation_power_frac(idle_frac: float | FloatArray, util_frac: ArrayLike) -> FloatArray:
    """Fan/Weber/Barroso power as a fraction of P_max: idle + (1 − idle)(2u − u^1.4)."""
    return np.asarray(elementwise(power_frac, idle_frac, util_frac), dtype=np.float64)


def server_fan_speed(params: ServerParams, inlet_c: ArrayLike) -> FloatArray:
    """Server fan speed relative to nominal as the inlet warms past the onset."""
    return np.asarray(elementwise(fan_speed, as_record(params), inlet_c), dtype=np.float64)


def server_operating_point(
    params: ServerParams,
    util_frac: ArrayLike,
    inlet_c: ArrayLike,
    power_scale: float | FloatArray = 1.0,
) -> ServerOperatingPoint:
    """Rack power, fan power and airflow from utilisation and inlet temperature
    (:func:`rack_operating_point` for every rack)."""
    load = utilisation_power_frac(params.idle_frac, util_frac)
    power, fan, airflow = elementwise(
        rack_operating_point, as_record(params), load, inlet_c, power_scale, n_out=3
    )
    return ServerOperatingPoint(power_kw=power, fan_power_kw=fan, airflow_kg_s=airflow)

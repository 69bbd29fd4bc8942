"""Computer-room air handlers: chilled-water coil (ε-NTU, dry), variable-speed fan and the
supply-air temperature loop that modulates the coil's water valve.

Coil conductance scales with the film coefficients on each side,
``1/UA = r_a/(UA0 (m_a/m_a0)^0.8) + r_w/(UA0 (m_w/m_w0)^0.85)`` (air- and water-side
resistance shares ``r_a + r_w = 1``), and the coil is a counterflow heat exchanger. Fans
follow the affinity laws (airflow ∝ speed, power ∝ speed³) with a minimum speed. The fan
sits downstream of the coil, so its heat warms the supply air.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from physics.compiled import as_record, elementwise, jit, record_type
from physics.constants import CP_AIR_KJ_KG_K, CP_WATER_KJ_KG_K

FloatArray = NDArray[np.float64]
BISECTION_STEPS = 7
"""Halvings of [0, max water flow] in the supply-air valve solve."""
VALVE_GRID = 2**BISECTION_STEPS
"""Every flow the bisection tries is max·j/128 for an integer j: the water-side film term
at those flows is tabulated once per design (:func:`valve_water_terms`)."""


@dataclass(frozen=True)
class CrahParams:
    """One CRAH unit at its design point."""

    design_airflow_kg_s: float = 11.0
    design_fan_power_kw: float = 6.5
    min_speed_frac: float = 0.3
    design_water_flow_kg_s: float = 4.5
    max_water_flow_kg_s: float = 6.0
    design_effectiveness: float = 0.6
    """Coil effectiveness at design air and water flow (sets UA0)."""
    air_side_resistance_frac: float = 0.7

    def __post_init__(self) -> None:
        if not 0.0 < self.min_speed_frac < 1.0:
            raise ValueError("min_speed_frac must lie in (0, 1)")
        if not 0.0 < self.design_effectiveness < 1.0:
            raise ValueError("design_effectiveness must lie in (0, 1)")
        if self.max_water_flow_kg_s < self.design_water_flow_kg_s:
            raise ValueError("max_water_flow_kg_s must be at least design_water_flow_kg_s")
        if not 0.0 < self.air_side_resistance_frac < 1.0:
            raise ValueError("air_side_resistance_frac must lie in (0, 1)")

    @property
    def design_ua_kw_k(self) -> float:
        """UA0 that gives ``design_effectiveness`` at design flows (counterflow)."""
        c_air = self.design_airflow_kg_s * CP_AIR_KJ_KG_K
        c_w = self.design_water_flow_kg_s * CP_WATER_KJ_KG_K
        c_min, c_max = min(c_air, c_w), max(c_air, c_w)
        return float(ntu_for_effectiveness(self.design_effectiveness, c_min / c_max)) * c_min


CrahParamsRecord = record_type(CrahParams, derived=("design_ua_kw_k",))


@jit
def effectiveness(ntu: float, capacity_ratio: float) -> float:
    """ε of a counterflow exchanger for NTU and C_r = C_min/C_max (C_r → 1 handled)."""
    cr = min(max(capacity_ratio, 0.0), 1.0)
    if abs(1.0 - cr) < 1e-6:
        return ntu / (1.0 + ntu)
    e = math.exp(-ntu * (1.0 - cr))
    return (1.0 - e) / (1.0 - cr * e)


def counterflow_effectiveness(ntu: ArrayLike, capacity_ratio: ArrayLike) -> FloatArray:
    """ε of a counterflow exchanger for NTU and C_r = C_min/C_max (C_r → 1 handled)."""
    return np.asarray(elementwise(effectiveness, ntu, capacity_ratio), dtype=np.float64)


def ntu_for_effectiveness(effectiveness: float, capacity_ratio: float) -> float:
    """Inverse of :func:`counterflow_effectiveness` (closed form)."""
    eps, cr = effectiveness, capacity_ratio
    if abs(1.0 - cr) < 1e-6:
        return eps / (1.0 - eps)
    return float(np.log((1.0 - eps * cr) / (1.0 - eps)) / (1.0 - cr))


@jit
def coil_ua(p: CrahParams, airflow_kg_s: float, water_flow_kg_s: float, ua_mult: float) -> float:
    """Coil UA at off-design flows (film-coefficient scaling), times a fouling/site multiplier."""
    m_a = max(airflow_kg_s, 1e-6)
    m_w = max(water_flow_kg_s, 1e-6)
    r_a = p.air_side_resistance_frac
    resistance = (
        r_a * (p.design_airflow_kg_s / m_a) ** 0.8
        + (1.0 - r_a) * (p.design_water_flow_kg_s / m_w) ** 0.85
    )
    return float(p.design_ua_kw_k * ua_mult / resistance)


@jit
def coil_leaving(
    p: CrahParams,
    air_in_c: float,
    water_in_c: float,
    airflow_kg_s: float,
    water_flow_kg_s: float,
    ua_mult: float,
) -> float:
    """Air temperature leaving a dry coil (ε-NTU counterflow). No water → no cooling."""
    c_air = airflow_kg_s * CP_AIR_KJ_KG_K
    c_w = water_flow_kg_s * CP_WATER_KJ_KG_K
    c_min = min(c_air, c_w)
    c_max = max(max(c_air, c_w), 1e-9)
    ua = coil_ua(p, airflow_kg_s, water_flow_kg_s, ua_mult)
    eps = effectiveness(ua / max(c_min, 1e-9), c_min / c_max)
    q_kw = eps * c_min * max(air_in_c - water_in_c, 0.0)
    return air_in_c - q_kw / max(c_air, 1e-9)


def coil_ua_kw_k(
    params: CrahParams,
    airflow_kg_s: ArrayLike,
    water_flow_kg_s: ArrayLike,
    ua_multiplier: ArrayLike,
) -> FloatArray:
    """Coil UA at off-design flows (film-coefficient scaling), times a fouling/site multiplier."""
    return np.asarray(
        elementwise(coil_ua, as_record(params), airflow_kg_s, water_flow_kg_s, ua_multiplier)
    )


def coil_leaving_air_c(
    params: CrahParams,
    air_in_c: ArrayLike,
    water_in_c: ArrayLike,
    airflow_kg_s: ArrayLike,
    water_flow_kg_s: ArrayLike,
    ua_multiplier: ArrayLike = 1.0,
) -> FloatArray:
    """Air temperature leaving a dry coil (ε-NTU counterflow). No water → no cooling."""
    return np.asarray(
        elementwise(
            coil_leaving,
            as_record(params),
            air_in_c,
            water_in_c,
            airflow_kg_s,
            water_flow_kg_s,
            ua_multiplier,
        )
    )


@jit
def fan_airflow(p: CrahParams, speed_frac: float) -> float:
    """Airflow of a running unit at a speed (clipped to [min speed, 1])."""
    return p.design_airflow_kg_s * min(max(speed_frac, p.min_speed_frac), 1.0)


@jit
def fan_power(p: CrahParams, speed_frac: float) -> float:
    """Fan electrical power by the affinity law (∝ speed³), speed clipped to [min, 1]."""
    return p.design_fan_power_kw * min(max(speed_frac, p.min_speed_frac), 1.0) ** 3


def fan_airflow_kg_s(params: CrahParams, speed_frac: ArrayLike) -> FloatArray:
    """Airflow of a running unit at a speed (clipped to [min speed, 1])."""
    return np.asarray(elementwise(fan_airflow, as_record(params), speed_frac))


def fan_power_kw(params: CrahParams, speed_frac: ArrayLike) -> FloatArray:
    """Fan electrical power by the affinity law (∝ speed³), speed clipped to [min, 1]."""
    return np.asarray(elementwise(fan_power, as_record(params), speed_frac))


def valve_water_terms(params: CrahParams) -> FloatArray:
    """(m_w0 / m_w)^0.85 at the valve bisection's 2^7 + 1 flows max·j/128 (floored at 1e-6)."""
    flows = np.maximum(params.max_water_flow_kg_s * np.arange(VALVE_GRID + 1) / VALVE_GRID, 1e-6)
    return np.asarray(np.exp(0.85 * (np.log(params.design_water_flow_kg_s) - np.log(flows))))


@jit
def _leaving_at_grid(
    p: CrahParams,
    water_term: float,
    j: int,
    air_in_c: float,
    c_air: float,
    r_air: float,
    ua_scale: float,
    delta_max: float,
) -> float:
    """:func:`coil_leaving` at the tabulated flow ``j`` (its water-side term given) with the
    flow-free terms hoisted."""
    m_w = max(p.max_water_flow_kg_s * j / VALVE_GRID, 1e-6)
    ua = ua_scale / (r_air + (1.0 - p.air_side_resistance_frac) * water_term)
    c_w = m_w * CP_WATER_KJ_KG_K
    c_min = min(c_air, c_w)
    cr = min(c_min / max(c_air, c_w), 1.0 - 1e-9)
    e = math.exp(-(ua / c_min) * (1.0 - cr))
    eps = (1.0 - e) / (1.0 - cr * e)
    return float(air_in_c - eps * c_min * delta_max / c_air)


@jit
def valve_flow(
    p: CrahParams,
    water_terms: FloatArray,
    air_in_c: float,
    water_in_c: float,
    airflow_kg_s: float,
    leaving_setpoint_c: float,
    ua_mult: float,
) -> float:
    """Water flow the supply-air loop settles at: the least flow that reaches the setpoint.

    Leaving air falls monotonically with water flow, so a fixed-count bisection over the
    tabulated flows brackets the answer; a secant between the bracket ends refines it. A
    setpoint the coil cannot reach opens the valve fully; one already met by the entering
    air closes it.
    """
    if air_in_c <= leaving_setpoint_c:
        return 0.0
    c_air = max(airflow_kg_s * CP_AIR_KJ_KG_K, 1e-9)
    r_air = p.air_side_resistance_frac * (p.design_airflow_kg_s / max(airflow_kg_s, 1e-6)) ** 0.8
    ua_scale = p.design_ua_kw_k * ua_mult
    delta_max = max(air_in_c - water_in_c, 0.0)
    lo_j, hi_j = 0, VALVE_GRID
    t_lo = air_in_c
    t_hi = _leaving_at_grid(p, water_terms[hi_j], hi_j, air_in_c, c_air, r_air, ua_scale, delta_max)
    if t_hi > leaving_setpoint_c:
        return float(p.max_water_flow_kg_s)
    for _ in range(BISECTION_STEPS):
        mid_j = (lo_j + hi_j) // 2
        t_mid = _leaving_at_grid(
            p, water_terms[mid_j], mid_j, air_in_c, c_air, r_air, ua_scale, delta_max
        )
        if t_mid > leaving_setpoint_c:
            lo_j, t_lo = mid_j, t_mid
        else:
            hi_j, t_hi = mid_j, t_mid
    lo = p.max_water_flow_kg_s * lo_j / VALVE_GRID
    hi = p.max_water_flow_kg_s * hi_j / VALVE_GRID
    span = t_lo - t_hi if abs(t_lo - t_hi) > 1e-9 else 1.0
    frac = min(max((t_lo - leaving_setpoint_c) / span, 0.0), 1.0)
    return float(lo + frac * (hi - lo))


def valve_water_flow_for_setpoint(
    params: CrahParams,
    air_in_c: ArrayLike,
    water_in_c: ArrayLike,
    airflow_kg_s: ArrayLike,
    coil_leaving_setpoint_c: ArrayLike,
    ua_multiplier: ArrayLike,
) -> FloatArray:
    """Water flow the supply-air loop settles at (:func:`valve_flow` for every unit)."""
    terms = valve_water_terms(params)
    return np.asarray(
        elementwise(
            lambda *a: valve_flow(a[0], terms, *a[1:]),
            as_record(params),
            air_in_c,
            water_in_c,
            airflow_kg_s,
            coil_leaving_setpoint_c,
            ua_multiplier,
        )
    )


def supply_air_from_heat_balance_c(
    return_air_c: ArrayLike,
    airflow_kg_s: ArrayLike,
    fan_power_kw: ArrayLike,
    chw_flow_kg_s: ArrayLike,
    chw_supply_c: ArrayLike,
    chw_return_c: ArrayLike,
    *,
    min_airflow_kg_s: float = 1.0,
) -> FloatArray:
    """The hall's mixed supply-air temperature implied by the metered coil load: the air
    leaves the coils ``Q / (ṁ_a c_p)`` below the return air, with ``Q`` the heat the chilled
    water carries away (``ṁ_w c_w (T_return − T_supply)``), and the fans' heat added after
    the coils. Exact in steady state with dry coils; the chilled-water loop's storage makes
    it lag a few minutes after a load step. NaN where the airflow is below
    ``min_airflow_kg_s`` (every unit stopped) or a reading is missing."""
    air = np.asarray(airflow_kg_s, dtype=np.float64)
    coil_kw = np.asarray(chw_flow_kg_s, dtype=np.float64) * CP_WATER_KJ_KG_K
    coil_kw = coil_kw * (np.asarray(chw_return_c, dtype=np.float64) - np.asarray(chw_supply_c))
    net_kw = coil_kw - np.asarray(fan_power_kw, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        supply = np.asarray(return_air_c, dtype=np.float64) - net_kw / (air * CP_AIR_KJ_KG_K)
    out: FloatArray = np.where(air >= min_airflow_kg_s, supply, np.nan)
    return out

"""Computer-room air handlers: chilled-water coil (ε-NTU, dry), variable-speed fan and the
supply-air temperature loop that modulates the coil's water valve.

Coil conductance scales with the film coefficients on each side,
``1/UA = r_a/(UA0 (m_a/m_a0)^0.8) + r_w/(UA0 (m_w/m_w0)^0.85)`` (air- and water-side
resistance shares ``r_a + r_w = 1``), and the coil is a counterflow heat exchanger. Fans
follow the affinity laws (airflow ∝ speed, power ∝ speed³) with a minimum speed. The fan
sits downstream of the coil, so its heat warms the supply air.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from physics.constants import CP_AIR_KJ_KG_K, CP_WATER_KJ_KG_K

logger = logging.getLogger(__name__)

FloatArray = NDArray[np.float64]
BISECTION_STEPS = 7
"""Halvings of [0, max water flow] in the supply-air valve solve (the plant kernel's too)."""


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


def counterflow_effectiveness(ntu: ArrayLike, capacity_ratio: ArrayLike) -> FloatArray:
    """ε of a counterflow exchanger for NTU and C_r = C_min/C_max (C_r → 1 handled)."""
    n = np.asarray(ntu, dtype=np.float64)
    cr = np.clip(np.asarray(capacity_ratio, dtype=np.float64), 0.0, 1.0)
    near_one = np.abs(1.0 - cr) < 1e-6
    cr_safe = np.where(near_one, 0.5, cr)
    e = np.exp(-n * (1.0 - cr_safe))
    general = (1.0 - e) / (1.0 - cr_safe * e)
    return np.asarray(np.where(near_one, n / (1.0 + n), general), dtype=np.float64)


def ntu_for_effectiveness(effectiveness: float, capacity_ratio: float) -> float:
    """Inverse of :func:`counterflow_effectiveness` (closed form)."""
    eps, cr = effectiveness, capacity_ratio
    if abs(1.0 - cr) < 1e-6:
        return eps / (1.0 - eps)
    return float(np.log((1.0 - eps * cr) / (1.0 - eps)) / (1.0 - cr))


def coil_ua_kw_k(
    params: CrahParams,
    airflow_kg_s: ArrayLike,
    water_flow_kg_s: ArrayLike,
    ua_multiplier: ArrayLike,
) -> FloatArray:
    """Coil UA at off-design flows (film-coefficient scaling), times a fouling/site multiplier."""
    m_a = np.maximum(np.asarray(airflow_kg_s, dtype=np.float64), 1e-6)
    m_w = np.maximum(np.asarray(water_flow_kg_s, dtype=np.float64), 1e-6)
    r_a = params.air_side_resistance_frac
    resistance = (
        r_a * (params.design_airflow_kg_s / m_a) ** 0.8
        + (1.0 - r_a) * (params.design_water_flow_kg_s / m_w) ** 0.85
    )
    return np.asarray(params.design_ua_kw_k * np.asarray(ua_multiplier) / resistance)


def coil_leaving_air_c(
    params: CrahParams,
    air_in_c: ArrayLike,
    water_in_c: ArrayLike,
    airflow_kg_s: ArrayLike,
    water_flow_kg_s: ArrayLike,
    ua_multiplier: ArrayLike = 1.0,
) -> FloatArray:
    """Air temperature leaving a dry coil (ε-NTU counterflow). No water → no cooling."""
    m_a = np.asarray(airflow_kg_s, dtype=np.float64)
    m_w = np.asarray(water_flow_kg_s, dtype=np.float64)
    c_air = m_a * CP_AIR_KJ_KG_K
    c_w = m_w * CP_WATER_KJ_KG_K
    c_min = np.minimum(c_air, c_w)
    c_max = np.maximum(np.maximum(c_air, c_w), 1e-9)
    ua = coil_ua_kw_k(params, m_a, m_w, ua_multiplier)
    eps = counterflow_effectiveness(ua / np.maximum(c_min, 1e-9), c_min / c_max)
    t_in = np.asarray(air_in_c, dtype=np.float64)
    q_kw = eps * c_min * np.maximum(t_in - np.asarray(water_in_c), 0.0)
    return np.asarray(t_in - q_kw / np.maximum(c_air, 1e-9), dtype=np.float64)


def fan_airflow_kg_s(params: CrahParams, speed_frac: ArrayLike) -> FloatArray:
    """Airflow of a running unit at a speed (clipped to [min speed, 1])."""
    s = np.clip(np.asarray(speed_frac, dtype=np.float64), params.min_speed_frac, 1.0)
    return np.asarray(params.design_airflow_kg_s * s)


def fan_power_kw(params: CrahParams, speed_frac: ArrayLike) -> FloatArray:
    """Fan electrical power by the affinity law (∝ speed³), speed clipped to [min, 1]."""
    s = np.clip(np.asarray(speed_frac, dtype=np.float64), params.min_speed_frac, 1.0)
    return np.asarray(params.design_fan_power_kw * s**3)


def valve_water_flow_for_setpoint(
    params: CrahParams,
    air_in_c: FloatArray,
    water_in_c: FloatArray,
    airflow_kg_s: FloatArray,
    coil_leaving_setpoint_c: FloatArray,
    ua_multiplier: FloatArray,
) -> FloatArray:
    """Water flow the supply-air loop settles at: the least flow that reaches the coil setpoint.

    Leaving air falls monotonically with water flow, so a fixed-count vectorised bisection
    brackets the answer; a final secant between the bracket ends refines it. A setpoint the
    coil cannot reach opens the valve fully; one already met by the entering air closes it.
    The loop inlines :func:`coil_leaving_air_c` with the flow-independent terms hoisted (it is
    the plant's hot path); ``tests/physics/test_crah.py`` checks the two agree.
    """
    c_air = np.maximum(airflow_kg_s * CP_AIR_KJ_KG_K, 1e-9)
    r_a = params.air_side_resistance_frac
    r_air = r_a * (params.design_airflow_kg_s / np.maximum(airflow_kg_s, 1e-6)) ** 0.8
    ua_scale = params.design_ua_kw_k * ua_multiplier
    delta_max = np.maximum(air_in_c - water_in_c, 0.0)
    ln_w0 = np.log(params.design_water_flow_kg_s)

    def leaving(flow: FloatArray) -> FloatArray:
        m_w = np.maximum(flow, 1e-6)
        ua = ua_scale / (r_air + (1.0 - r_a) * np.exp(0.85 * (ln_w0 - np.log(m_w))))
        c_w = m_w * CP_WATER_KJ_KG_K
        c_min = np.minimum(c_air, c_w)
        cr = np.minimum(c_min / np.maximum(c_air, c_w), 1.0 - 1e-9)
        e = np.exp(-(ua / c_min) * (1.0 - cr))
        eps = (1.0 - e) / (1.0 - cr * e)
        return np.asarray(air_in_c - eps * c_min * delta_max / c_air, dtype=np.float64)

    lo = np.zeros_like(air_in_c)
    hi = np.full_like(air_in_c, params.max_water_flow_kg_s)
    t_lo = np.asarray(air_in_c, dtype=np.float64).copy()
    t_hi = leaving(hi)
    unreachable = t_hi > coil_leaving_setpoint_c
    for _ in range(BISECTION_STEPS):
        mid = 0.5 * (lo + hi)
        t_mid = leaving(mid)
        too_warm = t_mid > coil_leaving_setpoint_c
        lo = np.where(too_warm, mid, lo)
        t_lo = np.where(too_warm, t_mid, t_lo)
        hi = np.where(too_warm, hi, mid)
        t_hi = np.where(too_warm, t_hi, t_mid)
    span = np.where(np.abs(t_lo - t_hi) > 1e-9, t_lo - t_hi, 1.0)
    frac = np.clip((t_lo - coil_leaving_setpoint_c) / span, 0.0, 1.0)
    flow = lo + frac * (hi - lo)
    flow = np.where(unreachable, params.max_water_flow_kg_s, flow)
    already_met = air_in_c <= coil_leaving_setpoint_c
    return np.asarray(np.where(already_met, 0.0, flow), dtype=np.float64)

"""Physical constants and unit conversions shared by every physics model (SI unless named)."""

from __future__ import annotations

CP_AIR_KJ_KG_K = 1.006
"""Specific heat of dry air at room conditions, kJ/(kg·K)."""

RHO_AIR_KG_M3 = 1.18
"""Density of air at ~25 °C and sea level, kg/m³."""

CP_WATER_KJ_KG_K = 4.186
"""Specific heat of liquid water, kJ/(kg·K)."""

RHO_WATER_KG_M3 = 997.0
"""Density of liquid water at ~25 °C, kg/m³."""

H_FG_WATER_KJ_KG = 2_430.0
"""Latent heat of vaporisation of water near 30 °C, kJ/kg (evaporative cooling)."""

STANDARD_PRESSURE_PA = 101_325.0
"""Standard atmospheric pressure, Pa."""

SECONDS_PER_HOUR = 3_600.0
HOURS_PER_DAY = 24.0

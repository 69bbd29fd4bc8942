"""Variable-speed open cooling tower: EnergyPlus ``CoolingTower:VariableSpeed`` with the
YorkCalc approach correlation, fan power and make-up water (evaporation, drift, blowdown).

Source: EnergyPlus Engineering Reference, "Variable Speed Cooling Tower" (tables
"Approach Temperature Correlation Coefficients" and "Minimum and Maximum Limits for
Approach Temperature Correlation Variables"), and ``CondenserLoopTowers.cc`` where the
YorkCalc coefficients are set (York International Corp. 2002, YORKcalc software)::

    approach = Σ_{k=0..2} LG^k · Σ_{j=0..2} Σ_{i=0..2} c[9k + 3j + i] · Twb^i · Tr^j

with Twb the entering-air wet bulb (°C), Tr the range (°C) and LG = water flow ratio /
airflow ratio. The correlation's reference point (FRwater = FRair = 1) is 2.4 gpm/ton at
25.6 °C wet bulb, 35 → 29.4 °C water, i.e. a 3.9 K approach at a 5.6 K range.

Clamping: as EnergyPlus does, the wet bulb and the water flow ratio are clamped to the
validity range before the correlation is evaluated, and the leaving water is the *actual*
wet bulb plus that approach. Tropical wet bulbs above 26.7 °C (the Engineering Reference
limit; recent ``CondenserLoopTowers.cc`` uses 29.44 °C) therefore get the approach of a
26.7 °C day — an optimistic extrapolation on the hottest, most humid hours. EnergyPlus only
warns on range and LG outside their limits; here they are clamped too (range to
[0, 22.2] K, LG to ≤ 8) so the polynomial never leaves its fitted region.

Fan control follows EnergyPlus: below the minimum airflow ratio the fan cycles at minimum
speed, blending the free-convection and minimum-speed leaving temperatures. Here an
*effective* airflow ratio r in [0, 1] carries this: r ≥ min is continuous speed, r < min is
cycling with fan part-load ratio r/min, r = 0 is fan off (free convection).

Behaviour of the fit worth knowing: the approach *falls* as the wet bulb rises (as on
manufacturers' tower curves) while the leaving water still warms; and it falls
monotonically with airflow except outside its fitted data (LG ≥ 5 with wet bulb below
~17 °C and range above ~10 K, where the predicted approach already exceeds the 40 K
limit), where the airflow bisection loses accuracy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from physics.compiled import as_record, elementwise, jit, record_type
from physics.constants import H_FG_WATER_KJ_KG

FloatArray = NDArray[np.float64]

YORKCALC_COEFFS: tuple[float, ...] = (
    -0.359741205, -0.055053608, 0.0023850432,
    0.173926877, -0.0248473764, 0.00048430224,
    -0.005589849456, 0.0005770079712, -0.00001342427256,
    2.84765801111111, -0.121765149, 0.0014599242,
    1.680428651, -0.0166920786, -0.0007190532,
    -0.025485194448, 0.0000487491696, 0.00002719234152,
    -0.0653766255555556, -0.002278167, 0.0002500254,
    -0.0910565458, 0.00318176316, 0.000038621772,
    -0.0034285382352, 0.00000856589904, -0.000001516821552,
)  # fmt: skip
"""YorkCalc coefficients in EnergyPlus order: constant, Twb, Twb², Tr, Twb·Tr, Twb²·Tr, Tr²,
Twb·Tr², Twb²·Tr², then the same nine terms times LG and times LG²."""

_YORKCALC_GRID = np.asarray(YORKCALC_COEFFS, dtype=np.float64).reshape(3, 3, 3)

YORKCALC_WET_BULB_RANGE_C = (-34.4, 26.7)
YORKCALC_RANGE_K = (1.1, 22.2)
"""Published validity of the range; evaluation clamps to [0, 22.2] (see module notes)."""
YORKCALC_APPROACH_RANGE_K = (1.1, 40.0)
YORKCALC_WATER_FLOW_RATIO_RANGE = (0.75, 1.25)
YORKCALC_MAX_LG_RATIO = 8.0

_LEAVING_BISECTION_STEPS = 24
_AIRFLOW_BISECTION_STEPS = 24
_MIN_AIRFLOW_FOR_LG = 1e-3


@dataclass(frozen=True)
class CoolingTowerParams:
    """One variable-speed tower (or a bank of identical cells treated as one)."""

    design_water_flow_kg_s: float = 60.0
    """Water flow at FRwater = 1 (the correlation's reference flow)."""
    design_fan_power_kw: float = 15.0
    min_airflow_ratio: float = 0.2
    fan_power_curve: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 1.0)
    """Cubic f(r) = k0 + k1 r + k2 r² + k3 r³ with P_fan = P_design · f(r)."""
    approach_bias_k: float = 0.0
    """Hidden parameter: added to the correlation's approach (fill fouling, bad nozzles)."""
    drift_frac: float = 0.00008
    """Drift loss as a fraction of the circulating water flow."""
    cycles_of_concentration: float = 3.0
    free_convection_frac: float = 0.125
    """Fraction of the fan-at-maximum temperature drop reached with the fan off."""

    def __post_init__(self) -> None:
        if self.design_water_flow_kg_s <= 0.0 or self.design_fan_power_kw < 0.0:
            raise ValueError("design water flow must be positive and fan power non-negative")
        if not 0.0 < self.min_airflow_ratio < 1.0:
            raise ValueError("min_airflow_ratio must lie in (0, 1)")
        if len(self.fan_power_curve) != 4:
            raise ValueError("fan_power_curve needs 4 cubic coefficients")
        if not 0.0 <= self.drift_frac < 0.01:
            raise ValueError("drift_frac must lie in [0, 0.01)")
        if self.cycles_of_concentration <= 1.0:
            raise ValueError("cycles_of_concentration must exceed 1")
        if not 0.0 <= self.free_convection_frac <= 0.2:
            raise ValueError("free_convection_frac must lie in [0, 0.2] (EnergyPlus limit)")


@dataclass(frozen=True)
class WaterUse:
    """Cooling-tower make-up water, kg/s (arrays broadcast from the inputs)."""

    evaporation_kg_s: FloatArray
    drift_kg_s: FloatArray
    blowdown_kg_s: FloatArray
    total_kg_s: FloatArray


CoolingTowerParamsRecord = record_type(CoolingTowerParams)


@jit
def york_coefficients(wet_bulb_c: float, range_k: float) -> tuple[float, float, float]:
    """YorkCalc as a quadratic in LG at a (clamped) wet bulb and range: a0 + a1 LG + a2 LG²."""
    twb = min(max(wet_bulb_c, YORKCALC_WET_BULB_RANGE_C[0]), YORKCALC_WET_BULB_RANGE_C[1])
    tr = min(max(range_k, 0.0), YORKCALC_RANGE_K[1])
    a0 = a1 = a2 = 0.0
    tr_j = 1.0
    for j in range(3):
        twb_i = 1.0
        for i in range(3):
            w = tr_j * twb_i
            a0 += _YORKCALC_GRID[0, j, i] * w
            a1 += _YORKCALC_GRID[1, j, i] * w
            a2 += _YORKCALC_GRID[2, j, i] * w
            twb_i *= twb
        tr_j *= tr
    return a0, a1, a2


@jit
def _flow_ratio(water_flow_ratio: float) -> float:
    lo, hi = YORKCALC_WATER_FLOW_RATIO_RANGE
    return min(max(water_flow_ratio, lo), hi)


@jit
def approach(
    wet_bulb_c: float, range_k: float, water_flow_ratio: float, airflow_ratio: float
) -> float:
    """YorkCalc approach (leaving water − entering wet bulb), K, inputs clamped."""
    lg = min(
        _flow_ratio(water_flow_ratio) / max(airflow_ratio, _MIN_AIRFLOW_FOR_LG),
        YORKCALC_MAX_LG_RATIO,
    )
    a0, a1, a2 = york_coefficients(wet_bulb_c, range_k)
    return a0 + a1 * lg + a2 * lg * lg


def approach_k(
    wet_bulb_c: ArrayLike, range_k: ArrayLike, water_flow_ratio: ArrayLike, airflow_ratio: ArrayLike
) -> FloatArray:
    """YorkCalc approach (leaving water − entering wet bulb), K, inputs clamped."""
    return np.asarray(elementwise(approach, wet_bulb_c, range_k, water_flow_ratio, airflow_ratio))


def _fan_max_leaving_c(
    params: CoolingTowerParams,
    wet_bulb: FloatArray,
    entering: FloatArray,
    water_flow_ratio: FloatArray,
    airflow_ratio: FloatArray,
) -> FloatArray:
    """Leaving water at continuous fan speed: bisection of T = Twb + approach(Tin − T)."""
    shape = np.broadcast(wet_bulb, entering, airflow_ratio).shape
    hi = np.broadcast_to(entering, shape)
    lo = np.minimum(wet_bulb, hi)  # water at or below the wet bulb is left as it is
    for _ in range(_LEAVING_BISECTION_STEPS):
        mid = 0.5 * (lo + hi)
        residual = (
            wet_bulb
            + approach_k(wet_bulb, entering - mid, water_flow_ratio, airflow_ratio)
            + params.approach_bias_k
            - mid
        )
        lo = np.where(residual > 0.0, mid, lo)
        hi = np.where(residual > 0.0, hi, mid)
    return np.asarray(0.5 * (lo + hi), dtype=np.float64)


def tower_leaving_water_c(
    params: CoolingTowerParams,
    wet_bulb_c: ArrayLike,
    entering_water_c: ArrayLike,
    water_flow_kg_s: ArrayLike,
    airflow_ratio: ArrayLike,
) -> FloatArray:
    """Leaving water temperature at an effective airflow ratio in [0, 1].

    Always between the wet bulb and the entering water (entering water when there is no
    flow or the water is already at or below the wet bulb). Running the fan is never
    worse than free convection.
    """
    twb = np.asarray(wet_bulb_c, dtype=np.float64)
    t_in = np.asarray(entering_water_c, dtype=np.float64)
    flow = np.maximum(np.asarray(water_flow_kg_s, dtype=np.float64), 0.0)
    ratio = np.clip(np.asarray(airflow_ratio, dtype=np.float64), 0.0, 1.0)
    fr_water = flow / params.design_water_flow_kg_s
    r_min = params.min_airflow_ratio

    t_fan_max = _fan_max_leaving_c(params, twb, t_in, fr_water, np.ones_like(ratio))
    t_free = t_in - params.free_convection_frac * (t_in - t_fan_max)
    t_speed = _fan_max_leaving_c(params, twb, t_in, fr_water, np.maximum(ratio, r_min))
    t_speed = np.minimum(t_speed, t_free)
    cycling_plr = np.minimum(ratio / r_min, 1.0)
    t_cycling = cycling_plr * t_speed + (1.0 - cycling_plr) * t_free
    t_out = np.where(ratio >= r_min, t_speed, t_cycling)
    return np.asarray(np.where(flow > 0.0, t_out, t_in + 0.0 * t_out), dtype=np.float64)


def airflow_ratio_for_setpoint(
    params: CoolingTowerParams,
    wet_bulb_c: ArrayLike,
    entering_water_c: ArrayLike,
    water_flow_kg_s: ArrayLike,
    leaving_setpoint_c: ArrayLike,
) -> FloatArray:
    """Smallest effective airflow ratio in [0, 1] whose leaving water meets the setpoint.

    1.0 when even full fan speed cannot reach it; 0.0 when free convection suffices;
    below ``min_airflow_ratio`` the fan cycles (see module notes). Vectorised bisection.
    """
    setpoint = np.asarray(leaving_setpoint_c, dtype=np.float64)
    shape = np.broadcast(
        np.asarray(wet_bulb_c), np.asarray(entering_water_c), np.asarray(water_flow_kg_s), setpoint
    ).shape
    lo = np.zeros(shape)
    hi = np.ones(shape)
    for _ in range(_AIRFLOW_BISECTION_STEPS):
        mid = 0.5 * (lo + hi)
        t_mid = tower_leaving_water_c(params, wet_bulb_c, entering_water_c, water_flow_kg_s, mid)
        too_warm = t_mid > setpoint
        lo = np.where(too_warm, mid, lo)
        hi = np.where(too_warm, hi, mid)
    t_free = tower_leaving_water_c(params, wet_bulb_c, entering_water_c, water_flow_kg_s, 0.0)
    return np.asarray(np.where(t_free <= setpoint, 0.0, hi), dtype=np.float64)


@jit
def fan_power(p: CoolingTowerParams, airflow_ratio: float) -> float:
    """Fan power at an effective airflow ratio (cycling at minimum speed below it)."""
    ratio = min(max(airflow_ratio, 0.0), 1.0)
    r_min = p.min_airflow_ratio
    k = p.fan_power_curve
    speed = max(ratio, r_min)
    curve = k[0] + speed * (k[1] + speed * (k[2] + speed * k[3]))
    return p.design_fan_power_kw * max(curve, 0.0) * min(ratio / r_min, 1.0)


@jit
def water_use(
    p: CoolingTowerParams, heat_rejected_kw: float, water_flow_kg_s: float
) -> tuple[float, float, float, float]:
    """Make-up water (kg/s): evaporation = Q / h_fg, drift = drift_frac · flow,
    blowdown = max(evaporation / (cycles − 1) − drift, 0), and their total."""
    evaporation = max(heat_rejected_kw, 0.0) / H_FG_WATER_KJ_KG
    drift = p.drift_frac * max(water_flow_kg_s, 0.0)
    blowdown = max(evaporation / (p.cycles_of_concentration - 1.0) - drift, 0.0)
    return evaporation, drift, blowdown, evaporation + drift + blowdown


@jit
def airflow_for_approach(
    p: CoolingTowerParams,
    wet_bulb_c: float,
    range_k: float,
    water_flow_ratio: float,
    target_approach_k: float,
) -> float:
    """Fan airflow ratio in [min, 1] whose YorkCalc approach equals a target at a known range.

    For fixed wet bulb and range the correlation is a quadratic in LG, so the solve is in
    closed form (no iteration): the root between LG at full fan and LG at minimum fan. An
    unreachable target gives 1 (full fan); one met at minimum fan gives the minimum.
    """
    fw = _flow_ratio(water_flow_ratio)
    a0, a1, a2 = york_coefficients(wet_bulb_c, range_k)
    lg_lo = min(fw, YORKCALC_MAX_LG_RATIO)
    lg_hi = min(fw / p.min_airflow_ratio, YORKCALC_MAX_LG_RATIO)
    if a0 + lg_hi * (a1 + lg_hi * a2) <= target_approach_k:
        return p.min_airflow_ratio
    if a0 + lg_lo * (a1 + lg_lo * a2) > target_approach_k:
        return 1.0
    c = a0 - target_approach_k
    if abs(a2) > 1e-12:
        sq = math.sqrt(max(a1 * a1 - 4.0 * a2 * c, 0.0))
        root = (-a1 + sq) / (2.0 * a2)
        if not lg_lo <= root <= lg_hi:
            root = (-a1 - sq) / (2.0 * a2)
    else:
        root = -c / a1 if abs(a1) > 1e-12 else lg_lo
    root = min(max(root, lg_lo), lg_hi)
    return min(max(fw / max(root, 1e-9), p.min_airflow_ratio), 1.0)


def tower_fan_power_kw(params: CoolingTowerParams, airflow_ratio: ArrayLike) -> FloatArray:
    """Fan power at an effective airflow ratio (cycling at minimum speed below it)."""
    return np.asarray(elementwise(fan_power, as_record(params), airflow_ratio))


def tower_water_use_kg_s(
    params: CoolingTowerParams, heat_rejected_kw: ArrayLike, water_flow_kg_s: ArrayLike
) -> WaterUse:
    """Make-up water by :func:`water_use`."""
    evaporation, drift, blowdown, total = elementwise(
        water_use, as_record(params), heat_rejected_kw, water_flow_kg_s, n_out=4
    )
    return WaterUse(
        evaporation_kg_s=evaporation, drift_kg_s=drift, blowdown_kg_s=blowdown, total_kg_s=total
    )


def airflow_ratio_for_approach(
    params: CoolingTowerParams,
    wet_bulb_c: ArrayLike,
    range_k: ArrayLike,
    water_flow_ratio: ArrayLike,
    target_approach_k: ArrayLike,
) -> FloatArray:
    """Fan airflow ratio whose approach equals a target (:func:`airflow_for_approach`)."""
    return np.asarray(
        elementwise(
            airflow_for_approach,
            as_record(params),
            wet_bulb_c,
            range_k,
            water_flow_ratio,
            target_approach_k,
        )
    )

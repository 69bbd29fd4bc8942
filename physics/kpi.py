"""Key performance indicators: the one definition of every KPI used in TwinLoop.

Every series is sampled at a fixed step ``step_s`` (seconds) with time along axis 0; extra
trailing axes (racks, sensors) are allowed. Powers are in kW, temperatures in °C, energies
in kWh. A sample stands for the interval ``step_s`` that it opens (rectangle rule), so a run
of ``n`` samples lasts ``n · step_s`` seconds. Functions return a float for 1-D input and an
array over the trailing axes otherwise (:data:`FloatOrArray`). Ratios whose denominator is
zero (no IT energy, no samples) are NaN rather than an error or a warning.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from physics.constants import SECONDS_PER_HOUR

logger = logging.getLogger(__name__)

FloatOrArray = float | NDArray[np.float64]
JsonFloat = float | None

# ASHRAE TC9.9 thermal guidelines at the server inlet (dry bulb): recommended envelope
# 18–27 °C, allowable class A1 15–32 °C; temperature change at most 5 °C in any 15-minute
# period and 20 °C in any hour (2021 edition, equipment without tape drives; 5 °C in any hour
# where tape drives are present).
ASHRAE_RECOMMENDED_MIN_C = 18.0
ASHRAE_RECOMMENDED_MAX_C = 27.0
ASHRAE_A1_ALLOWABLE_MIN_C = 15.0
ASHRAE_A1_ALLOWABLE_MAX_C = 32.0
ASHRAE_MAX_CHANGE_C_PER_15MIN = 5.0
RATE_WINDOW_S = 900.0

RACK_INLET_PREFIX = "rack_inlet_c."
SETPOINT_PREFIX = "sp."
# fmt: off
REQUIRED_COLUMNS: tuple[str, ...] = (
    "time_h", "it_power_kw", "chiller_power_kw", "crah_fan_power_kw", "chw_pump_power_kw",
    "cw_pump_power_kw", "tower_fan_power_kw", "ups_loss_kw", "pdu_loss_kw",
    "transformer_loss_kw", "lighting_kw", "aux_kw", "facility_power_kw", "water_use_kg_s",
)
"""Columns a plant log must carry (plus ``rack_inlet_c.*``); ``economiser_power_kw`` and
``sp.*`` columns are optional."""
COOLING_COLUMNS: tuple[str, ...] = (
    "chiller_power_kw", "crah_fan_power_kw", "chw_pump_power_kw", "cw_pump_power_kw",
    "tower_fan_power_kw", "economiser_power_kw",
)
"""Columns summed into cooling energy."""
# fmt: on


def _arr(x: ArrayLike) -> NDArray[np.float64]:
    return np.asarray(x, dtype=np.float64)


def _out(x: NDArray[np.float64]) -> FloatOrArray:
    return float(x) if x.ndim == 0 else x


def _hours(step_s: float, n: int = 1) -> float:
    """``n`` steps of ``step_s`` in hours; rejects a non-positive step."""
    if not step_s > 0.0:
        raise ValueError(f"step_s must be positive, got {step_s}")
    return n * step_s / SECONDS_PER_HOUR


def _safe_ratio(num: ArrayLike, den: ArrayLike) -> FloatOrArray:
    """``num / den`` with NaN where ``den`` is not positive (no division warning)."""
    n, d = np.broadcast_arrays(_arr(num), _arr(den))
    result = np.full(n.shape, np.nan)
    np.divide(n, d, out=result, where=d > 0.0)
    return _out(result)


# --- energy, efficiency, water, carbon ---------------------------------------------------


def energy_kwh(power_kw: ArrayLike, step_s: float) -> FloatOrArray:
    """Energy in kWh: ``Σ_t P[t] · step_s / 3600`` over axis 0 (per trailing column)."""
    return _out(np.sum(_arr(power_kw), axis=0) * _hours(step_s))


def pue(facility_kwh: ArrayLike, it_kwh: ArrayLike) -> FloatOrArray:
    """Power Usage Effectiveness = facility energy / IT energy (The Green Grid, ISO 30134-2)."""
    return _safe_ratio(facility_kwh, it_kwh)


def cooling_ratio(cooling_kwh: ArrayLike, it_kwh: ArrayLike) -> FloatOrArray:
    """Cooling energy / IT energy (the partial PUE of cooling minus one, ``pPUE_cool − 1``)."""
    return _safe_ratio(cooling_kwh, it_kwh)


def wue_l_per_kwh(water_kg: ArrayLike, it_kwh: ArrayLike) -> FloatOrArray:
    """Water Usage Effectiveness, L per kWh of IT energy (1 kg of water taken as 1 L)."""
    return _safe_ratio(water_kg, it_kwh)


def co2_kg(
    facility_power_kw: ArrayLike, carbon_intensity_kg_per_kwh: ArrayLike, step_s: float
) -> FloatOrArray:
    """CO₂ in kg: ``Σ_t P[t] · I[t] · step_s / 3600``.

    The intensity is a scalar or a series along axis 0 as long as the power series; a 1-D
    series is broadcast over the power's trailing axes.
    """
    power, intensity = _arr(facility_power_kw), _arr(carbon_intensity_kg_per_kwh)
    if intensity.ndim >= 1:
        if intensity.shape[0] != power.shape[0]:
            raise ValueError(
                f"carbon intensity has {intensity.shape[0]} samples, power has {power.shape[0]}"
            )
        intensity = intensity.reshape(intensity.shape + (1,) * (power.ndim - intensity.ndim))
    return energy_kwh(power * intensity, step_s)


# --- thermal SLA at the rack inlet -------------------------------------------------------


def violation_degree_hours(inlet_c: ArrayLike, step_s: float, limit_c: float) -> float:
    """Degree-hours above ``limit_c``, K·h: ``Σ_{t,rack} max(T − limit, 0) · step_s / 3600``
    (summed over time and every sensor: two racks 1 K over for an hour score 2 K·h)."""
    return float(np.sum(np.maximum(_arr(inlet_c) - limit_c, 0.0))) * _hours(step_s)


def max_inlet_c(inlet_c: ArrayLike) -> float:
    """Hottest inlet temperature over time and sensors, °C."""
    return float(np.max(_arr(inlet_c)))


def _sliding_range(x: NDArray[np.float64], length: int) -> NDArray[np.float64]:
    """``max − min`` over every ``length`` consecutive samples on axis 0 (O(n log length))."""
    hi, lo, span = x, x, 1
    while 2 * span <= length:
        hi, lo = np.maximum(hi[:-span], hi[span:]), np.minimum(lo[:-span], lo[span:])
        span *= 2
    if shift := length - span:
        hi, lo = np.maximum(hi[:-shift], hi[shift:]), np.minimum(lo[:-shift], lo[shift:])
    return hi - lo


def max_rate_of_change_c_per_15min(inlet_c: ArrayLike, step_s: float) -> float:
    """Largest temperature change within any 15-minute period, °C, over all sensors.

    Per sensor, the change in a window is ``max(T) − min(T)`` over the samples at most 15
    minutes apart (``⌊900 / step_s⌋`` steps); the result is the maximum over windows and
    sensors. A run shorter than 15 minutes is one window. When ``step_s`` exceeds 15 minutes
    the largest step change is scaled by ``900 / step_s`` (linear interpolation). Compare with
    :data:`ASHRAE_MAX_CHANGE_C_PER_15MIN` (ASHRAE: 5 °C in any 15 minutes).
    """
    _hours(step_s)
    x = _arr(inlet_c)
    if x.ndim == 0 or x.shape[0] < 2:
        return 0.0
    steps, scale = math.floor(RATE_WINDOW_S / step_s + 1e-9), 1.0
    if steps < 1:
        steps, scale = 1, RATE_WINDOW_S / step_s
    return float(np.max(_sliding_range(x, min(steps + 1, x.shape[0])))) * scale


def rci_hi_percent(
    inlet_c: ArrayLike,
    rec_max_c: float = ASHRAE_RECOMMENDED_MAX_C,
    allow_max_c: float = ASHRAE_A1_ALLOWABLE_MAX_C,
) -> float:
    """Herrlin's Rack Cooling Index (high side) over the whole run, %.

    ``RCI_HI = (1 − Σ_{t,rack} max(T − rec_max, 0) / (n · (allow_max − rec_max))) × 100``
    with ``n`` the number of inlet readings (samples × racks). 100 % means no inlet above the
    recommended limit; 0 % means the mean over-temperature fills the whole allowable band
    (e.g. every inlet at 32 °C). Values below 0 % are possible and are not clipped.
    """
    x = _arr(inlet_c)
    band_k = allow_max_c - rec_max_c
    if band_k <= 0.0:
        raise ValueError(f"allow_max_c ({allow_max_c}) must exceed rec_max_c ({rec_max_c})")
    if x.size == 0:
        return math.nan
    over_k = float(np.sum(np.maximum(x - rec_max_c, 0.0)))
    return (1.0 - over_k / (x.size * band_k)) * 100.0


# --- control quality ---------------------------------------------------------------------


def actuator_travel(setpoint_series: ArrayLike) -> FloatOrArray:
    """Total variation ``Σ_t |s[t+1] − s[t]|`` along axis 0, per trailing column."""
    s = np.atleast_1d(_arr(setpoint_series))
    return _out(np.sum(np.abs(np.diff(s, axis=0)), axis=0))


def setpoint_changes_per_hour(
    setpoint_series: ArrayLike, step_s: float, tol: float = 1e-6
) -> FloatOrArray:
    """Number of steps with ``|Δs| > tol``, divided by the run's duration ``n · step_s`` (h)."""
    s = np.atleast_1d(_arr(setpoint_series))
    changes = np.sum(np.abs(np.diff(s, axis=0)) > tol, axis=0).astype(np.float64)
    return _safe_ratio(changes, _hours(step_s, s.shape[0]))


def computational_time_ratio(compute_s: ArrayLike, control_period_s: float) -> float:
    """Mean compute time per step (one value or a series, s) / control period (BOPTEST)."""
    if not control_period_s > 0.0:
        raise ValueError(f"control_period_s must be positive, got {control_period_s}")
    c = _arr(compute_s)
    return math.nan if c.size == 0 else float(np.mean(c)) / control_period_s


# --- twin quality: y measured, ŷ predicted, all elements pooled ---------------------------


def _residuals(
    measured: ArrayLike, predicted: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Flattened ``y`` and ``y − ŷ`` after broadcasting the two together."""
    y, y_hat = np.broadcast_arrays(_arr(measured), _arr(predicted))
    return y.ravel(), (y - y_hat).ravel()


def median_abs_error(measured: ArrayLike, predicted: ArrayLike) -> float:
    """Median of ``|y − ŷ|`` over all elements."""
    r = _residuals(measured, predicted)[1]
    return math.nan if r.size == 0 else float(np.median(np.abs(r)))


def p95_abs_error(measured: ArrayLike, predicted: ArrayLike) -> float:
    """95th percentile (linear interpolation) of ``|y − ŷ|`` over all elements."""
    r = _residuals(measured, predicted)[1]
    return math.nan if r.size == 0 else float(np.percentile(np.abs(r), 95.0))


def mape_percent(measured: ArrayLike, predicted: ArrayLike, eps: float = 1e-9) -> float:
    """Mean absolute percentage error ``mean(|y − ŷ| / |y|) × 100``; ``|y| ≤ eps`` left out."""
    y, r = _residuals(measured, predicted)
    keep = np.abs(y) > eps
    return float(np.mean(np.abs(r[keep] / y[keep]))) * 100.0 if np.any(keep) else math.nan


def cv_rmse_percent(measured: ArrayLike, predicted: ArrayLike, p: int = 1) -> float:
    """Coefficient of variation of the RMSE, ASHRAE Guideline 14, %.

    ``CV(RMSE) = sqrt(Σ(y − ŷ)² / (n − p)) / ȳ × 100`` with ``p`` model parameters
    (Guideline 14 uses p = 1 for calibrated simulation). NaN if ``n ≤ p`` or ``ȳ = 0``.
    """
    y, r = _residuals(measured, predicted)
    if y.size <= p or (y_mean := float(np.mean(y))) == 0.0:
        return math.nan
    return math.sqrt(float(np.sum(r * r)) / (y.size - p)) / y_mean * 100.0


def nmbe_percent(measured: ArrayLike, predicted: ArrayLike, p: int = 1) -> float:
    """Normalised mean bias error, ASHRAE Guideline 14, %.

    ``NMBE = Σ(y − ŷ) / ((n − p) · ȳ) × 100`` with y measured and ŷ predicted, so a positive
    NMBE means the model *under*-predicts. NaN if ``n ≤ p`` or ``ȳ = 0``.
    """
    y, r = _residuals(measured, predicted)
    if y.size <= p or (y_mean := float(np.mean(y))) == 0.0:
        return math.nan
    return float(np.sum(r)) / ((y.size - p) * y_mean) * 100.0


# --- the run report ----------------------------------------------------------------------


@dataclass(frozen=True)
class KpiReport:
    """KPIs of one run: energies in kWh, water in L, temperatures in °C, degree-hours in K·h.

    ``actuator_travel`` and ``setpoint_changes_per_hour`` are keyed by the setpoint name
    without its ``sp.`` prefix (e.g. ``"crah_supply_air_temp_c"``).
    """

    duration_h: float
    it_kwh: float
    cooling_kwh: float
    chiller_kwh: float
    crah_fan_kwh: float
    pump_kwh: float
    tower_fan_kwh: float
    power_chain_loss_kwh: float
    lighting_aux_kwh: float
    facility_kwh: float
    pue: float
    cooling_ratio: float
    water_l: float
    wue_l_per_kwh: float
    co2_kg: float
    violation_kh_above_27: float
    violation_kh_above_32: float
    max_inlet_c: float
    min_inlet_c: float
    max_rate_c_per_15min: float
    rci_hi_percent: float
    actuator_travel: dict[str, float] = field(default_factory=dict)
    setpoint_changes_per_hour: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.duration_h >= 0.0:
            raise ValueError(f"duration_h must be non-negative, got {self.duration_h}")

    def to_dict(self) -> dict[str, JsonFloat | dict[str, JsonFloat]]:
        """Plain Python floats (NaN and ±inf become ``None``), ready for ``json.dumps``."""

        def clean(v: float) -> JsonFloat:
            return float(v) if math.isfinite(v) else None

        return {
            k: {str(n): clean(x) for n, x in v.items()} if isinstance(v, dict) else clean(v)
            for k, v in asdict(self).items()
        }


def rack_inlet_columns(frame: pd.DataFrame) -> list[str]:
    """Names of the ``rack_inlet_c.<pod>.<rack>`` columns, in frame order."""
    return [str(c) for c in frame.columns if str(c).startswith(RACK_INLET_PREFIX)]


def setpoint_columns(frame: pd.DataFrame) -> list[str]:
    """Names of the ``sp.<name>`` setpoint columns, in frame order."""
    return [str(c) for c in frame.columns if str(c).startswith(SETPOINT_PREFIX)]


def compute_kpis(
    frame: pd.DataFrame,
    step_s: float,
    carbon_intensity_kg_per_kwh: float | NDArray[np.float64] = 0.4,
) -> KpiReport:
    """Every KPI of a plant log with one row per ``step_s`` seconds.

    Columns: :data:`REQUIRED_COLUMNS`, at least one ``rack_inlet_c.<pod>.<rack>``, optional
    ``economiser_power_kw`` (0 when absent) and ``sp.*`` setpoints. Cooling energy is chillers
    + CRAH fans + CHW and CW pumps + tower fans + economiser. The carbon intensity is a scalar
    or a series of ``len(frame)`` values. Raises ``ValueError`` naming missing columns.
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    inlet_cols = rack_inlet_columns(frame)
    if not inlet_cols:
        missing.append(f"{RACK_INLET_PREFIX}<pod>.<rack>")
    if missing:
        raise ValueError(f"KPI frame is missing required column(s): {', '.join(missing)}")
    if len(frame) == 0:
        raise ValueError("KPI frame has no rows")
    n = len(frame)

    def col(name: str) -> NDArray[np.float64]:
        return frame[name].to_numpy(dtype=np.float64) if name in frame.columns else np.zeros(n)

    def kwh(*names: str) -> float:
        return float(energy_kwh(np.sum([col(c) for c in names], axis=0), step_s))

    time_h = col("time_h")
    if n > 1 and not math.isclose(float(np.median(np.diff(time_h))), _hours(step_s), rel_tol=1e-3):
        logger.warning("time_h is not sampled every step_s = %s s", step_s)
    it, cooling, facility = kwh("it_power_kw"), kwh(*COOLING_COLUMNS), kwh("facility_power_kw")
    chain = kwh("ups_loss_kw", "pdu_loss_kw", "transformer_loss_kw")
    lighting_aux = kwh("lighting_kw", "aux_kw")
    balance = it + cooling + chain + lighting_aux
    if facility > 0.0 and abs(balance - facility) > 0.01 * facility:
        logger.warning("facility %.1f kWh != sum of subsystems %.1f kWh", facility, balance)
    water_l = float(np.sum(col("water_use_kg_s"))) * step_s
    inlet = frame[inlet_cols].to_numpy(dtype=np.float64)
    sp_cols = setpoint_columns(frame)
    sp = frame[sp_cols].to_numpy(dtype=np.float64).reshape(n, len(sp_cols))
    names = [c.removeprefix(SETPOINT_PREFIX) for c in sp_cols]
    travel = np.atleast_1d(actuator_travel(sp))
    changes = np.atleast_1d(setpoint_changes_per_hour(sp, step_s))
    return KpiReport(
        duration_h=_hours(step_s, n),
        it_kwh=it,
        cooling_kwh=cooling,
        chiller_kwh=kwh("chiller_power_kw"),
        crah_fan_kwh=kwh("crah_fan_power_kw"),
        pump_kwh=kwh("chw_pump_power_kw", "cw_pump_power_kw"),
        tower_fan_kwh=kwh("tower_fan_power_kw"),
        power_chain_loss_kwh=chain,
        lighting_aux_kwh=lighting_aux,
        facility_kwh=facility,
        pue=float(pue(facility, it)),
        cooling_ratio=float(cooling_ratio(cooling, it)),
        water_l=water_l,
        wue_l_per_kwh=float(wue_l_per_kwh(water_l, it)),
        co2_kg=float(co2_kg(col("facility_power_kw"), carbon_intensity_kg_per_kwh, step_s)),
        violation_kh_above_27=violation_degree_hours(inlet, step_s, ASHRAE_RECOMMENDED_MAX_C),
        violation_kh_above_32=violation_degree_hours(inlet, step_s, ASHRAE_A1_ALLOWABLE_MAX_C),
        max_inlet_c=max_inlet_c(inlet),
        min_inlet_c=float(np.min(inlet)),
        max_rate_c_per_15min=max_rate_of_change_c_per_15min(inlet, step_s),
        rci_hi_percent=rci_hi_percent(inlet),
        actuator_travel={k: float(v) for k, v in zip(names, travel, strict=True)},
        setpoint_changes_per_hour={k: float(v) for k, v in zip(names, changes, strict=True)},
    )

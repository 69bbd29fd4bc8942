"""Electric chillers: the EnergyPlus/DOE-2 ``Chiller:Electric:EIR`` model, staging and the
minimum on/off/restart-delay logic of a chiller plant.

Performance (EnergyPlus Engineering Reference, "Electric Chiller Model Based on Fluid
Temperature Differences" / ``Chiller:Electric:EIR``)::

    CAPFT   = c0 + c1 x + c2 x² + c3 y + c4 y² + c5 x y      (x = T_chw,leave, y = T_cw,enter)
    EIRFT   = same biquadratic form
    EIRFPLR = d0 + d1 PLR + d2 PLR²
    Q_avail = Q_ref · cap_multiplier · CAPFT
    PLR     = clip(load / Q_avail, 0, PLR_max)
    P       = Q_avail / COP_ref · EIRFT · EIRFPLR(max(PLR, min_plr)) · eir_multiplier

Curve inputs are clamped to the curve's validity range before evaluation, as EnergyPlus
does. Below ``min_plr`` the chiller false-loads (hot-gas bypass): power is evaluated at
``min_plr``. The condenser rejects the heat removed from the chilled water plus all the
compressor power, ``Q_cond = Q_met + P`` — an exact energy balance (EnergyPlus's separate
"false load" term is not added: the bypassed refrigerant heat is already inside ``P``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike, NDArray

logger = logging.getLogger(__name__)

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]

# DOE-2 centrifugal chiller, reference COP 5.50 (EnergyPlus dataset Chillers.idf / DOE-2.1E).
DOE2_CENTRIFUGAL_CAPFT = (0.257896, 0.0389016, -0.00021708, 0.0468684, -0.00094284, -0.00034344)
DOE2_CENTRIFUGAL_EIRFT = (0.933884, -0.058212, 0.00450036, 0.00243, 0.000486, -0.001215)
DOE2_CENTRIFUGAL_EIRFPLR = (0.222903, 0.313387, 0.46371)


def _check_range(name: str, bounds: tuple[float, float]) -> None:
    if not bounds[0] < bounds[1]:
        raise ValueError(f"{name} must be an increasing (min, max) pair, got {bounds}")


@dataclass(frozen=True)
class ChillerCurves:
    """Performance curves of ``Chiller:Electric:EIR`` with their validity ranges."""

    capft: tuple[float, ...] = DOE2_CENTRIFUGAL_CAPFT
    eirft: tuple[float, ...] = DOE2_CENTRIFUGAL_EIRFT
    eirfplr: tuple[float, ...] = DOE2_CENTRIFUGAL_EIRFPLR
    ref_chw_leave_c: float = 6.67
    ref_cw_enter_c: float = 29.4
    chw_leave_range_c: tuple[float, float] = (5.0, 10.0)
    """Validity range of x (chilled-water leaving temperature)."""
    cw_enter_range_c: tuple[float, float] = (24.0, 35.0)
    """Validity range of y (condenser-water entering temperature)."""
    plr_range: tuple[float, float] = (0.0, 1.0)
    """Validity range of the EIRFPLR input; the upper bound is the maximum PLR."""

    def __post_init__(self) -> None:
        if len(self.capft) != 6 or len(self.eirft) != 6:
            raise ValueError("capft and eirft need 6 biquadratic coefficients each")
        if len(self.eirfplr) != 3:
            raise ValueError("eirfplr needs 3 quadratic coefficients")
        _check_range("chw_leave_range_c", self.chw_leave_range_c)
        _check_range("cw_enter_range_c", self.cw_enter_range_c)
        _check_range("plr_range", self.plr_range)
        if self.plr_range[0] < 0.0:
            raise ValueError("plr_range must not start below 0")


@dataclass(frozen=True)
class ChillerParams:
    """One chiller. ``eir_multiplier`` > 1 models condenser fouling or a degraded machine
    (a hidden parameter of the plant); ``cap_multiplier`` scales capacity."""

    ref_capacity_kw: float = 700.0
    ref_cop: float = 5.5
    curves: ChillerCurves = field(default_factory=ChillerCurves)
    eir_multiplier: float = 1.0
    cap_multiplier: float = 1.0
    min_plr: float = 0.1
    """Minimum unloading ratio: below it the chiller false-loads (hot-gas bypass)."""

    def __post_init__(self) -> None:
        if self.ref_capacity_kw <= 0.0:
            raise ValueError("ref_capacity_kw must be positive")
        if self.ref_cop <= 0.0:
            raise ValueError("ref_cop must be positive")
        if self.eir_multiplier <= 0.0 or self.cap_multiplier <= 0.0:
            raise ValueError("eir_multiplier and cap_multiplier must be positive")
        if not 0.0 <= self.min_plr < self.curves.plr_range[1]:
            raise ValueError("min_plr must lie in [0, max PLR)")


@dataclass(frozen=True)
class ChillerOperatingPoint:
    """Steady operating point of one chiller (arrays broadcast from the inputs)."""

    available_capacity_kw: FloatArray
    plr: FloatArray
    """Part-load ratio met load / available capacity (before false loading)."""
    power_kw: FloatArray
    cop: FloatArray
    """Met load / power; 0 when the chiller is off."""
    condenser_heat_kw: FloatArray
    """Heat rejected to the condenser water: met_load_kw + power_kw."""
    met_load_kw: FloatArray
    """Load actually removed from the chilled water, min(load, available capacity)."""


def _biquadratic(coeffs: tuple[float, ...], x: FloatArray, y: FloatArray) -> FloatArray:
    c0, c1, c2, c3, c4, c5 = coeffs
    return np.asarray(c0 + c1 * x + c2 * x * x + c3 * y + c4 * y * y + c5 * x * y, np.float64)


def _clamped_xy(
    curves: ChillerCurves, chw_leave_c: ArrayLike, cw_enter_c: ArrayLike
) -> tuple[FloatArray, FloatArray]:
    x = np.clip(np.asarray(chw_leave_c, dtype=np.float64), *curves.chw_leave_range_c)
    y = np.clip(np.asarray(cw_enter_c, dtype=np.float64), *curves.cw_enter_range_c)
    return x, y


def capft(curves: ChillerCurves, chw_leave_c: ArrayLike, cw_enter_c: ArrayLike) -> FloatArray:
    """Capacity modifier vs. temperatures (1.0 at the reference point); inputs clamped."""
    x, y = _clamped_xy(curves, chw_leave_c, cw_enter_c)
    return _biquadratic(curves.capft, x, y)


def eirft(curves: ChillerCurves, chw_leave_c: ArrayLike, cw_enter_c: ArrayLike) -> FloatArray:
    """EIR modifier vs. temperatures (1.0 at the reference point); inputs clamped."""
    x, y = _clamped_xy(curves, chw_leave_c, cw_enter_c)
    return _biquadratic(curves.eirft, x, y)


def eirfplr(curves: ChillerCurves, plr: ArrayLike) -> FloatArray:
    """EIR (power) modifier vs. part-load ratio (1.0 at PLR 1); input clamped."""
    p = np.clip(np.asarray(plr, dtype=np.float64), *curves.plr_range)
    d0, d1, d2 = curves.eirfplr
    return np.asarray(d0 + d1 * p + d2 * p * p, dtype=np.float64)


def chiller_power_kw(
    params: ChillerParams,
    load_kw: ArrayLike,
    chw_leave_c: ArrayLike,
    cw_enter_c: ArrayLike,
    *,
    cap_scale: ArrayLike = 1.0,
    eir_scale: ArrayLike = 1.0,
) -> ChillerOperatingPoint:
    """Operating point of one chiller for an evaporator load at given water temperatures.

    Zero (or negative) load means the chiller is off: zero power and zero condenser heat.
    ``cap_scale`` and ``eir_scale`` multiply the params' multipliers element-wise (per-site,
    per-chiller hidden deviations in the plant).
    """
    curves = params.curves
    load = np.maximum(np.asarray(load_kw, dtype=np.float64), 0.0)
    capacity = (
        params.ref_capacity_kw
        * params.cap_multiplier
        * np.asarray(cap_scale, dtype=np.float64)
        * capft(curves, chw_leave_c, cw_enter_c)
    )
    capacity = np.maximum(capacity, 1e-9)
    load, capacity = np.broadcast_arrays(load, capacity)
    plr = np.clip(load / capacity, 0.0, curves.plr_range[1])
    running = load > 0.0
    eir_plr = eirfplr(curves, np.maximum(plr, params.min_plr))
    power_on = (capacity / params.ref_cop * eirft(curves, chw_leave_c, cw_enter_c) * eir_plr) * (
        params.eir_multiplier * np.asarray(eir_scale, dtype=np.float64)
    )
    power = np.where(running, power_on, 0.0)
    met = np.minimum(load, capacity * curves.plr_range[1])
    cop = np.divide(met, power, out=np.zeros_like(met), where=power > 0.0)
    return ChillerOperatingPoint(
        available_capacity_kw=np.asarray(capacity, dtype=np.float64),
        plr=np.asarray(plr, dtype=np.float64),
        power_kw=np.asarray(power, dtype=np.float64),
        cop=np.asarray(cop, dtype=np.float64),
        condenser_heat_kw=np.asarray(met + power, dtype=np.float64),
        met_load_kw=np.asarray(met, dtype=np.float64),
    )


def stage_chillers(
    load_kw: ArrayLike,
    available_capacity_kw_per_chiller: ArrayLike,
    n_available: ArrayLike,
    stage_up_frac: float = 0.9,
) -> IntArray:
    """Number of chillers to run so each carries at most ``stage_up_frac`` of its capacity.

    At least one when load > 0 (and one is available), never more than ``n_available``;
    zero when there is no load.
    """
    if not 0.0 < stage_up_frac <= 1.0:
        raise ValueError("stage_up_frac must lie in (0, 1]")
    load = np.maximum(np.asarray(load_kw, dtype=np.float64), 0.0)
    per_chiller = np.maximum(
        np.asarray(available_capacity_kw_per_chiller, dtype=np.float64) * stage_up_frac, 1e-9
    )
    n_avail = np.maximum(np.asarray(n_available, dtype=np.int64), 0)
    needed = np.ceil(load / per_chiller)
    n = np.clip(needed, 1.0, np.maximum(n_avail, 1).astype(np.float64))
    return np.asarray(np.where((load > 0.0) & (n_avail > 0), n, 0.0), dtype=np.int64)


@dataclass(frozen=True)
class StagingParams:
    """Anti-short-cycling limits of a chiller plant's staging."""

    min_on_time_s: float = 900.0
    min_off_time_s: float = 300.0
    restart_delay_s: float = 600.0
    """After a trip the chiller cannot restart until this long has passed."""

    def __post_init__(self) -> None:
        if min(self.min_on_time_s, self.min_off_time_s, self.restart_delay_s) < 0.0:
            raise ValueError("staging times must be non-negative")


@dataclass
class ChillerStagingState:
    """Per-site, per-chiller staging state; every array has shape (..., n_chillers)."""

    on: BoolArray
    time_in_state_s: FloatArray
    """Time since the chiller last switched on or off."""
    restart_timer_s: FloatArray
    """Remaining restart lock-out after a trip (0 when free to start)."""

    @classmethod
    def all_off(cls, n_chillers: int, batch_shape: tuple[int, ...] = ()) -> ChillerStagingState:
        """Every chiller off for a long time and free to start."""
        shape = (*batch_shape, n_chillers)
        return cls(
            on=np.zeros(shape, dtype=np.bool_),
            time_in_state_s=np.full(shape, np.inf),
            restart_timer_s=np.zeros(shape),
        )


def _first_k(mask: BoolArray, k: IntArray) -> BoolArray:
    """The first ``k`` (per batch element) True entries of ``mask`` along the last axis."""
    rank = np.cumsum(mask, axis=-1)
    return np.asarray(mask & (rank <= k[..., np.newaxis]), dtype=np.bool_)


def update_staging(
    state: ChillerStagingState,
    requested_on: ArrayLike,
    available: ArrayLike,
    dt_s: float,
    params: StagingParams,
) -> ChillerStagingState:
    """Advance staging by ``dt_s`` toward ``requested_on`` chillers running (shape (...)).

    Order of rules: clocks advance by ``dt_s``; a running chiller that is no longer
    ``available`` (shape (..., n)) trips off at once and its restart timer is set; a chiller
    inside its minimum on time stays on; chillers then switch off, lag (highest index)
    first, down to the request; chillers that are available, past their minimum off time
    and past their restart delay then start, lead (lowest index) first, up to the request.
    The request may therefore be missed while timers run. Returns a new state.
    """
    avail = np.asarray(available, dtype=np.bool_)
    on, avail = np.broadcast_arrays(state.on, avail)
    n_chillers = on.shape[-1]
    request = np.clip(np.asarray(requested_on, dtype=np.int64), 0, n_chillers)
    request = np.broadcast_to(request, on.shape[:-1])
    time_in_state = state.time_in_state_s + dt_s
    restart_timer = np.maximum(state.restart_timer_s - dt_s, 0.0)

    tripped = on & ~avail
    restart_timer = np.where(tripped, params.restart_delay_s, restart_timer)
    still_on = on & avail
    locked_on = still_on & (time_in_state < params.min_on_time_s)
    free_on = still_on & ~locked_on
    n_keep = np.maximum(request - locked_on.sum(axis=-1), 0)
    # Keep the lowest-index free chillers, so the lag (highest index) ones stop first.
    new_on = locked_on | _first_k(free_on, n_keep)

    startable = ~on & avail & (time_in_state >= params.min_off_time_s) & (restart_timer <= 0.0)
    n_start = np.maximum(request - new_on.sum(axis=-1), 0)
    new_on = new_on | _first_k(startable, n_start)

    switched = new_on != state.on
    return ChillerStagingState(
        on=np.asarray(new_on, dtype=np.bool_),
        time_in_state_s=np.asarray(np.where(switched, 0.0, time_in_state), dtype=np.float64),
        restart_timer_s=np.asarray(restart_timer, dtype=np.float64),
    )

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

import math
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike, NDArray

from physics.compiled import as_record, elementwise, jit, record_type

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


ChillerCurvesRecord = record_type(ChillerCurves)
ChillerParamsRecord = record_type(ChillerParams)


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


@jit
def biquadratic(c: tuple[float, ...], x: float, y: float) -> float:
    """c0 + c1 x + c2 x² + c3 y + c4 y² + c5 x y."""
    return c[0] + c[1] * x + c[2] * x * x + c[3] * y + c[4] * y * y + c[5] * x * y


@jit
def capft_one(curves: ChillerCurves, chw_leave_c: float, cw_enter_c: float) -> float:
    """Capacity modifier vs. temperatures (1.0 at the reference point); inputs clamped."""
    lo_x, hi_x = curves.chw_leave_range_c
    lo_y, hi_y = curves.cw_enter_range_c
    x = min(max(chw_leave_c, lo_x), hi_x)
    y = min(max(cw_enter_c, lo_y), hi_y)
    return biquadratic(curves.capft, x, y)


@jit
def eirft_one(curves: ChillerCurves, chw_leave_c: float, cw_enter_c: float) -> float:
    """EIR modifier vs. temperatures (1.0 at the reference point); inputs clamped."""
    lo_x, hi_x = curves.chw_leave_range_c
    lo_y, hi_y = curves.cw_enter_range_c
    x = min(max(chw_leave_c, lo_x), hi_x)
    y = min(max(cw_enter_c, lo_y), hi_y)
    return biquadratic(curves.eirft, x, y)


@jit
def eirfplr_one(curves: ChillerCurves, plr: float) -> float:
    """EIR (power) modifier vs. part-load ratio (1.0 at PLR 1); input clamped."""
    lo, hi = curves.plr_range
    x = min(max(plr, lo), hi)
    d = curves.eirfplr
    return d[0] + d[1] * x + d[2] * x * x


@jit
def capacity(p: ChillerParams, chw_leave_c: float, cw_enter_c: float, cap_scale: float) -> float:
    """Available capacity Q_ref · cap_multiplier · cap_scale · CAPFT (kW)."""
    return (
        p.ref_capacity_kw
        * p.cap_multiplier
        * cap_scale
        * capft_one(p.curves, chw_leave_c, cw_enter_c)
    )


@jit
def operating_point(
    p: ChillerParams,
    load_kw: float,
    chw_leave_c: float,
    cw_enter_c: float,
    cap_scale: float,
    eir_scale: float,
) -> tuple[float, float, float, float, float, float]:
    """(capacity, PLR, power, COP, condenser heat, met load) of one chiller for a load.

    Zero (or negative) load means the chiller is off: zero power and zero condenser heat.
    """
    curves = p.curves
    load = max(load_kw, 0.0)
    cap = max(capacity(p, chw_leave_c, cw_enter_c, cap_scale), 1e-9)
    plr = min(max(load / cap, 0.0), curves.plr_range[1])
    power = 0.0
    if load > 0.0:
        power = (
            cap
            / p.ref_cop
            * eirft_one(curves, chw_leave_c, cw_enter_c)
            * eirfplr_one(curves, max(plr, p.min_plr))
        ) * (p.eir_multiplier * eir_scale)
    met = min(load, cap * curves.plr_range[1])
    cop = met / power if power > 0.0 else 0.0
    return cap, plr, power, cop, met + power, met


def capft(curves: ChillerCurves, chw_leave_c: ArrayLike, cw_enter_c: ArrayLike) -> FloatArray:
    """Capacity modifier vs. temperatures (1.0 at the reference point); inputs clamped."""
    return np.asarray(elementwise(capft_one, as_record(curves), chw_leave_c, cw_enter_c))


def eirft(curves: ChillerCurves, chw_leave_c: ArrayLike, cw_enter_c: ArrayLike) -> FloatArray:
    """EIR modifier vs. temperatures (1.0 at the reference point); inputs clamped."""
    return np.asarray(elementwise(eirft_one, as_record(curves), chw_leave_c, cw_enter_c))


def eirfplr(curves: ChillerCurves, plr: ArrayLike) -> FloatArray:
    """EIR (power) modifier vs. part-load ratio (1.0 at PLR 1); input clamped."""
    return np.asarray(elementwise(eirfplr_one, as_record(curves), plr))


def chiller_power_kw(
    params: ChillerParams,
    load_kw: ArrayLike,
    chw_leave_c: ArrayLike,
    cw_enter_c: ArrayLike,
    *,
    cap_scale: ArrayLike = 1.0,
    eir_scale: ArrayLike = 1.0,
) -> ChillerOperatingPoint:
    """Operating point of one chiller for an evaporator load at given water temperatures
    (:func:`operating_point` element-wise). ``cap_scale`` and ``eir_scale`` multiply the
    params' multipliers (per-site, per-chiller hidden deviations in the plant).
    """
    cap, plr, power, cop, heat, met = elementwise(
        operating_point,
        as_record(params),
        load_kw,
        chw_leave_c,
        cw_enter_c,
        cap_scale,
        eir_scale,
        n_out=6,
    )
    return ChillerOperatingPoint(
        available_capacity_kw=cap,
        plr=plr,
        power_kw=power,
        cop=cop,
        condenser_heat_kw=heat,
        met_load_kw=met,
    )


@jit
def stage_request(
    load_kw: float, capacity_per_chiller_kw: float, n_available: int, stage_up_frac: float
) -> int:
    """Chillers to run so each carries at most ``stage_up_frac`` of its capacity: at least
    one when load > 0 and one is available, never more than ``n_available``."""
    if load_kw <= 0.0 or n_available <= 0:
        return 0
    per_chiller = max(capacity_per_chiller_kw * stage_up_frac, 1e-9)
    return int(min(max(math.ceil(load_kw / per_chiller), 1.0), float(n_available)))


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
    n_avail = np.asarray(n_available, dtype=np.float64)
    return np.asarray(
        elementwise(
            lambda load, cap, n: stage_request(load, cap, int(n), stage_up_frac),
            load_kw,
            available_capacity_kw_per_chiller,
            n_avail,
        ),
        dtype=np.int64,
    )


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


StagingParamsRecord = record_type(StagingParams)


@jit
def advance_staging(
    p: StagingParams,
    on: BoolArray,
    time_in_state_s: FloatArray,
    restart_timer_s: FloatArray,
    available: BoolArray,
    requested_on: int,
    dt_s: float,
) -> None:
    """Advance one plant's staging (arrays of its chillers) by ``dt_s`` in place.

    Order of rules: clocks advance by ``dt_s``; a running chiller that is no longer
    ``available`` trips off at once and its restart timer is set; a chiller inside its
    minimum on time stays on; chillers then switch off, lag (highest index) first, down to
    the request; chillers that are available, past their minimum off time and past their
    restart delay then start, lead (lowest index) first, up to the request. The request may
    therefore be missed while timers run.
    """
    # Sets of chillers as bits of an integer (no arrays: the plant's step allocates none).
    n = on.shape[0]
    request = min(max(requested_on, 0), n)
    locked = free = 0
    n_locked = 0
    for k in range(n):
        time_in_state_s[k] += dt_s
        restart_timer_s[k] = max(restart_timer_s[k] - dt_s, 0.0)
        if on[k] and not available[k]:
            restart_timer_s[k] = p.restart_delay_s
        elif on[k] and time_in_state_s[k] < p.min_on_time_s:
            locked |= 1 << k
            n_locked += 1
        elif on[k]:
            free |= 1 << k
    new, n_new = locked, n_locked
    keep = max(request - n_locked, 0)  # the lowest-index free ones: lag chillers stop first
    for k in range(n):
        if (free >> k) & 1 and keep > 0:
            new |= 1 << k
            n_new += 1
            keep -= 1
    start = max(request - n_new, 0)
    for k in range(n):
        startable = (
            not on[k]
            and available[k]
            and time_in_state_s[k] >= p.min_off_time_s
            and restart_timer_s[k] <= 0.0
        )
        if startable and start > 0:
            new |= 1 << k
            start -= 1
    for k in range(n):
        running = (new >> k) & 1 == 1
        if running != on[k]:
            time_in_state_s[k] = 0.0
        on[k] = running


def update_staging(
    state: ChillerStagingState,
    requested_on: ArrayLike,
    available: ArrayLike,
    dt_s: float,
    params: StagingParams,
) -> ChillerStagingState:
    """Advance staging by ``dt_s`` toward ``requested_on`` chillers running (shape (...));
    ``available`` has shape (..., n). :func:`advance_staging` for each plant; a new state."""
    avail = np.asarray(available, dtype=np.bool_)
    on, avail = np.broadcast_arrays(state.on, avail)
    n_chillers = on.shape[-1]
    request = np.broadcast_to(np.asarray(requested_on, dtype=np.int64), on.shape[:-1])
    new_on = np.array(on, dtype=np.bool_).reshape(-1, n_chillers)
    clock = (
        np.broadcast_to(state.time_in_state_s, on.shape).astype(np.float64).reshape(-1, n_chillers)
    )
    restart = (
        np.broadcast_to(state.restart_timer_s, on.shape).astype(np.float64).reshape(-1, n_chillers)
    )
    flat_avail = np.ascontiguousarray(avail).reshape(-1, n_chillers)
    flat_request = request.reshape(-1)
    record = as_record(params)
    for b in range(new_on.shape[0]):
        advance_staging(
            record, new_on[b], clock[b], restart[b], flat_avail[b], int(flat_request[b]), dt_s
        )
    return ChillerStagingState(
        on=new_on.reshape(on.shape),
        time_in_state_s=clock.reshape(on.shape),
        restart_timer_s=restart.reshape(on.shape),
    )

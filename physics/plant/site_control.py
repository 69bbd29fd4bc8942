"""Setpoint commands, the site's built-in (conventional) control, and the actuator envelope.

The site's control runs fixed setpoints and enables the waterside economiser as ASHRAE
Guideline 36 sequences it: the exchanger's leaving water is predicted from the wet bulb,
the tower's approach and the exchanger's approach, and the economiser is enabled when that
prediction is well below the chilled-water return (partial free cooling: the chillers trim
what the exchanger leaves), with a minimum on/off time and a disable delay
(:func:`economiser_enable_step`). The same rule serves the site's control in the plant, the
fixed-setpoint and trim-and-respond baselines, and the MPC.

A :class:`SetpointCommand` carries an id and an expiry in plant time. While a command is
valid its fields win; a field it leaves out, or any field once it expires, falls back to the
site's own control (fixed setpoints, as most sites run). Every applied value is clipped to
the actuator limits, and changes smaller than the dead-band are ignored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from physics import cooling_tower
from physics.compiled import as_record, jit
from physics.plant.site import SetpointLimits, SiteDefaults

FloatArray = NDArray[np.float64]
Value = float | FloatArray

SETPOINT_FIELDS: tuple[str, ...] = (
    "supply_air_c",
    "fan_speed_frac",
    "chw_supply_c",
    "cw_supply_c",
    "economiser_enable",
)
"""Writable setpoints, in the order of :meth:`Setpoints.as_matrix` columns."""


@dataclass(frozen=True)
class SetpointCommand:
    """A command from a controller: any subset of the setpoints, valid until ``expires_at_s``.

    Values may be scalars (all sites) or arrays with one value per site.
    """

    command_id: str
    expires_at_s: float
    supply_air_c: Value | None = None
    fan_speed_frac: Value | None = None
    chw_supply_c: Value | None = None
    cw_supply_c: Value | None = None
    economiser_enable: Value | None = None

    def valid_at(self, time_s: float) -> bool:
        return time_s < self.expires_at_s


@dataclass(frozen=True)
class Setpoints:
    """Applied setpoints, one value per site."""

    supply_air_c: FloatArray
    fan_speed_frac: FloatArray
    chw_supply_c: FloatArray
    cw_supply_c: FloatArray
    economiser_enable: FloatArray

    def as_matrix(self) -> FloatArray:
        """Shape (sites, 5) in :data:`SETPOINT_FIELDS` order."""
        return np.stack([getattr(self, name) for name in SETPOINT_FIELDS], axis=1)


@jit
def predicted_exchanger_leaving_c(d: SiteDefaults, wet_bulb_c: float) -> float:
    """G36's predicted economiser leaving water: the wet bulb, plus the tower's approach at
    full fan and design flow (YorkCalc at the design range), plus the exchanger's approach."""
    tower_k = cooling_tower.approach(wet_bulb_c, d.economiser_tower_range_k, 1.0, 1.0)
    return wet_bulb_c + tower_k + d.economiser_hx_approach_k


@jit
def economiser_favourable(d: SiteDefaults, wet_bulb_c: float, chw_return_c: float) -> bool:
    """Whether the exchanger would cool the return by the enable offset (no timers)."""
    leaving = predicted_exchanger_leaving_c(d, wet_bulb_c)
    return bool(leaving < chw_return_c - d.economiser_enable_offset_k)


@jit
def economiser_enable_step(
    d: SiteDefaults,
    enabled: bool,
    since_switch_s: float,
    unhelpful_s: float,
    wet_bulb_c: float,
    chw_return_c: float,
    dt_s: float,
) -> tuple[bool, float, float]:
    """The economiser's enable after ``dt_s``: (enabled, time since the last switch, time the
    exchanger has been predicted unhelpful while enabled).

    Enables once it has been off for the hold time and the predicted leaving water is the
    enable offset below the return; disables once it has been on for the hold time and the
    prediction has stayed within the disable offset of the return for the disable delay.
    (G36 compares the measured drop across the exchanger for the disable; the site's points
    have no sensor for it, so the prediction stands in.)
    """
    since = since_switch_s + dt_s
    leaving = predicted_exchanger_leaving_c(d, wet_bulb_c)
    if not enabled:
        if since >= d.economiser_hold_s and leaving < chw_return_c - d.economiser_enable_offset_k:
            return True, 0.0, 0.0
        return False, since, 0.0
    unhelpful = (
        unhelpful_s + dt_s if leaving > chw_return_c - d.economiser_disable_offset_k else 0.0
    )
    if since >= d.economiser_hold_s and unhelpful >= d.economiser_disable_delay_s:
        return False, 0.0, 0.0
    return True, since, unhelpful


@jit
def site_control(d: SiteDefaults, economiser: bool) -> tuple[float, float, float, float, float]:
    """The site's built-in control, in :data:`SETPOINT_FIELDS` order: fixed setpoints, and
    while the economiser is enabled the tower is asked for cold water."""
    cw = d.economiser_cw_supply_c if economiser else d.cw_supply_c
    return d.supply_air_c, d.fan_speed_frac, d.chw_supply_c, cw, 1.0 if economiser else 0.0


@jit
def _site_control_many(
    d: SiteDefaults, wet_bulb_c: FloatArray, chw_return_c: FloatArray
) -> FloatArray:
    out = np.empty((wet_bulb_c.shape[0], 5))
    for i in range(wet_bulb_c.shape[0]):
        eco = economiser_favourable(d, wet_bulb_c[i], chw_return_c[i])
        out[i, 0], out[i, 1], out[i, 2], out[i, 3], out[i, 4] = site_control(d, eco)
    return out


@jit
def _hold(new: float, old: float, band: float) -> float:
    return old if abs(new - old) < band else new


@jit
def resolve(
    limits: SetpointLimits,
    site: FloatArray,
    command: FloatArray,
    command_valid: bool,
    previous: FloatArray,
    has_previous: bool,
    out: FloatArray,
) -> bool:
    """Setpoints to apply now (written to ``out``, :data:`SETPOINT_FIELDS` order) and whether
    a valid command supplied any. A NaN in ``command`` means "no value" and falls back to
    the site; values are clipped to the actuator envelope, the economiser enable is a switch
    at 0.5, and changes smaller than the dead-band keep the previous value."""
    supplied = False
    for f in range(5):
        value = site[f]
        if command_valid and not math.isnan(command[f]):
            value = command[f]
            supplied = True
        out[f] = value
    out[0] = min(max(out[0], limits.supply_air_c[0]), limits.supply_air_c[1])
    out[1] = min(max(out[1], limits.fan_speed_frac[0]), limits.fan_speed_frac[1])
    out[2] = min(max(out[2], limits.chw_supply_c[0]), limits.chw_supply_c[1])
    out[3] = min(max(out[3], limits.cw_supply_c[0]), limits.cw_supply_c[1])
    out[4] = 1.0 if out[4] >= 0.5 else 0.0
    if has_previous:
        for f in (0, 2, 3):
            out[f] = _hold(out[f], previous[f], limits.deadband_c)
        out[1] = _hold(out[1], previous[1], limits.deadband_frac)
    return supplied


def command_matrix(command: SetpointCommand | None, n_sites: int) -> FloatArray:
    """A command's values as (sites, 5) in :data:`SETPOINT_FIELDS` order; NaN = not given."""
    values = np.full((n_sites, 5), np.nan)
    if command is not None:
        for f, name in enumerate(SETPOINT_FIELDS):
            given = getattr(command, name)
            if given is not None:
                values[:, f] = np.broadcast_to(np.asarray(given, dtype=np.float64), (n_sites,))
    return values


def site_setpoints(
    defaults: SiteDefaults, wet_bulb_c: FloatArray, chw_return_c: FloatArray | float | None = None
) -> Setpoints:
    """The site's built-in control at each wet bulb and chilled-water return, with the
    economiser enabled where :func:`economiser_favourable` (no timers: where the enable's
    state is not known). Without a measured return, the design return (supply + 5 K)."""
    wet = np.asarray(wet_bulb_c, dtype=np.float64)
    ret = defaults.chw_supply_c + 5.0 if chw_return_c is None else chw_return_c
    ret_flat = np.broadcast_to(np.asarray(ret, dtype=np.float64), wet.shape).ravel()
    flat = _site_control_many(
        as_record(defaults), np.ascontiguousarray(wet.ravel()), np.ascontiguousarray(ret_flat)
    )
    return Setpoints(*(flat[:, f].reshape(wet.shape) for f in range(5)))


def site_control_matrix(defaults: SiteDefaults, economiser: FloatArray) -> FloatArray:
    """The site's built-in setpoints (n, 5) for each economiser enable (1.0 = enabled)."""
    record = as_record(defaults)
    return np.array([site_control(record, bool(e > 0.5)) for e in np.ravel(economiser)])


class EconomiserEnable:
    """The G36 economiser enable of :func:`economiser_enable_step` for ``n`` sites or
    environments that a policy controls once per period (state kept between calls)."""

    def __init__(self, defaults: SiteDefaults, n: int = 1) -> None:
        self._record = as_record(defaults)
        self.reset(n, defaults.economiser_hold_s)

    def reset(self, n: int, hold_s: float | None = None) -> None:
        hold = self._record.economiser_hold_s if hold_s is None else hold_s
        self.enabled = np.zeros(n, dtype=bool)
        self._since_s = np.full(n, float(hold))
        self._unhelpful_s = np.zeros(n)

    def step(self, wet_bulb_c: FloatArray, chw_return_c: FloatArray, dt_s: float) -> FloatArray:
        """Advance by ``dt_s`` with the latest readings; 1.0 where enabled, else 0.0."""
        wet = np.broadcast_to(np.asarray(wet_bulb_c, dtype=np.float64), self.enabled.shape)
        ret = np.broadcast_to(np.asarray(chw_return_c, dtype=np.float64), self.enabled.shape)
        for i in range(self.enabled.shape[0]):
            if not (np.isfinite(wet[i]) and np.isfinite(ret[i])):
                continue  # a missing reading holds the enable as it is
            self.enabled[i], self._since_s[i], self._unhelpful_s[i] = economiser_enable_step(
                self._record,
                bool(self.enabled[i]),
                float(self._since_s[i]),
                float(self._unhelpful_s[i]),
                float(wet[i]),
                float(ret[i]),
                dt_s,
            )
        return self.enabled.astype(np.float64)


def resolve_setpoints(
    command: SetpointCommand | None,
    time_s: float,
    site: Setpoints,
    previous: Setpoints | None,
    limits: SetpointLimits,
) -> tuple[Setpoints, bool]:
    """Setpoints to apply now (one row per site, :func:`resolve` for each) and whether a
    command (rather than the site) supplied any."""
    site_rows = np.ascontiguousarray(site.as_matrix())
    n_sites = site_rows.shape[0]
    given = command_matrix(command, n_sites)
    valid = command is not None and command.valid_at(time_s)
    before = site_rows if previous is None else np.ascontiguousarray(previous.as_matrix())
    out = np.empty_like(site_rows)
    record = as_record(limits)
    supplied = False
    for b in range(n_sites):
        supplied |= resolve(
            record, site_rows[b], given[b], valid, before[b], previous is not None, out[b]
        )
    return Setpoints(*(out[:, f].copy() for f in range(5))), supplied

"""Setpoint commands, the site's built-in (conventional) control, and the actuator envelope.

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
def site_control(d: SiteDefaults, wet_bulb_c: float) -> tuple[float, float, float, float, float]:
    """The site's built-in control, in :data:`SETPOINT_FIELDS` order: fixed setpoints; in
    cool, dry weather the economiser is enabled and the tower is asked for cold water."""
    eco = wet_bulb_c <= d.chw_supply_c - d.economiser_approach_k
    cw = d.economiser_cw_supply_c if eco else d.cw_supply_c
    return d.supply_air_c, d.fan_speed_frac, d.chw_supply_c, cw, 1.0 if eco else 0.0


@jit
def _site_control_many(d: SiteDefaults, wet_bulb_c: FloatArray) -> FloatArray:
    out = np.empty((wet_bulb_c.shape[0], 5))
    for i in range(wet_bulb_c.shape[0]):
        out[i, 0], out[i, 1], out[i, 2], out[i, 3], out[i, 4] = site_control(d, wet_bulb_c[i])
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


def site_setpoints(defaults: SiteDefaults, wet_bulb_c: FloatArray) -> Setpoints:
    """The site's built-in control (:func:`site_control`) at each wet bulb."""
    wet = np.asarray(wet_bulb_c, dtype=np.float64)
    flat = _site_control_many(as_record(defaults), np.ascontiguousarray(wet.ravel()))
    return Setpoints(*(flat[:, f].reshape(wet.shape) for f in range(5)))


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

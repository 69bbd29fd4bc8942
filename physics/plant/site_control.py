"""Setpoint commands, the site's built-in (conventional) control, and the actuator envelope.

A :class:`SetpointCommand` carries an id and an expiry in plant time. While a command is
valid its fields win; a field it leaves out, or any field once it expires, falls back to the
site's own control (fixed setpoints, as most sites run). Every applied value is clipped to
the actuator limits, and changes smaller than the dead-band are ignored.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from physics.plant.site import SetpointLimits, SiteDefaults

logger = logging.getLogger(__name__)

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


def site_setpoints(defaults: SiteDefaults, wet_bulb_c: FloatArray) -> Setpoints:
    """The site's built-in control: fixed setpoints; in cool, dry weather the economiser is
    enabled and the tower is asked for cold water."""
    ones = np.ones_like(wet_bulb_c)
    eco = (wet_bulb_c <= defaults.chw_supply_c - defaults.economiser_approach_k).astype(float)
    return Setpoints(
        supply_air_c=defaults.supply_air_c * ones,
        fan_speed_frac=defaults.fan_speed_frac * ones,
        chw_supply_c=defaults.chw_supply_c * ones,
        cw_supply_c=np.where(eco > 0, defaults.economiser_cw_supply_c, defaults.cw_supply_c) * ones,
        economiser_enable=eco,
    )


def _apply_deadband(new: FloatArray, old: FloatArray, band: float) -> FloatArray:
    return np.where(np.abs(new - old) < band, old, new)


def resolve_setpoints(
    command: SetpointCommand | None,
    time_s: float,
    site: Setpoints,
    previous: Setpoints | None,
    limits: SetpointLimits,
) -> tuple[Setpoints, bool]:
    """Setpoints to apply now and whether a command (rather than the site) supplied any.

    NaN values in a command mean "no value" for that site and fall back to the site control.
    """
    active = command is not None and command.valid_at(time_s)
    supplied = False
    resolved: dict[str, FloatArray] = {}
    for name in SETPOINT_FIELDS:
        value = getattr(site, name)
        if active:
            assert command is not None
            given = getattr(command, name)
            if given is not None:
                arr = np.broadcast_to(np.asarray(given, dtype=np.float64), value.shape)
                finite = np.isfinite(arr)
                supplied = supplied or bool(finite.any())
                value = np.where(finite, arr, value)
        resolved[name] = value
    bounds = {
        "supply_air_c": limits.supply_air_c,
        "fan_speed_frac": limits.fan_speed_frac,
        "chw_supply_c": limits.chw_supply_c,
        "cw_supply_c": limits.cw_supply_c,
    }
    for name, (low, high) in bounds.items():
        resolved[name] = np.clip(resolved[name], low, high)
    resolved["economiser_enable"] = (resolved["economiser_enable"] >= 0.5).astype(float)
    if previous is not None:
        for name in ("supply_air_c", "chw_supply_c", "cw_supply_c"):
            resolved[name] = _apply_deadband(
                resolved[name], getattr(previous, name), limits.deadband_c
            )
        resolved["fan_speed_frac"] = _apply_deadband(
            resolved["fan_speed_frac"], previous.fan_speed_frac, limits.deadband_frac
        )
    return Setpoints(**resolved), supplied

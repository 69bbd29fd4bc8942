"""Handing control back to the site at safe rates.

When the live policy leaves control without a watchdog trip (an operator's rollback to the
site, or the watchdog refusing a changed artifact), the setpoints it left in force may lie
far from the site's own (chilled water at 12 °C against the site's 7 °C). Letting the last
command expire would make the site jump there in one period: a step of the chillers' load
and the facility's power. Instead the live controller keeps writing for a while and moves
each continuous setpoint towards the site's by at most the shield's step limit per period
(:func:`step_towards`); the economiser takes the site's state at once. Once every setpoint
is at the site's, the controller stops writing and the site's own control carries on from
where the hand-back left it.

The hand-back is skipped, control going back at once, when a rack inlet is over the limit
(colder water and more air at once is then what the hall needs) or the data are not fresh
(nothing to judge the inlets by). A watchdog trip always hands back at once: the watchdog
judged writing unsafe.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from control.shield import CONTINUOUS_FIELDS, ECONOMISER, ShieldConfig
from physics.plant.site_control import SETPOINT_FIELDS

DEFAULT_INLET_LIMIT_C = 27.0
"""Above this (ASHRAE's recommended maximum) a hand-back goes at once."""


def step_towards(
    last: Mapping[str, float], target: Mapping[str, float], config: ShieldConfig
) -> dict[str, float]:
    """One period of the hand-back: every continuous setpoint from ``last`` towards
    ``target`` (the site's setpoints) by at most its step limit, inside the envelope; the
    economiser at the target's state."""
    out: dict[str, float] = {}
    for name in SETPOINT_FIELDS:
        goal = float(target[name])
        if name == ECONOMISER:
            out[name] = 1.0 if goal >= 0.5 else 0.0
            continue
        low, high = config.envelope(name)
        goal = min(max(goal, low), high)
        now = float(last[name])
        if not math.isfinite(now):
            out[name] = goal
            continue
        step = config.step_limit(name)
        out[name] = min(max(goal, now - step), now + step)
    return out


def arrived(values: Mapping[str, float], target: Mapping[str, float], config: ShieldConfig) -> bool:
    """Whether every setpoint of ``values`` is at the site's (``target``, in the envelope)."""
    for name in CONTINUOUS_FIELDS:
        low, high = config.envelope(name)
        if abs(float(values[name]) - min(max(float(target[name]), low), high)) > 1e-9:
            return False
    return (values[ECONOMISER] >= 0.5) == (target[ECONOMISER] >= 0.5)


def describe(last: Mapping[str, float], target: Mapping[str, float]) -> str:
    """``chw_supply_c 12.00 -> 7.00; ...`` for the fields that differ."""
    parts = [
        f"{name} {float(last[name]):.2f} -> {float(target[name]):.2f}"
        for name in CONTINUOUS_FIELDS
        if abs(float(last[name]) - float(target[name])) > 1e-9
    ]
    return "; ".join(parts) or "already at the site's setpoints"

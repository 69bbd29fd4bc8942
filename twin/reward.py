"""Rewards as callable classes returning ``(value, terms)``; the terms go into ``info``.

The default trades cooling energy against rack-inlet temperatures above the ASHRAE
recommended limit (27 °C): every K·h above it costs as much as ``violation_kwh_per_kh``
kWh of cooling energy, plus a steeper price above the allowable limit (32 °C for A1).
Inputs may be scalars or arrays (one per environment).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class CoolingEnergyReward:
    """``-(cooling kWh + price · violation K·h) / normaliser`` for one control period.

    ``inlet_c`` holds the rack-inlet temperatures of the period with racks on the last axis;
    the violation is the sum over racks of the excess above ``recommended_c`` (and, at
    ``allowable_price_mult`` times the price, above ``allowable_c``) times the period.
    """

    recommended_c: float = 27.0
    allowable_c: float = 32.0
    violation_kwh_per_kh: float = 50.0
    allowable_price_mult: float = 10.0
    normaliser_kwh: float = 25.0
    """Scales the reward to order one (about the cooling energy of one 5-min period)."""

    def __post_init__(self) -> None:
        if self.allowable_c <= self.recommended_c:
            raise ValueError("allowable_c must exceed recommended_c")
        for name in ("allowable_price_mult", "normaliser_kwh"):
            if not getattr(self, name) > 0:
                raise ValueError(f"CoolingEnergyReward.{name} must be positive")
        if not self.violation_kwh_per_kh >= 0:
            # Zero is the "no thermal penalty" ablation: an agent trained on energy alone, which
            # gate 1 must reject.
            raise ValueError("CoolingEnergyReward.violation_kwh_per_kh must not be negative")

    def __call__(
        self, cooling_power_kw: ArrayLike, inlet_c: ArrayLike, period_s: float
    ) -> tuple[FloatArray, dict[str, FloatArray]]:
        hours = period_s / 3600.0
        cooling_kwh = np.asarray(cooling_power_kw, dtype=np.float64) * hours
        inlet = np.asarray(inlet_c, dtype=np.float64)
        over_rec = np.maximum(inlet - self.recommended_c, 0.0).sum(axis=-1) * hours
        over_all = np.maximum(inlet - self.allowable_c, 0.0).sum(axis=-1) * hours
        energy_term = -cooling_kwh / self.normaliser_kwh
        thermal_term = (
            -self.violation_kwh_per_kh
            * (over_rec + self.allowable_price_mult * over_all)
            / self.normaliser_kwh
        )
        value = energy_term + thermal_term
        terms = {
            "energy_term": energy_term,
            "thermal_term": thermal_term,
            "cooling_kwh": cooling_kwh,
            "violation_kh_recommended": over_rec,
            "violation_kh_allowable": over_all,
            "max_inlet_c": inlet.max(axis=-1),
        }
        return value, terms


@dataclass(frozen=True)
class Pessimism:
    """Penalties that keep a learner where the twin can be believed (MOPO / MOReL style), in
    kWh of cooling energy per period like the reward's own terms.

    ``spread_kwh_per_k`` prices the ensemble's disagreement on the hottest rack (std over
    members, K; needs two members or more), ``extrapolation_kwh`` every unit of competence
    ratio above 1 (:mod:`twin.competence`; needs a twin saved with its competence model), and
    ``travel_kwh`` every unit of action change between periods (summed over the components,
    actions in [-1, 1]: actuator wear, and the chatter that feeds on a twin's errors)."""

    spread_kwh_per_k: float = 0.0
    extrapolation_kwh: float = 0.0
    travel_kwh: float = 0.0

    def __post_init__(self) -> None:
        for name in ("spread_kwh_per_k", "extrapolation_kwh", "travel_kwh"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value >= 0):
                raise ValueError(f"Pessimism.{name} must be a non-negative number, got {value}")

    @property
    def active(self) -> bool:
        return self.spread_kwh_per_k > 0 or self.extrapolation_kwh > 0 or self.travel_kwh > 0

    def __call__(
        self, spread_k: ArrayLike, competence_ratio: ArrayLike, travel: ArrayLike
    ) -> tuple[FloatArray, dict[str, FloatArray]]:
        """The penalty (kWh per period, per environment) and its terms."""
        spread = self.spread_kwh_per_k * np.asarray(spread_k, dtype=np.float64)
        outside = self.extrapolation_kwh * np.maximum(
            np.asarray(competence_ratio, dtype=np.float64) - 1.0, 0.0
        )
        moves = self.travel_kwh * np.asarray(travel, dtype=np.float64)
        total = spread + outside + moves
        return total, {
            "spread_penalty_kwh": spread,
            "extrapolation_penalty_kwh": outside,
            "travel_penalty_kwh": moves,
        }

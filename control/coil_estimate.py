"""What the CRAH coils can still do, learnt online from the supply air they reach.

A coil fouls, and then the MPC's twin, still at its nominal coil conductance, plans supply
air the coils can no longer reach at the chilled water it plans: the valves open fully, the
air leaves warmer than planned and the controller chases the difference through its inlet
bias at the wrong setpoints. Measured on ``holdout-coil-fouling`` (every coil loses 30 % of
its UA from hour 30): the MPC at nominal UA used 37,478 kWh of cooling, the same MPC told
the fouled UA 33,710 kWh, both at 0 K·h above 27 °C.

:class:`CoilUaEstimator` reads, each control period, the supply air the coils reached
against the supply-air setpoint they were given, with the return air and chilled water
they worked on and the fan speed, and keeps a multiplier of the drawings' coil UA
(:data:`twin.surrogate.THETA_NAMES`' ``coil_ua_mult``) consistent with them, through the
coil's own ε-NTU model (:func:`physics.crah.coil_leaving` at full water flow):

* **short** (supply air above its setpoint by more than ``saturation_k``): the valves are
  open, so the reached air is the coil's limit; the UA that gives that limit is the
  evidence, and the estimate moves towards it by ``gain``;
* **reached** (supply air within ``saturation_k`` of its setpoint): the coil's limit lies
  at or below the setpoint, so the UA is at least the one whose limit is the setpoint; the
  estimate rises to that bound (by ``gain``) where it lies below it;
* otherwise (no usable reading, air warmer than the return) nothing is learnt.

So the estimate only falls on evidence that the coils fell short, and only rises as far as
the evidence of reached setpoints carries it: a pessimistic learner, whose error costs
energy, not inlet temperature.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from physics.compiled import as_record
from physics.constants import CP_AIR_KJ_KG_K
from physics.crah import CrahParams, coil_leaving, fan_airflow, fan_power

UA_RANGE = (0.2, 1.5)
"""The multipliers the estimator considers (a coil at a fifth of its design UA is a coil
the operator must clean; above 1.5 the drawings are wrong, not the coil)."""


@dataclass
class CoilUaEstimator:
    """Online estimate of the coils' UA multiplier (module docstring)."""

    params: CrahParams
    estimate: float = 1.0
    gain: float = 0.2
    saturation_k: float = 0.3
    """Supply air above its setpoint by more than this (K) is a coil at its limit: three
    times the sensor noise of the reference site."""
    updates: int = 0
    """Periods that moved the estimate."""

    def __post_init__(self) -> None:
        if not 0.0 < self.gain <= 1.0 or self.saturation_k <= 0.0:
            raise ValueError("CoilUaEstimator: gain in (0, 1], saturation_k > 0")
        self.estimate = min(max(self.estimate, UA_RANGE[0]), UA_RANGE[1])
        self._record = as_record(self.params)  # the compiled coil and fan functions take it

    def limit_c(
        self, ua_mult: float, return_air_c: float, chw_supply_c: float, fan_frac: float
    ) -> float:
        """Supply air a coil with ``ua_mult`` reaches at full water flow (fan heat added)."""
        p = self._record
        airflow = fan_airflow(p, fan_frac)
        rise = fan_power(p, fan_frac) / max(airflow * CP_AIR_KJ_KG_K, 1e-9)
        leaving = coil_leaving(
            p, return_air_c, chw_supply_c, airflow, self.params.max_water_flow_kg_s, ua_mult
        )
        return leaving + rise

    def _ua_for(
        self, supply_c: float, return_air_c: float, chw_supply_c: float, fan_frac: float
    ) -> float:
        """The multiplier whose limit is ``supply_c`` (the limit falls as UA grows), clipped
        to :data:`UA_RANGE`."""
        low, high = UA_RANGE
        if self.limit_c(high, return_air_c, chw_supply_c, fan_frac) >= supply_c:
            return high
        if self.limit_c(low, return_air_c, chw_supply_c, fan_frac) <= supply_c:
            return low
        for _ in range(30):
            mid = 0.5 * (low + high)
            if self.limit_c(mid, return_air_c, chw_supply_c, fan_frac) > supply_c:
                low = mid
            else:
                high = mid
        return 0.5 * (low + high)

    def update(
        self,
        supply_air_c: float,
        supply_setpoint_c: float,
        return_air_c: float,
        chw_supply_c: float,
        fan_frac: float,
    ) -> float:
        """Learn from one period's readings; the estimate after it."""
        values = (supply_air_c, supply_setpoint_c, return_air_c, chw_supply_c, fan_frac)
        if not all(math.isfinite(v) for v in values):
            return self.estimate
        # Air leaves the coil between the chilled water and the return air, or the readings
        # do not describe a working coil (a dropout decoded as a default, a tripped hall).
        if not chw_supply_c + 0.5 < supply_air_c < return_air_c or not 0.0 < fan_frac <= 1.0:
            return self.estimate
        fan = max(fan_frac, self.params.min_speed_frac)
        shortfall = supply_air_c - supply_setpoint_c
        if shortfall > self.saturation_k:
            target = self._ua_for(supply_air_c, return_air_c, chw_supply_c, fan)
        elif abs(shortfall) <= self.saturation_k:
            bound = self._ua_for(supply_setpoint_c, return_air_c, chw_supply_c, fan)
            if bound <= self.estimate:
                return self.estimate
            target = bound
        else:
            return self.estimate
        self.estimate += self.gain * (target - self.estimate)
        self.updates += 1
        return self.estimate

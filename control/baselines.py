"""Rule baselines every candidate is compared with.

* :class:`FixedSetpoints` — conventional control as most sites run it: the site's own fixed
  setpoints (19 °C supply air, CRAH fans at full speed, 7 °C chilled water, 29.4 °C condenser
  water; the waterside economiser and cold condenser water enabled as ASHRAE Guideline 36
  sequences it, from the wet bulb and the chilled-water return) — the plant's built-in
  control expressed as a policy.
* :class:`TrimAndRespond` — ASHRAE Guideline 36-style resets, one step per control period:
  the supply-air setpoint is trimmed up while no pod's hottest rack inlet is near the target
  and responds down by the number of pods that are ("requests"); the CRAH fans trim down
  while the racks' intake is even and respond up when a pod's hottest rack runs well above
  its mean (the signature of air starvation and recirculation) or hot; chilled water trims
  up while the coils hold the supply air and responds down when they cannot; condenser water
  follows the wet bulb plus the tower's approach; the economiser is enabled by the same
  Guideline 36 sequence as the site's control (partial free cooling, hysteresis).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from control.policy import Obs, decode_observation, pods_of
from physics.plant.site import SiteDefaults
from physics.plant.site_control import EconomiserEnable, site_control_matrix
from twin.spaces import ActionScale, ObservationSpec

FloatArray = NDArray[np.float64]


@dataclass
class FixedSetpoints:
    """The site's conventional fixed setpoints as a policy (see the module docstring)."""

    spec: ObservationSpec = field(default_factory=ObservationSpec)
    scale: ActionScale = field(default_factory=ActionScale)
    defaults: SiteDefaults = field(default_factory=SiteDefaults)
    name: str = "fixed-setpoints"
    kind: str = "rule"
    control_period_s: float = 300.0
    _economiser: EconomiserEnable | None = None

    def reset(self, n_envs: int = 1) -> None:
        self._economiser = EconomiserEnable(self.defaults, n_envs)

    def act(self, observation: Obs) -> Obs:
        values = decode_observation(self.spec, observation)
        wet_bulb = values["outdoor_wet_bulb_c"]
        if self._economiser is None or self._economiser.enabled.shape[0] != wet_bulb.shape[0]:
            self.reset(wet_bulb.shape[0])
        assert self._economiser is not None
        eco = self._economiser.step(wet_bulb, values["chw_return_c"], self.control_period_s)
        sp = site_control_matrix(self.defaults, eco)
        return self.scale.to_action(sp).astype(np.float32)


@dataclass(frozen=True)
class TrimRespondConfig:
    """Targets, steps and limits of the resets (per control period)."""

    inlet_target_c: float = 25.0
    """Hottest rack inlet the resets steer towards (2 K below the recommended 27 °C)."""
    supply_air_c: tuple[float, float] = (18.0, 24.0)
    supply_air_trim_k: float = 0.2
    supply_air_respond_k: float = 0.4
    supply_air_max_respond_k: float = 1.2
    fan_frac: tuple[float, float] = (0.55, 1.0)
    fan_trim: float = 0.01
    fan_respond: float = 0.04
    inlet_spread_limit_k: float = 1.5
    """A pod whose hottest rack runs this far above its mean asks for more air."""
    chw_c: tuple[float, float] = (7.0, 13.0)
    chw_trim_k: float = 0.1
    chw_respond_k: float = 0.4
    supply_air_tracking_k: float = 0.4
    """Supply air this far above its setpoint means the coils cannot hold it."""
    cw_approach_k: float = 4.0
    cw_c: tuple[float, float] = (20.0, 32.0)

    def __post_init__(self) -> None:
        for name in ("supply_air_c", "fan_frac", "chw_c", "cw_c"):
            low, high = getattr(self, name)
            if not low < high:
                raise ValueError(f"TrimRespondConfig.{name}: need low < high, got ({low}, {high})")


@dataclass
class TrimAndRespond:
    """ASHRAE Guideline 36-style trim-and-respond resets (see the module docstring)."""

    spec: ObservationSpec = field(default_factory=ObservationSpec)
    scale: ActionScale = field(default_factory=ActionScale)
    config: TrimRespondConfig = field(default_factory=TrimRespondConfig)
    defaults: SiteDefaults = field(default_factory=SiteDefaults)
    name: str = "trim-and-respond"
    kind: str = "rule"
    control_period_s: float = 300.0
    _sp: FloatArray | None = None
    _economiser: EconomiserEnable | None = None

    def reset(self, n_envs: int = 1) -> None:
        self._economiser = EconomiserEnable(self.defaults, n_envs)
        d, c = self.defaults, self.config
        start = [
            np.clip(d.supply_air_c, *c.supply_air_c),
            np.clip(d.fan_speed_frac, *c.fan_frac),
            np.clip(d.chw_supply_c, *c.chw_c),
            d.cw_supply_c,
            0.0,
        ]
        self._sp = np.tile(np.asarray(start, dtype=np.float64), (n_envs, 1))

    def act(self, observation: Obs) -> Obs:
        c = self.config
        v = decode_observation(self.spec, observation)
        n = v["supply_air_c"].shape[0]
        if self._sp is None or self._sp.shape[0] != n:
            self.reset(n)
        assert self._sp is not None
        sp = self._sp
        hottest = pods_of(v, "rack_inlet_max_c")
        spread = hottest - pods_of(v, "rack_inlet_mean_c")

        # Supply air: requests are pods whose hottest rack is at or above the target.
        requests = (hottest >= c.inlet_target_c).sum(axis=1)
        respond = np.minimum(requests * c.supply_air_respond_k, c.supply_air_max_respond_k)
        sp[:, 0] = np.where(requests > 0, sp[:, 0] - respond, sp[:, 0] + c.supply_air_trim_k)
        sp[:, 0] = np.clip(sp[:, 0], *c.supply_air_c)

        # Fans: more air where a pod's intake is uneven or hot, else trim.
        starved = ((spread > c.inlet_spread_limit_k) | (hottest >= c.inlet_target_c)).sum(axis=1)
        sp[:, 1] = np.where(starved > 0, sp[:, 1] + starved * c.fan_respond, sp[:, 1] - c.fan_trim)
        sp[:, 1] = np.clip(sp[:, 1], *c.fan_frac)

        # Chilled water: colder only when the coils cannot hold the supply-air setpoint.
        short = v["supply_air_c"] > sp[:, 0] + c.supply_air_tracking_k
        sp[:, 2] = np.where(short, sp[:, 2] - c.chw_respond_k, sp[:, 2] + c.chw_trim_k)
        sp[:, 2] = np.clip(sp[:, 2], *c.chw_c)

        # Condenser water: wet bulb plus approach; the economiser by the site's G36 sequence,
        # which asks the tower for cold water while it runs.
        assert self._economiser is not None
        eco = self._economiser.step(
            v["outdoor_wet_bulb_c"], v["chw_return_c"], self.control_period_s
        )
        sp[:, 3] = np.clip(v["outdoor_wet_bulb_c"] + c.cw_approach_k, *c.cw_c)
        sp[:, 3] = np.where(eco > 0.5, self.defaults.economiser_cw_supply_c, sp[:, 3])
        sp[:, 4] = eco
        return self.scale.to_action(sp).astype(np.float32)

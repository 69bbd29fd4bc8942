"""A policy behind the site's safety shield, as it would run live, for evaluation.

Live, every command a policy proposes passes :class:`~control.shield.Shield` (envelope, rate
limits per period and per hour, economiser dwell) before it reaches the BMS. Pre-evaluation
must judge the policy the plant will see, so it runs the same projection: one shield per
environment, stepped one control period per ``act`` call, starting from the site's own
setpoints as the live controller does when it loads a policy.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from control.policy import FloatArray, Obs, Policy
from control.shield import Shield, ShieldConfig, site_reference
from physics.plant.scenario import Scenario
from physics.plant.site_control import SETPOINT_FIELDS
from twin.spaces import ActionScale


class ShieldedPolicy:
    """``policy`` with every action projected by the site's shield (see the module
    docstring). ``interventions`` counts the periods in which the shield changed a command."""

    def __init__(
        self, policy: Policy, scenario: Scenario, config: ShieldConfig | None = None
    ) -> None:
        self.inner = policy
        self.name = policy.name
        self.kind = policy.kind
        site = scenario.site
        self.config = (config or ShieldConfig()).within(site.limits)
        self.scale = ActionScale.within(site.limits)
        self.period_s = scenario.control_period_s
        self.reference = site_reference(site.defaults, scenario_wet_bulb_c(scenario))
        self.shields: list[Shield] = []
        self.time_s = 0.0
        self.interventions = 0

    def reset(self, n_envs: int = 1) -> None:
        self.inner.reset(n_envs)
        self.time_s = 0.0
        self.shields = [
            Shield(self.config, reference=self.reference, time_s=0.0) for _ in range(n_envs)
        ]
        self.interventions = 0

    def act(self, observation: Obs) -> Obs:
        proposed = np.asarray(self.inner.act(observation), dtype=np.float64)
        if proposed.ndim != 2 or len(proposed) != len(self.shields):
            raise ValueError(
                f"{self.name}: expected actions for {len(self.shields)} environments, "
                f"got shape {proposed.shape}"
            )
        self.time_s += self.period_s
        out = np.empty_like(proposed)
        for i, shield in enumerate(self.shields):
            out[i], intervened = apply_shield(
                shield, proposed[i], self.scale, self.time_s, self.reference
            )
            self.interventions += int(intervened)
        shielded: Obs = out.astype(np.float32)
        return shielded


def apply_shield(
    shield: Shield,
    action: FloatArray,
    scale: ActionScale,
    time_s: float,
    reference: Mapping[str, float],
) -> tuple[FloatArray, bool]:
    """One environment's command through its shield, committed as delivered: the scaled
    action (5,) that reaches the plant (a field the shield drops falls back to the site's
    ``reference``) and whether the shield changed anything."""
    result = shield.project_action(action, scale, time_s)
    shield.commit(result, reference)
    applied = [result.fields.get(n, reference[n]) for n in SETPOINT_FIELDS]
    return scale.to_action(np.asarray(applied, dtype=np.float64)), result.intervened


def scenario_wet_bulb_c(scenario: Scenario) -> float:
    """The outdoor wet bulb at the scenario's start (the site's setpoints follow it)."""
    from twin.exogenous import ExogenousTable

    return float(ExogenousTable.from_scenario(scenario).wet_bulb_c[0])

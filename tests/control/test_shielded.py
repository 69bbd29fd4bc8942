"""A policy behind the site's shield, as pre-evaluation runs it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from control.shield import ShieldConfig
from control.shielded import ShieldedPolicy
from physics.plant.scenario import Scenario, load_scenario
from twin.spaces import ActionScale

from ..conftest import SCENARIO


class _Jumpy:
    """Asks for condenser water at its top and the economiser flipped every period."""

    name = "jumpy"
    kind = "rule"

    def reset(self, n_envs: int = 1) -> None:
        self.n, self.t = n_envs, 0

    def act(self, observation: np.ndarray) -> np.ndarray:
        self.t += 1
        sp = np.array([24.0, 0.5, 14.0, 35.0, float(self.t % 2)])
        return np.tile(ActionScale().to_action(sp), (len(observation), 1)).astype(np.float32)


@pytest.fixture
def scenario(tmp_path: Path) -> Scenario:
    path = tmp_path / "s.yaml"
    path.write_text(SCENARIO.format(name="s", start="07-01", duration="2 h", seed=1))
    return load_scenario(path)


def test_the_shield_paces_moves_and_holds_the_economiser(scenario: Scenario) -> None:
    policy = ShieldedPolicy(_Jumpy(), scenario)
    assert (policy.name, policy.kind) == ("jumpy", "rule")
    policy.reset(2)
    scale = ActionScale.within(scenario.site.limits)
    config = ShieldConfig().within(scenario.site.limits)
    applied = []
    for _ in range(6):
        action = policy.act(np.zeros((2, 10), dtype=np.float32))
        assert action.shape == (2, 5)
        applied.append(scale.to_setpoints(action[0].astype(np.float64)))
    sp = np.array(applied)
    cw = sp[:, 3]
    assert np.all(
        np.diff(np.concatenate([[policy.reference["cw_supply_c"]], cw]))
        <= (config.step_limit("cw_supply_c") + 1e-6)
    )
    assert cw[-1] < 35.0  # not there yet: paced
    switches = np.abs(np.diff(sp[:, 4])).sum()
    assert switches <= 1  # dwell: not every period
    assert policy.interventions >= 6
    with pytest.raises(ValueError, match="environments"):
        policy.act(np.zeros((3, 10), dtype=np.float32))

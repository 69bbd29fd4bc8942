"""``TwinLoop/DataCenter-v0``: one data center's digital twin as a Gymnasium environment.

One step is one control period (5 min by default). The environment is the batched engine
of :mod:`twin.vec_env` with a single environment, so a policy sees exactly what it sees in
the vectorised twin during training; observation, action and reward are those of
:mod:`twin.spaces` and :mod:`twin.reward`, shared with ``TwinLoop/DataCenterPlant-v0``.
Each reset draws a start period in the scenario (and, with ``randomisation``, the site's
physical parameters) from the environment's ``np_random``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from numpy.typing import NDArray

from physics.plant.scenario import Scenario
from twin.ensemble import TwinEnsemble
from twin.reward import CoolingEnergyReward
from twin.spaces import ACTION_NAMES, ActionScale, action_space, observation_space
from twin.surrogate import PhysicsTwin
from twin.vec_env import BatchedTwin, Randomisation

Obs = NDArray[np.float32]


class TwinEnv(gym.Env[Obs, Obs]):
    """The twin of a scenario's site (see the module docstring).

    ``twin`` is a fitted twin (object or saved directory) or ``None`` for the physics of the
    site's drawings alone. ``episode_hours`` must fit inside the scenario. ``compile`` runs
    the twin through ``torch.compile`` (sub-millisecond steps after a one-off compile).
    Without ``random_start`` every episode starts at the scenario's start. With
    ``track_spread`` ``info["inlet_spread_c"]`` holds the ensemble's disagreement on the
    hottest rack (std over members, °C). With ``track_competence`` (a twin saved with its
    competence model) ``info["competence_ratio"]`` says how far the period lay from the data
    the twin was fitted on and ``info["extrapolating"]`` whether it lay outside
    (:mod:`twin.competence`).
    """

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012 (gymnasium's declaration)

    def __init__(
        self,
        scenario: str | Path | Scenario = "tropical-typical-week",
        twin: TwinEnsemble | PhysicsTwin | str | Path | None = None,
        episode_hours: float = 24.0,
        reward: CoolingEnergyReward | None = None,
        action_scale: ActionScale | None = None,
        randomisation: Randomisation | None = None,
        device: str = "cpu",
        compile: bool = False,
        random_start: bool = True,
        track_spread: bool = False,
        track_competence: bool = False,
    ) -> None:
        super().__init__()
        self.sim = BatchedTwin(
            1,
            scenario=scenario,
            twin=twin,
            episode_hours=episode_hours,
            reward=reward,
            action_scale=action_scale,
            randomisation=randomisation,
            device=device,
            compile=compile,
            random_start=random_start,
            track_spread=track_spread,
            track_competence=track_competence,
        )
        self.observation_space: spaces.Box[np.float32] = observation_space(self.sim.spec)
        self.action_space: spaces.Box[np.float32] = action_space()
        self._ready = False

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Obs, dict[str, Any]]:
        super().reset(seed=seed)
        self.sim.rng = self.np_random
        self.sim.reset_envs(torch.zeros(1, dtype=torch.int64, device=self.sim.device))
        self._ready = True
        start = int(self.sim.start[0])
        return self.sim.observe()[0], {"time_h": float(self.sim.table.time_h[start])}

    def step(self, action: Obs) -> tuple[Obs, float, bool, bool, dict[str, Any]]:
        if not self._ready:
            raise RuntimeError("TwinEnv.step() before reset() or after the episode ended")
        a = np.asarray(action, dtype=np.float32)
        if a.shape != (len(ACTION_NAMES),):
            raise ValueError(f"action must have shape ({len(ACTION_NAMES)},), got {a.shape}")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"action must be finite, got {a.tolist()}")
        cooling, inlet = self.sim.step(torch.from_numpy(a[None, :]))
        reward, terms = self.sim.reward(cooling, inlet)
        truncated = bool(self.sim.truncated[0])
        self._ready = not truncated
        info: dict[str, Any] = {k: float(v[0]) for k, v in terms.items()}
        setpoints = self.sim.action_scale.to_setpoints(a.astype(np.float64))
        info["setpoints"] = dict(zip(ACTION_NAMES, map(float, setpoints), strict=True))
        info["facility_kw"] = float(self.sim.last_facility_kw[0])
        # Hour of the year at the end of the period (the new observation's), as on the plant.
        row = min(int(self.sim.start[0] + self.sim.elapsed[0]), len(self.sim.table.time_h) - 1)
        info["time_h"] = float(self.sim.table.time_h[row])
        if self.sim.track_spread:
            info["inlet_spread_c"] = float(self.sim.last_inlet_spread_c[0])
        if self.sim.competence is not None:
            ratio = float(self.sim.last_competence_ratio[0])
            info["competence_ratio"] = ratio
            info["extrapolating"] = ratio > 1.0
        return self.sim.observe()[0], float(reward[0]), False, truncated, info

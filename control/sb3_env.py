"""The batched twin as Stable-Baselines3 vectorised environments, for training agents.

:class:`TwinSB3VecEnv` adapts :class:`~twin.vec_env.TwinVectorEnv` (Gymnasium, same-step
autoreset) to SB3's ``VecEnv`` protocol: auto-reset, the last observation of an episode in
``info["terminal_observation"]`` and the reward terms per environment.
:class:`ScenarioMixVecEnv` puts several of them, one scenario each, side by side as one.
:class:`ShieldedVecEnv` runs one behind the site's safety shield, as agents run live.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium
import numpy as np
from numpy.typing import NDArray
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper
from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices

from control.shield import Shield, ShieldConfig
from control.shielded import apply_shield
from physics.plant.site_control import SETPOINT_FIELDS
from twin.vec_env import BatchedTwin, Obs, TwinVectorEnv


class TwinSB3VecEnv(VecEnv):
    """:class:`BatchedTwin` as a Stable-Baselines3 ``VecEnv`` (auto-reset; the last
    observation of an episode in ``info["terminal_observation"]``, reward terms per env)."""

    def __init__(self, num_envs: int = 16, **kwargs: Any) -> None:
        self.vector = TwinVectorEnv(num_envs, **kwargs)
        super().__init__(
            num_envs, self.vector.single_observation_space, self.vector.single_action_space
        )
        self._actions: Obs | None = None

    @property
    def sim(self) -> BatchedTwin:
        return self.vector.sim

    def reset(self) -> Obs:
        seed = self._seeds[0] if self._seeds else None
        self._reset_seeds()
        obs, _ = self.vector.reset(seed=seed)
        return obs

    def step_async(self, actions: NDArray[Any]) -> None:
        self._actions = np.asarray(actions, dtype=np.float32)

    def step_wait(self) -> tuple[Obs, NDArray[np.float32], NDArray[np.bool_], list[dict[str, Any]]]:
        if self._actions is None:
            raise RuntimeError("step_wait() without step_async()")
        obs, reward, _, truncated, infos = self.vector.step(self._actions)
        keys = [k for k in infos if not k.startswith("_") and k != "final_obs"]
        columns = [infos[k].tolist() for k in keys]
        per_env: list[dict[str, Any]] = [
            dict(zip(keys, row, strict=True)) for row in zip(*columns, strict=True)
        ]
        for i in np.nonzero(truncated)[0]:
            per_env[i]["terminal_observation"] = infos["final_obs"][i]
            per_env[i]["TimeLimit.truncated"] = True
        return obs, reward.astype(np.float32), truncated.copy(), per_env

    def close(self) -> None:
        return None

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        return [getattr(self.vector, attr_name) for _ in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        setattr(self.vector, attr_name, value)

    def env_method(
        self,
        method_name: str,
        *method_args: Any,
        indices: VecEnvIndices = None,
        **method_kwargs: Any,
    ) -> list[Any]:
        method = getattr(self.vector, method_name)
        return [method(*method_args, **method_kwargs) for _ in self._get_indices(indices)]

    def env_is_wrapped(
        self,
        wrapper_class: type[gymnasium.Wrapper[Any, Any, Any, Any]],
        indices: VecEnvIndices = None,
    ) -> list[bool]:
        return [False for _ in self._get_indices(indices)]


class ScenarioMixVecEnv(VecEnv):
    """Several :class:`TwinSB3VecEnv` side by side as one SB3 ``VecEnv``: environments
    ``[bounds[k], bounds[k + 1])`` run part ``k`` (one scenario each)."""

    def __init__(self, parts: Sequence[VecEnv]) -> None:
        if not parts:
            raise ValueError("ScenarioMixVecEnv needs at least one part")
        first = parts[0]
        for part in parts[1:]:
            if (part.observation_space, part.action_space) != (
                first.observation_space,
                first.action_space,
            ):
                raise ValueError("every scenario must give the same observation and action spaces")
        self.parts = list(parts)
        self.bounds = np.cumsum([0, *(p.num_envs for p in parts)])
        super().__init__(int(self.bounds[-1]), first.observation_space, first.action_space)

    def _located(self, indices: VecEnvIndices) -> list[tuple[VecEnv, int]]:
        located = []
        for i in self._get_indices(indices):
            k = int(np.searchsorted(self.bounds, i, side="right")) - 1
            located.append((self.parts[k], i - int(self.bounds[k])))
        return located

    def reset(self) -> NDArray[np.float32]:
        for part, start in zip(self.parts, self.bounds[:-1], strict=True):
            seed = self._seeds[int(start)]
            if seed is not None:
                part.seed(seed)
        self._reset_seeds()
        return np.concatenate([part.reset() for part in self.parts])

    def step_async(self, actions: NDArray[Any]) -> None:
        for part, lo, hi in zip(self.parts, self.bounds[:-1], self.bounds[1:], strict=True):
            part.step_async(actions[lo:hi])

    def step_wait(
        self,
    ) -> tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.bool_], list[dict[str, Any]]]:
        results = [part.step_wait() for part in self.parts]
        infos = [info for result in results for info in result[3]]
        obs, rewards, dones = (np.concatenate([r[j] for r in results]) for j in range(3))
        return obs, rewards, dones, infos

    def close(self) -> None:
        for part in self.parts:
            part.close()

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        return [part.get_attr(attr_name, [i])[0] for part, i in self._located(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        for part, i in self._located(indices):
            part.set_attr(attr_name, value, [i])

    def env_method(
        self, method_name: str, *method_args: Any, indices: VecEnvIndices = None, **kwargs: Any
    ) -> list[Any]:
        return [
            part.env_method(method_name, *method_args, indices=[i], **kwargs)[0]
            for part, i in self._located(indices)
        ]

    def env_is_wrapped(
        self,
        wrapper_class: type[gymnasium.Wrapper[Any, Any, Any, Any]],
        indices: VecEnvIndices = None,
    ) -> list[bool]:
        return [part.env_is_wrapped(wrapper_class, [i])[0] for part, i in self._located(indices)]


class ShieldedVecEnv(VecEnvWrapper):
    """A :class:`TwinSB3VecEnv` whose actions pass the site's safety shield
    (:class:`~control.shield.Shield`: envelope, rate limits per period and per hour,
    economiser dwell) before they reach the twin, one shield per environment, as live and in
    pre-evaluation (:class:`~control.shielded.ShieldedPolicy`). Each episode's shield starts
    from the setpoints the episode starts under (the site's own, which the observation's
    last action carries), so the agent learns the pace it will be held to; the observation's
    last action is then the command that was applied."""

    def __init__(self, venv: TwinSB3VecEnv, config: ShieldConfig | None = None) -> None:
        super().__init__(venv)
        sim = venv.sim
        self.scale = sim.action_scale
        self.config = (config or ShieldConfig()).within(sim.scenario.site.limits)
        self.period_s = sim.period_s
        names = sim.spec.names
        self._last_action = [names.index(f"last_action.{name}") for name in SETPOINT_FIELDS]
        self.shields = [Shield(self.config) for _ in range(venv.num_envs)]
        self.references: list[dict[str, float]] = [{} for _ in range(venv.num_envs)]
        self.time_s = np.zeros(venv.num_envs)
        self.interventions = 0
        """Environment-steps in which the shield changed the agent's command."""

    def _restart(self, i: int, observation: NDArray[Any]) -> None:
        """Environment ``i`` began an episode whose first observation is ``observation``."""
        start = self.scale.to_setpoints(np.asarray(observation, np.float64)[self._last_action])
        reference = dict(zip(SETPOINT_FIELDS, start.tolist(), strict=True))
        self.references[i] = reference
        self.time_s[i] = 0.0
        self.shields[i].reset(reference, 0.0)

    def reset(self) -> Obs:
        obs = np.asarray(self.venv.reset())
        for i in range(self.num_envs):
            self._restart(i, obs[i])
        return obs

    def step_async(self, actions: NDArray[Any]) -> None:
        proposed = np.asarray(actions, dtype=np.float64)
        applied = np.empty_like(proposed)
        self.time_s += self.period_s
        for i, shield in enumerate(self.shields):
            applied[i], intervened = apply_shield(
                shield, proposed[i], self.scale, float(self.time_s[i]), self.references[i]
            )
            self.interventions += int(intervened)
        self.venv.step_async(applied.astype(np.float32))

    def step_wait(self) -> tuple[Obs, NDArray[np.float32], NDArray[np.bool_], list[dict[str, Any]]]:
        out, reward, done, infos = self.venv.step_wait()
        obs: Obs = np.asarray(out, dtype=np.float32)
        for i in np.nonzero(done)[0]:  # auto-reset: obs[i] is the next episode's first
            self._restart(int(i), obs[i])
        return obs, np.asarray(reward, np.float32), np.asarray(done, np.bool_), infos

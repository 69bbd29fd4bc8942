"""The twin as an SB3 ``VecEnv``: episodes end with their terminal observation, and PPO
learns on it with a tiny budget."""

from __future__ import annotations

import numpy as np
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecMonitor

from control.sb3_env import TwinSB3VecEnv

SCENARIO = "tropical-typical-week"


class _EpisodeReturns(BaseCallback):
    """Mean return of the episodes finished so far, after each rollout."""

    def __init__(self) -> None:
        super().__init__()
        self.means: list[float] = []

    def _on_rollout_end(self) -> None:
        buffer = self.model.ep_info_buffer
        if buffer:
            self.means.append(float(np.mean([e["r"] for e in buffer])))

    def _on_step(self) -> bool:
        return True


def test_ppo_learns_to_cool_without_violations() -> None:
    torch.set_num_threads(2)
    venv = VecMonitor(TwinSB3VecEnv(16, scenario="tropical-typical-week", episode_hours=2.0))
    model = PPO(
        "MlpPolicy", venv, n_steps=48, batch_size=256, n_epochs=5, learning_rate=1e-3, seed=0
    )
    returns = _EpisodeReturns()
    model.learn(total_timesteps=16 * 48 * 12, callback=returns)
    first, last = np.mean(returns.means[:2]), np.mean(returns.means[-2:])
    # Random setpoints overheat the racks (large thermal penalty); PPO learns to avoid it.
    assert first < -300.0
    assert last > 0.25 * first


def test_sb3_vec_env_reports_terminal_observations() -> None:
    venv = TwinSB3VecEnv(2, scenario=SCENARIO, episode_hours=0.25)
    venv.seed(0)
    venv.reset()
    for _ in range(3):
        venv.step_async(np.zeros((2, 5), dtype=np.float32))
        obs, _rewards, dones, infos = venv.step_wait()
    assert dones.all()
    assert all("terminal_observation" in i and "energy_term" in i for i in infos)
    assert obs.shape == (2, venv.observation_space.shape[0])


def test_shielded_vec_env_paces_every_move_from_the_episodes_start() -> None:
    from control.sb3_env import ShieldedVecEnv
    from control.shield import ShieldConfig

    venv = ShieldedVecEnv(TwinSB3VecEnv(2, scenario=SCENARIO, episode_hours=1.0))
    venv.seed(0)
    obs = venv.reset()
    columns = [venv._last_action[k] for k in range(5)]
    scale = venv.scale
    start = scale.to_setpoints(obs[:, columns].astype(np.float64))
    config = ShieldConfig().within(venv.venv.sim.scenario.site.limits)
    steps = np.array(
        [config.step_limit(n) for n in ("supply_air_c", "fan_speed_frac", "chw_supply_c")]
    )
    hour = np.array(
        [config.hour_limit(n) for n in ("supply_air_c", "fan_speed_frac", "chw_supply_c")]
    )
    # The agent asks for the warmest air, the least fan and the warmest water at once.
    greedy = np.tile(np.array([1.0, -1.0, 1.0, 0.0, -1.0], dtype=np.float32), (2, 1))
    applied = []
    for _ in range(11):  # 55 minutes: inside one hour window
        venv.step_async(greedy)
        obs, _rewards, dones, _infos = venv.step_wait()
        assert not dones.any()
        applied.append(scale.to_setpoints(obs[:, columns].astype(np.float64)))
    path = np.array(applied)  # (period, env, field)
    moves = np.abs(np.diff(np.concatenate([start[None], path]), axis=0))[:, :, :3]
    assert (moves <= steps + 1e-4).all()
    # Away from the site's setpoints by no more than the hourly limit within the hour.
    assert (np.abs(path[-1, :, :3] - start[:, :3]) <= hour + 1e-4).all()
    assert (np.abs(path[-1, :, :3] - start[:, :3]) >= hour - 1e-4).all()  # and it got there
    assert venv.interventions > 0
    # A new episode (auto-reset after its hour) starts its shield from its own start.
    venv.step_async(greedy)
    obs, _rewards, dones, _infos = venv.step_wait()
    assert dones.all()
    restart = scale.to_setpoints(obs[:, columns].astype(np.float64))
    for i in range(2):
        assert venv.shields[i].last("supply_air_c") == restart[i, 0]
    venv.step_async(greedy)
    obs, _rewards, _dones, _infos = venv.step_wait()
    first = scale.to_setpoints(obs[:, columns].astype(np.float64))
    assert (np.abs(first[:, :3] - restart[:, :3]) <= steps + 1e-4).all()

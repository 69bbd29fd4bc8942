"""The torch PPO over the device-resident twin: it learns, and its policy is an SB3 agent."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from control.catalog import policy_factory
from control.torch_ppo import (
    ActorCritic,
    PpoSettings,
    make_device_env,
    resolve_device,
    train_torch_ppo,
)
from control.training import TrainConfig
from physics.plant.scenario import load_scenario
from twin.plant_env import PlantEnv

SCENARIO = "tropical-typical-week"


def _config(**overrides: object) -> TrainConfig:
    base: dict[str, object] = {
        "n_envs": 16,
        "total_timesteps": 16 * 24 * 3,
        "episode_hours": 2.0,
        "n_steps": 24,
        "batch_size": 96,
        "n_epochs": 4,
        "scenarios": [SCENARIO],
    }
    return TrainConfig.from_yaml("ppo", overrides={**base, **overrides})


def test_settings_come_from_the_ppo_block() -> None:
    settings = PpoSettings.from_config(TrainConfig.from_yaml("ppo"))
    assert (settings.n_steps, settings.batch_size, settings.n_epochs) == (288, 2304, 10)
    assert settings.pi == (128, 128) and settings.activation_fn == "tanh"
    with pytest.raises(ValueError, match="does not take"):
        PpoSettings.from_config(_config(use_sde=True))


def test_the_initial_action_noise_of_the_ppo_block_reaches_both_trainers() -> None:
    arch = {"net_arch": {"pi": [16], "vf": [16]}, "activation_fn": "tanh"}
    assert PpoSettings.from_config(_config(policy_kwargs=arch)).log_std_init == 0.0  # SB3's
    settings = PpoSettings.from_config(_config(policy_kwargs={**arch, "log_std_init": -0.7}))
    assert settings.log_std_init == -0.7
    model = ActorCritic(8, settings)
    torch.testing.assert_close(model.log_std.detach(), torch.full((5,), -0.7))
    assert settings.sb3_kwargs()["policy_kwargs"]["log_std_init"] == -0.7
    with pytest.raises(ValueError, match="only net_arch, activation_fn, log_std_init"):
        PpoSettings.from_config(_config(policy_kwargs={"ortho_init": False}))


def test_torch_ppo_writes_an_sb3_agent_that_runs_on_the_plant(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    agent = train_torch_ppo(_config(), tmp_path / "agent", device=torch.device("cpu"))
    assert agent.timesteps == 16 * 24 * 3 and agent.final_mean_return is not None
    metadata = json.loads(agent.metadata_path.read_text())
    assert metadata["algo"] == "ppo" and metadata["trainer"]["name"] == "torch-ppo"
    assert metadata["config"]["pessimism"]["travel_kwh"] == 2.0  # trained penalised
    with agent.progress_csv.open() as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["time/total_timesteps"]) for r in rows] == [384, 768, 1152]
    policy = policy_factory(str(agent.out_dir))(load_scenario(SCENARIO))
    env = PlantEnv(SCENARIO, episode_hours=0.5)
    obs, _ = env.reset(seed=0)
    for _ in range(3):
        action = policy.act(obs[None, :])[0]
        assert action.shape == (5,) and np.all(np.abs(action) <= 1.0)
        obs, reward, _, _, _ = env.step(action)
        assert np.isfinite(reward)


def test_sb3_policy_acts_as_the_torch_actor(tmp_path: Path) -> None:
    from control.torch_ppo import to_sb3

    config = _config()
    settings = PpoSettings.from_config(config)
    env = make_device_env(config, torch.device("cpu"))
    model = ActorCritic(env.obs_size, settings)
    with torch.no_grad():
        model.log_std.fill_(-0.5)
    sb3 = to_sb3(model, settings, env.parts[0], seed=0)
    obs = env.reset(0)
    mean, value = model(obs)
    actions, _ = sb3.predict(obs.numpy(), deterministic=True)
    np.testing.assert_allclose(actions, mean.clamp(-1, 1).detach().numpy(), atol=1e-5)
    sb3_value = sb3.policy.predict_values(obs).squeeze(-1)
    torch.testing.assert_close(sb3_value, value.detach())
    torch.testing.assert_close(sb3.policy.log_std.detach(), torch.full((5,), -0.5))


def test_torch_ppo_improves_the_return_of_a_short_run() -> None:
    from control.torch_ppo import TorchPpo

    torch.set_num_threads(1)
    # Fixed starts and no randomisation: the return moves with the policy alone.
    config = _config(n_envs=32, n_steps=24, batch_size=192, n_epochs=8, learning_rate=1e-3)
    config = TrainConfig(**{**config.__dict__, "randomisation": False})
    env = make_device_env(config, torch.device("cpu"))
    for part in env.parts:
        part.sim.random_start = False
    ppo = TorchPpo(env, PpoSettings.from_config(config), torch.device("cpu"), seed=0)
    ppo.learn(32 * 24 * 12)
    first, last = ppo.finished_returns[0], np.mean(ppo.finished_returns[-2:])
    assert last > first + 0.1 * abs(first)


def test_cuda_without_a_gpu_falls_back_with_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: nothing to fall back from")
    with caplog.at_level(logging.WARNING):
        assert resolve_device("cuda") == torch.device("cpu")
    assert [r.message for r in caplog.records if "no CUDA GPU" in r.message] == [
        "--device cuda: no CUDA GPU is available here (torch.cuda.is_available() is False); "
        "training on the CPU instead"
    ]
    assert resolve_device("cpu") == torch.device("cpu")

"""Trained SB3 agents load as reservoir policies and run through the evaluation engine."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from control.agents import Sb3Policy
from control.evaluation import HEADLINE_KPIS, evaluate
from control.policy import Policy
from control.sb3_env import TwinSB3VecEnv
from control.training import ALGORITHMS, TrainConfig, TrainedAgent, train_agent

SCENARIO = """\
name: short-hot
site: {variant: reference, seed: 3}
weather: {file: "pvlib:miami", start: "07-10"}
workload: {kind: diurnal, mean_frac: 0.6}
duration: 4 h
step: 60 s
control_period: 5 min
sensor_noise: 1.0
seed: 3
"""

BUDGET: dict[str, dict[str, object]] = {
    "ppo": {"total_timesteps": 4 * 24, "n_steps": 24, "batch_size": 48, "n_epochs": 1},
    "td3": {"total_timesteps": 4 * 24, "learning_starts": 48, "batch_size": 32},
}
"""One episode per environment: enough to write a model, not to learn anything."""


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module", params=sorted(BUDGET))
def run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> TrainedAgent:
    algo: str = request.param
    overrides = {
        "n_envs": 4,
        "episode_hours": 2.0,
        "scenarios": ["tropical-typical-week"],
        "buffer_size": 1000,
        "policy_kwargs": {"net_arch": [32, 32]},
        **BUDGET[algo],
    }
    if algo == "ppo":
        del overrides["buffer_size"]
    config = TrainConfig.from_yaml(algo, overrides=overrides)
    return train_agent(config, tmp_path_factory.mktemp(algo), progress=False)


def test_loaded_policy_acts_like_the_saved_model(run: TrainedAgent) -> None:
    policy = Sb3Policy.load(run.out_dir)
    assert isinstance(policy, Policy)
    assert (policy.kind, policy.algo) == ("drl", run.config.algo)
    assert policy.name == f"{run.config.algo}-{run.out_dir.name}"
    assert policy.metadata["timesteps"] == run.timesteps
    venv = TwinSB3VecEnv(3, scenario="tropical-typical-week", episode_hours=2.0, seed=1)
    venv.reset()
    for _ in range(3):  # away from the settled start
        stepped = venv.step(np.random.default_rng(0).uniform(-1, 1, (3, 5)).astype(np.float32))
    obs = np.asarray(stepped[0], dtype=np.float32)
    policy.reset(3)
    actions = policy.act(obs)
    model = ALGORITHMS[run.config.algo].load(run.model_path, device="cpu")
    expected, _ = model.predict(obs, deterministic=True)
    assert actions.dtype == np.float32 and actions.shape == (3, 5)
    np.testing.assert_array_equal(actions, expected)
    assert np.all(np.abs(actions) <= 1.0)
    again = Sb3Policy.load(run.model_path, name="candidate")  # the zip itself works too
    assert again.name == "candidate"
    # One row instead of three: the same to float32 rounding (BLAS blocks by batch size).
    np.testing.assert_allclose(again.act(obs[:1]), actions[:1], atol=1e-6)
    with pytest.raises(ValueError, match=r"observations of shape \(33,\)"):
        policy.act(obs[:, :33])


def test_load_needs_the_training_record(run: TrainedAgent, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no SB3 model"):
        Sb3Policy.load(tmp_path)
    (tmp_path / "model.zip").write_bytes(run.model_path.read_bytes())
    with pytest.raises(FileNotFoundError, match=r"training\.json"):
        Sb3Policy.load(tmp_path)
    (tmp_path / "training.json").write_text(json.dumps({"algo": "dqn"}))
    with pytest.raises(ValueError, match="'dqn' is not one of ppo, sac, td3"):
        Sb3Policy.load(tmp_path)


def test_trained_agent_runs_through_twin_evaluation(run: TrainedAgent, tmp_path: Path) -> None:
    path = tmp_path / "short-hot.yaml"
    path.write_text(SCENARIO)
    result = evaluate(Sb3Policy.load(run.out_dir), path, on="twin")
    assert result.policy == f"{run.config.algo}-{run.out_dir.name}" and result.on == "twin"
    assert set(HEADLINE_KPIS) <= set(result.kpis)
    assert result.kpis["duration_h"] == pytest.approx(4.0 - 5 / 60)  # the twin: one period less
    assert len(result.series) == 4 * 12 - 1
    assert np.isfinite(result.kpis["cooling_kwh"]) and result.kpis["cooling_kwh"] > 0

"""Training configuration from YAML, and tiny PPO / SAC runs in the batched twin that learn."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from numpy.typing import NDArray
from stable_baselines3.common.noise import NormalActionNoise

from control.gate import GateConfig
from control.suites import load_suite
from control.training import (
    ALGORITHMS,
    TrainConfig,
    TrainedAgent,
    make_training_env,
    tensorboard_available,
    train_agent,
)
from physics.plant.scenario import load_scenario
from twin.ensemble import TwinEnsemble

from ..conftest import SCENARIO

TINY = {"n_envs": 8, "episode_hours": 2.0, "stats_window_size": 8, "shield": False}
"""8 environments, 2-h episodes (24 periods), curves over the last 8 episodes; no shield,
so that random setpoints overheat the racks and the learning curves have something to
learn within a tiny budget (behind the shield they cannot leave the site's setpoints far)."""


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    # Small networks train fastest on one thread, and do not fight over a busy 2-core box.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def returns_curve(agent: TrainedAgent) -> NDArray[np.float64]:
    """Mean episode return (last 8 episodes) at each row of progress.csv."""
    curve = pd.read_csv(agent.progress_csv)["rollout/ep_rew_mean"].dropna()
    return curve.to_numpy(dtype=np.float64)


@pytest.mark.parametrize("algo", ["ppo", "sac", "td3"])
@pytest.mark.parametrize("suite", ["pre-evaluation", "selection", "held-out", "demo"])
def test_packaged_training_scenarios_share_no_day_with_an_evaluation_suite(
    algo: str, suite: str
) -> None:
    # An agent trained on the days gate 1, checkpoint selection or the held-out suite judge it
    # on is judged on what it has memorised: the packaged mix must stay off those days.
    training = [load_scenario(name) for name in TrainConfig.from_yaml(algo).scenarios]
    hot = [s for s in training if s.heat_wave is not None]
    assert hot and any(s.faults for s in hot), "the mix must include heat and unit trips"
    for judged in load_suite(suite).scenarios:
        for trained in training:
            same_weather = judged.weather_file == trained.weather_file
            overlap = (
                judged.start_h < trained.start_h + trained.duration_h
                and trained.start_h < judged.start_h + judged.duration_h
            )
            assert not (same_weather and overlap), f"{trained.name} shares days with {judged.name}"


@pytest.mark.parametrize("algo", ["ppo", "sac", "td3"])
def test_packaged_hyperparameters_load_for_every_algorithm(algo: str) -> None:
    config = TrainConfig.from_yaml(algo)
    assert config.algo == algo and config.env_id == "TwinLoop/DataCenter-v0"
    assert config.episode_hours == 24.0 and config.randomisation
    assert 0.98 <= config.hyperparameters["gamma"] <= 0.99
    assert config.total_timesteps >= 100_000 and config.n_envs >= len(config.scenarios) > 1
    kwargs = config.sb3_kwargs()
    assert kwargs["policy"] == "MlpPolicy"
    assert isinstance(kwargs["policy_kwargs"]["activation_fn"], type)
    assert isinstance(kwargs.get("action_noise"), NormalActionNoise) == (algo == "td3")
    assert "noise_type" not in kwargs
    json.dumps(config.to_dict())  # training.json can hold it
    # SB3 takes the packaged block as it is (8 envs: PPO's 288-step rollout is one batch).
    small = {"n_envs": 8} if algo == "ppo" else {"n_envs": 8, "buffer_size": 1000}
    config = TrainConfig.from_yaml(algo, overrides=small)
    model = ALGORITHMS[algo](env=make_training_env(config), **config.sb3_kwargs())
    assert model.n_envs == 8 and model.policy is not None


def test_overrides_reach_config_fields_and_sb3_arguments() -> None:
    config = TrainConfig.from_yaml(
        "PPO", overrides={"n_envs": 4, "scenarios": ["heat-wave"], "n_steps": 32, "seed": 5}
    )
    assert (config.algo, config.n_envs, config.scenarios, config.seed) == (
        "ppo",
        4,
        ("heat-wave",),
        5,
    )
    assert config.hyperparameters["n_steps"] == 32
    assert config.hyperparameters["batch_size"] == 2304  # untouched keys stay


def test_bad_configurations_are_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"unknown algorithm 'a2c' \(known: ppo, sac, td3\)"):
        TrainConfig.from_yaml("a2c")
    with pytest.raises(ValueError, match=r"unknown env id 'CartPole-v1'.*TwinLoop/DataCenter-v0"):
        TrainConfig.from_yaml("ppo", env_id="CartPole-v1")
    with pytest.raises(ValueError, match=r"learning_rat \(did you mean learning_rate\?\), nsteps"):
        TrainConfig.from_yaml("ppo", overrides={"learning_rat": 1e-3, "nsteps": 8})
    with pytest.raises(ValueError, match=r"unknown ppo hyper-parameter.*noise_std"):
        TrainConfig.from_yaml("ppo", overrides={"noise_std": 0.1})  # off-policy only
    with pytest.raises(ValueError, match=r"unknown sac hyper-parameter.*verbose"):
        TrainConfig.from_yaml("sac", overrides={"verbose": 1})  # train_agent sets it
    with pytest.raises(ValueError, match="activation_fn 'swish'"):
        TrainConfig.from_yaml("td3", overrides={"policy_kwargs": {"activation_fn": "swish"}})
    with pytest.raises(ValueError, match="noise_type 'pink'"):
        TrainConfig.from_yaml("td3", overrides={"noise_type": "pink"})
    with pytest.raises(ValueError, match="n_envs=2 cannot cover 4 scenarios"):
        TrainConfig.from_yaml("sac", overrides={"n_envs": 2})
    with pytest.raises(ValueError, match="episode_hours must be positive"):
        TrainConfig(algo="ppo", episode_hours=0.0)
    with pytest.raises(ValueError, match="checkpoint_every must be 0 or more, got -5"):
        TrainConfig.from_yaml("ppo", overrides={"checkpoint_every": -5})
    with pytest.raises(ValueError, match="total_timesteps must be a positive integer"):
        TrainConfig(algo="ppo", total_timesteps=1.5e5)  # type: ignore[arg-type]
    own = tmp_path / "hp.yaml"
    own.write_text("TwinLoop/DataCenter-v0:\n  ppo: {n_envs: 2}\n")
    assert TrainConfig.from_yaml("ppo", path=own).n_envs == 2
    with pytest.raises(ValueError, match="no sac block under TwinLoop/DataCenter-v0"):
        TrainConfig.from_yaml("sac", path=own)


def test_reward_fields_reach_the_training_env_and_bad_ones_are_named() -> None:
    config = TrainConfig.from_yaml(
        "ppo", overrides={**TINY, "scenarios": ["heat-wave"], "reward": {"violation_kwh_per_kh": 0}}
    )
    assert config.to_dict()["reward"] == {"violation_kwh_per_kh": 0}
    env = make_training_env(config)
    env.reset()
    sim = env.get_attr("sim")[0]
    assert sim.reward_fn.violation_kwh_per_kh == 0.0
    # Without a thermal penalty a hot hall costs nothing: the reward is the energy term alone.
    reward, terms = sim.reward_fn(np.array([50.0]), np.array([[35.0, 40.0]]), 300.0)
    assert terms["thermal_term"][0] == 0.0 and reward[0] == pytest.approx(terms["energy_term"][0])
    assert TrainConfig(algo="ppo").reward_function().violation_kwh_per_kh > 0
    with pytest.raises(ValueError, match=r"unknown reward field\(s\) price \(known: "):
        TrainConfig(algo="ppo", reward={"price": 1.0})
    with pytest.raises(ValueError, match="violation_kwh_per_kh must not be negative"):
        TrainConfig(algo="ppo", reward={"violation_kwh_per_kh": -1.0})
    with pytest.raises(ValueError, match="reward must be a mapping"):
        TrainConfig(algo="ppo", reward=[1.0])  # type: ignore[arg-type]


def test_scenarios_share_out_the_environments() -> None:
    config = TrainConfig(
        algo="ppo", n_envs=5, episode_hours=1.0, scenarios=("heat-wave", "twin-fault-fouling")
    )
    env = make_training_env(config)
    obs = env.reset()
    assert np.asarray(obs).shape == (5, 34)
    assert [sim.scenario.name for sim in env.get_attr("sim")] == ["heat-wave"] * 3 + [
        "twin-fault-fouling"
    ] * 2
    for _ in range(12):  # one episode
        obs, reward, done, infos = env.step(np.zeros((5, 5), dtype=np.float32))
    assert np.asarray(obs).shape == (5, 34) and reward.shape == (5,) and done.all()
    assert all("episode" in info and "terminal_observation" in info for info in infos)


@pytest.fixture(scope="module")
def ppo_run(tmp_path_factory: pytest.TempPathFactory) -> TrainedAgent:
    config = TrainConfig.from_yaml(
        "ppo",
        overrides={
            **TINY,
            "scenarios": ["tropical-typical-week"],
            "total_timesteps": 8 * 48 * 12,
            "n_steps": 48,  # two episodes per environment per rollout
            "batch_size": 192,
            "n_epochs": 5,
            "learning_rate": 1e-3,
            "policy_kwargs": {"net_arch": [64, 64]},
            "checkpoint_every": 1500,
        },
    )
    return train_agent(config, tmp_path_factory.mktemp("ppo"), progress=False)


def test_ppo_learns_in_the_twin_and_writes_its_run(ppo_run: TrainedAgent) -> None:
    for path in (ppo_run.model_path, ppo_run.metadata_path, ppo_run.progress_csv):
        assert path.is_file() and path.stat().st_size > 0
    curve = returns_curve(ppo_run)
    assert len(curve) == 12  # one row per rollout
    first, last = curve[:2].mean(), curve[-2:].mean()
    # Random setpoints overheat the racks (large thermal penalty); PPO learns to avoid it.
    assert first < -300.0
    assert last > 0.3 * first
    meta = json.loads(ppo_run.metadata_path.read_text())
    assert meta["algo"] == "ppo" and meta["timesteps"] == ppo_run.timesteps == 4608
    assert meta["config"]["hyperparameters"]["n_steps"] == 48
    assert meta["final_mean_episode_return"] == pytest.approx(curve[-1], rel=1e-5)
    assert meta["wall_s"] > 0 and "stable_baselines3" in meta["versions"]


def test_checkpoints_are_loadable_agents_indexed_by_steps_and_wall_clock(
    ppo_run: TrainedAgent,
) -> None:
    from control.agents import Sb3Policy

    index = pd.read_csv(ppo_run.out_dir / "checkpoints.csv")
    # 8 environments: the first vector steps at or past 1,500, 3,000 and 4,500 steps.
    assert index["timesteps"].tolist() == [1504, 3000, 4504]
    assert index["wall_s"].is_monotonic_increasing and (index["wall_s"] > 0).all()
    total = json.loads(ppo_run.metadata_path.read_text())["wall_s"]
    assert index["wall_s"].iloc[-1] <= total
    last = Sb3Policy.load(ppo_run.out_dir / index["path"].iloc[-1])
    meta = last.metadata
    assert meta["timesteps"] == 4504 and meta["algo"] == "ppo"
    assert meta["config"]["checkpoint_every"] == 1500
    first = Sb3Policy.load(ppo_run.out_dir / index["path"].iloc[0])
    obs = np.zeros((1, 34), dtype=np.float32)
    # Snapshots of a learning agent: later ones act differently.
    assert not np.allclose(
        first.model.predict(obs, deterministic=True)[0],
        last.model.predict(obs, deterministic=True)[0],
    )


def test_sac_learns_over_a_scenario_mix_with_a_progress_bar(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    config = TrainConfig.from_yaml(
        "sac",
        overrides={
            **TINY,
            "scenarios": ["tropical-typical-week", "twin-fault-fouling"],
            "total_timesteps": 3000,
            "learning_starts": 500,
            "buffer_size": 10_000,
            "batch_size": 128,
            "gradient_steps": 1,
            "policy_kwargs": {"net_arch": [64, 64]},
        },
    )
    with caplog.at_level(logging.WARNING, logger="control.training"):
        agent = train_agent(config, tmp_path / "sac", progress=True)
    assert "3000/3000" in capsys.readouterr().err  # the tqdm bar ran to the end
    if tensorboard_available():
        assert agent.tensorboard and any(tmp_path.glob("sac/events.out.tfevents.*"))
    else:
        assert not agent.tensorboard and "tensorboard is not installed" in caplog.text
    assert agent.model_path.is_file() and agent.metadata_path.is_file()
    curve = returns_curve(agent)
    assert len(curve) == 3000 // (8 * 24)  # one row per batch of episodes
    assert curve[:2].mean() < -250.0
    assert curve[-2:].mean() > 0.5 * curve[:2].mean()


def test_pessimism_prices_the_twins_doubt_and_the_actuators_travel(
    ensemble_twin: TwinEnsemble, tmp_path: Path
) -> None:
    ensemble_twin.save(tmp_path / "twin")
    pessimism = {"spread_kwh_per_k": 50.0, "extrapolation_kwh": 25.0, "travel_kwh": 2.0}
    config = TrainConfig(
        algo="ppo",
        n_envs=8,
        episode_hours=1.0,
        scenarios=("tropical-typical-week",),
        twin=str(tmp_path / "twin"),
        pessimism=pessimism,
        member_per_episode=True,
        shield=False,  # behind the shield this chatter never leaves the twin's data
    )
    assert config.to_dict()["pessimism"] == pessimism
    env = make_training_env(config)
    env.reset()
    sim = env.get_attr("sim")[0]
    assert sim.pessimism is not None and sim.track_spread and sim.competence is not None
    drawn: set[int] = set()
    rng = np.random.default_rng(0)
    for period in range(24):  # two episodes: members drawn again at the reset
        # Chatter: every component jumps across its range every period.
        actions = np.where(rng.random((8, 5)) < 0.5, -1.0, 1.0).astype(np.float32)
        _, _, _, infos = env.step(actions)
        drawn |= set(sim.member_of.tolist())
        if period == 0:
            assert all(i["travel_penalty_kwh"] > 0 for i in infos)
    assert drawn == {0, 1}
    assert max(i["extrapolation_penalty_kwh"] for i in infos) > 0
    assert max(i["spread_penalty_kwh"] for i in infos) > 0
    with pytest.raises(ValueError, match=r"unknown pessimism field\(s\) doubt"):
        TrainConfig(algo="ppo", pessimism={"doubt": 1.0})
    with pytest.raises(ValueError, match="travel_kwh must be a non-negative number"):
        TrainConfig(algo="ppo", pessimism={"travel_kwh": -1.0})


def test_the_snapshot_kept_is_the_best_pessimistic_one_on_the_selection_suite(
    ppo_run: TrainedAgent, ensemble_twin: TwinEnsemble, tmp_path: Path
) -> None:
    from control.selection import SELECTION_FILE, select_snapshot, snapshots

    for name, start in (("sel-a", "06-24"), ("sel-b", "09-14")):
        text = SCENARIO.format(name=name, start=start, duration="4 h", seed=3)
        (tmp_path / f"{name}.yaml").write_text(text)
    suite = tmp_path / "selection.yaml"
    suite.write_text("name: sel\ntarget: twin\nscenarios: [sel-a.yaml, sel-b.yaml]\n")
    found = snapshots(ppo_run.out_dir)
    assert len(found) == 4 and found[-1] == ppo_run.out_dir  # 3 snapshots + the final model
    lax = GateConfig(max_violation_kh_above_27=1e6, max_extrapolating_share=1.0,
                     max_inlet_spread_c=100.0, max_cooling_spread_percent=100.0)  # fmt: skip
    selection = select_snapshot(ppo_run.out_dir, ensemble_twin, suite=str(suite), gate=lax)
    scores = [row["score"] for row in selection.rows]
    assert len(scores) == 4 and all(np.isfinite(scores))
    best = Path(selection.rows[int(np.argmax(scores))]["snapshot"])
    assert selection.chosen == ppo_run.out_dir / "selected"
    assert (selection.chosen / "model.zip").read_bytes() == (best / "model.zip").read_bytes()
    saved = json.loads((ppo_run.out_dir / SELECTION_FILE).read_text())
    assert saved["chosen"] == str(best) and len(saved["rows"]) == 4
    # Under the shipped rules a snapshot that breaks one scores nothing; if all break one,
    # nothing is chosen (and nothing would be registered).
    strict = select_snapshot(ppo_run.out_dir, ensemble_twin, suite=str(suite))
    for row in strict.rows:
        assert (row["score"] == -np.inf) == bool(row["broken"]), row
    if strict.chosen is None:
        assert all(row["broken"] for row in strict.rows)


def test_agents_train_behind_the_sites_shield_by_default(tmp_path: Path) -> None:
    from control.sb3_env import ShieldedVecEnv

    n = len(TrainConfig.from_yaml("ppo").scenarios)  # one environment per packaged scenario
    config = TrainConfig.from_yaml("ppo", overrides={"n_envs": n, "episode_hours": 1.0})
    assert config.shield and config.to_dict()["shield"] is True
    env = make_training_env(config)
    mix = env.venv
    assert all(isinstance(part, ShieldedVecEnv) for part in mix.parts)  # every scenario
    env.reset()
    chatter = np.tile(np.array([1.0, -1.0, 1.0, -1.0, 1.0], dtype=np.float32), (n, 1))
    for _ in range(3):
        chatter = -chatter
        env.step(chatter)
    assert all(part.interventions > 0 for part in mix.parts)
    unshielded = make_training_env(dataclasses.replace(config, shield=False))
    assert not any(isinstance(part, ShieldedVecEnv) for part in unshielded.venv.parts)
    with pytest.raises(ValueError, match="shield must be true or false"):
        TrainConfig(algo="ppo", shield="yes")  # type: ignore[arg-type]

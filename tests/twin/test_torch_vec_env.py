"""The device-resident vector env: the vector env's dynamics, its contract, torch throughout."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import Tensor

from twin.ensemble import TwinEnsemble
from twin.reward import Pessimism
from twin.torch_vec_env import (
    NumpyTwinVectorEnv,
    TorchTwinVectorEnv,
    economiser_threshold_c,
)
from twin.vec_env import Randomisation, TwinVectorEnv

SCENARIO = "tropical-typical-week"


def _twins(n: int, **kwargs: object) -> tuple[TwinVectorEnv, TorchTwinVectorEnv]:
    """The numpy vector env and the device env, the latter in the episodes the former drew."""
    old = TwinVectorEnv(n, scenario=SCENARIO, **kwargs)  # type: ignore[arg-type]
    new = TorchTwinVectorEnv(n, scenario=SCENARIO, **kwargs)  # type: ignore[arg-type]
    old.reset(seed=5)
    new.reset(seed=5)
    s = old.sim
    new.sim.forget_episodes()
    new.sim.set_episodes(
        torch.arange(n), s.start, s.theta, s.it_scale, s.weather_offset_k, s.member_of
    )
    return old, new


def _compare(old: TwinVectorEnv, new: TorchTwinVectorEnv, steps: int) -> None:
    n = old.num_envs
    np.testing.assert_allclose(new.sim.observe_tensor().numpy(), old.sim.observe(), atol=1e-4)
    rng = np.random.default_rng(0)
    for _ in range(steps):
        a = rng.uniform(-1.0, 1.0, (n, 5)).astype(np.float32)
        obs, reward, _, truncated, _ = old.step(a)
        obs_t, reward_t, _, truncated_t, _ = new.step(torch.from_numpy(a))
        np.testing.assert_allclose(obs_t.numpy(), obs, atol=1e-4)
        np.testing.assert_allclose(reward_t.numpy(), reward, rtol=1e-4, atol=1e-4)
        np.testing.assert_array_equal(truncated_t.numpy(), truncated)


def test_device_env_follows_the_vector_env_over_more_than_a_day() -> None:
    # 25-hour episodes: the IT forecast's seasonal rule (yesterday's load) comes into play.
    old, new = _twins(
        3,
        episode_hours=25.0,
        randomisation=Randomisation(),
        seed=1,
        pessimism=Pessimism(travel_kwh=2.0),
    )
    assert new.sim.weather_forecast.level != "none"  # the forecast error must be applied
    _compare(old, new, 299)


def test_device_env_follows_the_penalised_ensemble(ensemble_twin: TwinEnsemble) -> None:
    kwargs = {
        "twin": ensemble_twin,
        "episode_hours": 2.0,
        "randomisation": Randomisation(),
        "seed": 2,
        "pessimism": Pessimism(spread_kwh_per_k=10.0, extrapolation_kwh=25.0, travel_kwh=2.0),
        "member_per_episode": True,
    }
    old, new = _twins(6, **kwargs)
    assert new.sim.device_competence is not None and new.sim.track_spread
    _compare(old, new, 20)
    terms = new.reward_terms()
    assert float(terms["spread_penalty_kwh"].max()) > 0.0
    np.testing.assert_allclose(
        terms["extrapolation_penalty_kwh"].numpy(),
        25.0 * np.maximum(old.sim.last_competence_ratio - 1.0, 0.0),
        rtol=1e-3,
        atol=1e-3,
    )


def test_device_env_autoresets_in_the_same_step() -> None:
    env = TorchTwinVectorEnv(4, scenario=SCENARIO, episode_hours=0.5, seed=0, info_terms=True)
    obs, info = env.reset(seed=0)
    first_start = info["start_period"].clone()
    a = torch.zeros(4, 5)
    for _ in range(5):
        _, _, _, truncated, infos = env.step(a)
        assert not bool(truncated.any()) and "final_obs" not in infos
    obs, reward, terminated, truncated, infos = env.step(a)
    assert bool(truncated.all()) and not bool(terminated.any())
    assert bool(infos["_final_obs"].all())
    assert not torch.allclose(infos["final_obs"], obs)  # obs starts the next episode
    assert bool((env.sim.elapsed == 0).all())
    assert not torch.equal(env.sim.start, first_start)  # new starts drawn on the device
    torch.testing.assert_close(reward, infos["energy_term"] + infos["thermal_term"])
    _, _, _, truncated, _ = env.step(a)
    assert not bool(truncated.any())
    with pytest.raises(ValueError, match="shape"):
        env.step(torch.zeros(3, 5))


def test_step_path_stays_in_torch_on_the_envs_device() -> None:
    env = TorchTwinVectorEnv(
        3, scenario=SCENARIO, episode_hours=0.25, randomisation=Randomisation(), seed=0
    )
    obs, _ = env.reset(seed=0)
    assert env.device == torch.device("cpu")
    for _ in range(4):  # across an autoreset
        obs, reward, terminated, truncated, infos = env.step(torch.zeros(3, 5))
        for value in (obs, reward, terminated, truncated, *infos.values()):
            assert isinstance(value, Tensor) and value.device == env.device
        assert obs.dtype == torch.float32 and obs.shape == (3, env.sim.spec.size)
        assert terminated.dtype == torch.bool and truncated.dtype == torch.bool
    assert env.single_observation_space.contains(obs[0].numpy())
    assert env.sim.load_history is None  # the host-side history is not used


def test_reset_seeds_the_device_generator() -> None:
    kwargs = {"scenario": SCENARIO, "episode_hours": 1.0, "randomisation": Randomisation()}
    env = TorchTwinVectorEnv(8, **kwargs)  # type: ignore[arg-type]
    a, _ = env.reset(seed=3)
    theta = env.sim.theta.clone()
    b, _ = env.reset(seed=3)
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(env.sim.theta, theta)
    assert float(theta.std(dim=0).min()) > 0.01
    low, high = torch.tensor(Randomisation().theta_low), torch.tensor(Randomisation().theta_high)
    assert bool((theta >= low - 1e-6).all() and (theta <= high + 1e-6).all())
    c, _ = env.reset(seed=4)
    assert not torch.allclose(a, c)


def test_numpy_adapter_gives_the_vector_envs_arrays() -> None:
    env = NumpyTwinVectorEnv(2, scenario=SCENARIO, episode_hours=0.25, seed=0)
    obs, _ = env.reset(seed=0)
    assert isinstance(obs, np.ndarray) and env.observation_space.contains(obs)
    for _ in range(3):
        obs, reward, _, truncated, infos = env.step(np.zeros((2, 5), np.float32))
        assert isinstance(reward, np.ndarray) and reward.shape == (2,)
        assert env.observation_space.contains(obs)
    assert truncated.all() and infos["final_obs"].dtype == object
    assert infos["final_obs"][0].shape == (env.env.sim.spec.size,)
    with pytest.raises(ValueError, match="finite"):
        env.step(np.full((2, 5), np.nan, np.float32))


def test_economiser_threshold_splits_the_sites_own_control() -> None:
    from physics.plant.site_control import site_setpoints
    from twin.design import TwinDesign

    defaults = TwinDesign.for_variant("reference").defaults
    wet = economiser_threshold_c(defaults)
    below = site_setpoints(defaults, np.array([wet - 1e-3])).economiser_enable[0]
    above = site_setpoints(defaults, np.array([wet + 1e-3])).economiser_enable[0]
    assert (below, above) == (1.0, 0.0)

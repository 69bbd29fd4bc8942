"""The twin as Gymnasium environments: single and vectorised (the SB3 adapter is
``control/sb3_env.py``'s)."""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import twin  # noqa: F401  (registers the ids)
from physics.plant.scenario import load_scenario
from twin.design import TwinDesign
from twin.ensemble import TwinEnsemble
from twin.exogenous import ExogenousTable
from twin.surrogate import THETA_NAMES, PhysicsTwin
from twin.twin_env import TwinEnv
from twin.vec_env import Randomisation, TwinVectorEnv

SCENARIO = "tropical-typical-week"


def test_single_env_passes_both_checkers() -> None:
    env = TwinEnv(SCENARIO, episode_hours=2.0)
    gym_check_env(env, skip_render_check=True)
    sb3_check_env(TwinEnv(SCENARIO, episode_hours=2.0), warn=True)


def test_registered_ids_make_single_and_vector_envs() -> None:
    env = gymnasium.make("TwinLoop/DataCenter-v0", episode_hours=1.0)
    obs, _ = env.reset(seed=0)
    assert obs.shape == env.observation_space.shape
    vec = gymnasium.make_vec(
        "TwinLoop/DataCenter-v0",
        num_envs=3,
        vectorization_mode="vector_entry_point",
        episode_hours=1.0,
    )
    assert isinstance(vec.unwrapped, TwinVectorEnv)
    obs, _ = vec.reset(seed=0)
    assert obs.shape == (3, env.observation_space.shape[0])


def test_episode_truncates_on_time_and_reward_is_its_terms() -> None:
    env = TwinEnv(SCENARIO, episode_hours=1.0)
    env.reset(seed=3)
    for k in range(12):
        _, reward, terminated, truncated, info = env.step(np.zeros(5, dtype=np.float32))
        assert not terminated
        assert truncated == (k == 11)
        assert reward == pytest.approx(info["energy_term"] + info["thermal_term"])
        assert info["cooling_kwh"] > 0
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.zeros(5, dtype=np.float32))


def test_same_seed_same_trajectory_and_seeds_move_the_start() -> None:
    def run(seed: int) -> tuple[float, np.ndarray]:
        env = TwinEnv(SCENARIO, episode_hours=1.0, randomisation=Randomisation())
        _, info = env.reset(seed=seed)
        obs = [env.step(np.full(5, 0.3, dtype=np.float32))[0] for _ in range(4)]
        return info["time_h"], np.stack(obs)

    t1, a = run(7)
    t2, b = run(7)
    assert t1 == t2 and np.array_equal(a, b)
    starts = {run(s)[0] for s in range(6)}
    assert len(starts) > 1


def test_warm_supply_air_warms_the_racks_and_saves_energy() -> None:
    def hold(action: float) -> tuple[float, float]:
        env = TwinEnv(SCENARIO, episode_hours=2.0)
        env.reset(seed=1)
        a = np.array([action, 0.0, 0.0, 0.0, -1.0], dtype=np.float32)
        for _ in range(24):
            _, _, _, _, info = env.step(a)
        return info["max_inlet_c"], info["cooling_kwh"]

    cold_inlet, cold_kwh = hold(-0.8)
    warm_inlet, warm_kwh = hold(0.4)
    assert warm_inlet > cold_inlet + 5.0
    assert warm_kwh < cold_kwh


def test_vector_env_matches_single_env() -> None:
    single = TwinEnv(SCENARIO, episode_hours=1.0)
    vec = TwinVectorEnv(1, scenario=SCENARIO, episode_hours=1.0)
    o1, _ = single.reset(seed=5)
    o2, _ = vec.reset(seed=5)
    np.testing.assert_allclose(o1, o2[0], atol=1e-6)
    a = np.array([0.2, -0.3, 0.1, 0.5, -1.0], dtype=np.float32)
    for _ in range(5):
        o1, r1, *_ = single.step(a)
        o2, r2, *_ = vec.step(a[None, :])
    np.testing.assert_allclose(o1, o2[0], atol=1e-5)
    assert r1 == pytest.approx(float(r2[0]), rel=1e-6)


def test_vector_env_autoresets_in_the_same_step() -> None:
    vec = TwinVectorEnv(4, scenario=SCENARIO, episode_hours=0.5, seed=0)
    vec.reset(seed=0)
    a = np.zeros((4, 5), dtype=np.float32)
    for _ in range(5):
        _, _, _, truncated, infos = vec.step(a)
        assert not truncated.any() and "final_obs" not in infos
    obs, reward, terminated, truncated, infos = vec.step(a)
    assert truncated.all() and not terminated.any()
    assert infos["_final_obs"].all()
    final = np.stack(list(infos["final_obs"]))
    assert not np.allclose(final, obs)  # the returned observation starts the next episode
    assert infos["energy_term"].shape == (4,) and infos["_energy_term"].all()
    np.testing.assert_allclose(reward, infos["energy_term"] + infos["thermal_term"])
    with pytest.raises(ValueError, match="shape"):
        vec.step(np.zeros((3, 5), dtype=np.float32))


def test_members_are_spread_over_environments(design: TwinDesign) -> None:
    members = [PhysicsTwin(design, residual_hidden=0) for _ in range(2)]
    with torch.no_grad():
        members[1].raw_chiller_eir_mult.fill_(0.2)  # a member that predicts costlier chillers
    vec = TwinVectorEnv(4, scenario=SCENARIO, twin=TwinEnsemble(members), episode_hours=1.0)
    vec.sim.last_start = 0  # every episode starts at the scenario's start
    vec.reset(seed=0)  # the four environments now differ only by member
    _, _, _, _, infos = vec.step(np.zeros((4, 5), dtype=np.float32))
    cooling = infos["cooling_kwh"]
    assert cooling[2] > cooling[0] and cooling[3] > cooling[1]


def test_randomisation_draws_parameters_inside_their_ranges() -> None:
    r = Randomisation()
    vec = TwinVectorEnv(64, scenario=SCENARIO, episode_hours=1.0, randomisation=r, seed=0)
    vec.reset(seed=0)
    theta = vec.sim.theta.numpy()
    assert (theta >= np.array(r.theta_low) - 1e-6).all()
    assert (theta <= np.array(r.theta_high) + 1e-6).all()
    assert theta.std(axis=0).min() > 0.01
    with pytest.raises(ValueError, match="low <= high"):
        Randomisation(it_power_scale=(1.2, 0.8))


def test_scenario_faults_reach_the_twin() -> None:
    table = ExogenousTable.from_scenario(load_scenario("twin-fault-fouling"))
    ua = table.theta_fault[:, THETA_NAMES.index("coil_ua_mult")]
    eir = table.theta_fault[:, THETA_NAMES.index("chiller_eir_mult")]
    hours = table.time_h - table.time_h[0]
    assert np.allclose(ua[hours < 7.9], 1.0) and np.allclose(ua[hours > 8.1], 0.7)
    assert np.allclose(eir[hours < 7.9], 1.0) and (eir[hours > 8.1] > 1.05).all()


def test_bad_construction_is_refused(design: TwinDesign) -> None:
    with pytest.raises(ValueError, match="does not fit"):
        TwinEnv(SCENARIO, episode_hours=24 * 30)
    with pytest.raises(ValueError, match="episode_hours"):
        TwinEnv(SCENARIO, episode_hours=0.0)
    with pytest.raises(ValueError, match="control period"):
        TwinEnv(SCENARIO, twin=PhysicsTwin(design, step_s=60.0))
    with pytest.raises(ValueError, match="num_envs"):
        TwinVectorEnv(0)
    env = TwinEnv(SCENARIO, episode_hours=1.0)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="shape"):
        env.step(np.zeros(4, dtype=np.float32))
    with pytest.raises(ValueError, match="finite"):
        env.step(np.array([np.nan, 0, 0, 0, 0], dtype=np.float32))


@pytest.mark.slow
def test_compiled_twin_steps_like_the_eager_one() -> None:
    eager = TwinEnv(SCENARIO, episode_hours=1.0)
    compiled = TwinEnv(SCENARIO, episode_hours=1.0, compile=True)
    o1, _ = eager.reset(seed=2)
    o2, _ = compiled.reset(seed=2)
    a = np.array([0.1, 0.2, -0.3, 0.4, 1.0], dtype=np.float32)
    for _ in range(6):
        o1, r1, *_ = eager.step(a)
        o2, r2, *_ = compiled.step(a)
    np.testing.assert_allclose(o1, o2, atol=1e-4)
    assert r1 == pytest.approx(r2, rel=1e-4)

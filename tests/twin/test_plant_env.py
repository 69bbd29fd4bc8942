"""The plant environment: Gymnasium and SB3 API checks, registration, episode length, actions
reaching the plant, the reward's bookkeeping, seeding, random starts and bad input."""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from numpy.typing import NDArray
from stable_baselines3.common.env_checker import check_env as sb3_check_env

from physics.kpi import COOLING_COLUMNS, energy_kwh
from physics.plant.faults import FaultEvent
from physics.plant.scenario import Scenario, load_scenario
from physics.plant.simulation import build_plant
from physics.plant.site_control import SetpointCommand
from twin.plant_env import OBSERVATION_BOUND, PlantEnv, shift_faults
from twin.registration import ENV_SPECS, register_envs
from twin.reward import CoolingEnergyReward
from twin.spaces import ACTION_NAMES

ENV_ID = "TwinLoop/DataCenterPlant-v0"
PERIOD_H = 5.0 / 60.0

SHORT = """\
name: env-short
site: {variant: reference, seed: 7}
weather: {file: "pvlib:miami", start: "07-01 10:00"}
workload: {kind: diurnal, mean_frac: 0.6, amplitude_frac: 0.15}
duration: 6 h
step: 60 s
control_period: 5 min
sensor_noise: 1.0
seed: 1
"""


@pytest.fixture(scope="module")
def scenario_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("scenarios") / "env-short.yaml"
    path.write_text(SHORT, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def scenario(scenario_path: Path) -> Scenario:
    return load_scenario(scenario_path)


def _env(scenario: Scenario, episode_hours: float | None = 2.0, **kwargs: Any) -> PlantEnv:
    return PlantEnv(scenario, episode_hours=episode_hours, **kwargs)


def _raw(env: PlantEnv, obs: NDArray[np.float32], name: str) -> float:
    """An observation component back in its unit."""
    centre, scale = env.observation_spec.centre_scale()
    i = env.observation_spec.names.index(name)
    return float(obs[i]) * float(scale[i]) + float(centre[i])


def _rollout(
    env: PlantEnv, actions: NDArray[np.float32], seed: int | None = None
) -> tuple[list[NDArray[np.float32]], list[float], list[dict[str, Any]]]:
    obs, info = env.reset(seed=seed)
    observations, rewards, infos = [obs], [], [info]
    for action in actions:
        obs, reward, terminated, truncated, info = env.step(action)
        assert terminated is False
        observations.append(obs)
        rewards.append(reward)
        infos.append(info)
        if truncated:
            break
    return observations, rewards, infos


def _no_warnings(caught: list[warnings.WarningMessage]) -> None:
    messages = [str(w.message) for w in caught if not issubclass(w.category, DeprecationWarning)]
    assert messages == []


# --------------------------------------------------------------------------- API checks
def test_gymnasium_check_env_passes_without_warnings(scenario_path: Path) -> None:
    env = gym.make(ENV_ID, scenario=str(scenario_path), episode_hours=1.0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gym_check_env(env.unwrapped)
    _no_warnings(caught)


def test_sb3_check_env_passes_without_warnings(scenario: Scenario) -> None:
    env = _env(scenario)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sb3_check_env(env, warn=True)
    _no_warnings(caught)


def test_spaces_are_the_scaled_action_and_bounded_observation(scenario: Scenario) -> None:
    env = _env(scenario)
    assert env.action_space.shape == (len(ACTION_NAMES),)
    assert env.action_space.dtype == np.float32
    assert np.all(env.action_space.low == -1.0) and np.all(env.action_space.high == 1.0)
    assert env.observation_space.shape == (env.observation_spec.size,)
    assert env.observation_space.dtype == np.float32
    assert np.all(env.observation_space.high == OBSERVATION_BOUND)
    obs, _ = env.reset(seed=0)
    assert obs.dtype == np.float32 and obs in env.observation_space
    last_action = [i for i, n in enumerate(env.observation_spec.names) if "last_action" in n]
    assert np.all(obs[last_action] == 0.0)


def test_make_builds_the_registered_env(scenario_path: Path) -> None:
    env = gym.make(ENV_ID, scenario=scenario_path, episode_hours=0.5)
    assert env.spec is not None and env.spec.id == ENV_ID
    assert env.spec.max_episode_steps is None
    assert isinstance(env.unwrapped, PlantEnv)
    obs, _ = env.reset(seed=1)
    assert obs in env.observation_space
    steps, truncated = 0, False
    while not truncated:
        _, _, _, truncated, _ = env.step(env.action_space.sample())
        steps += 1
    assert steps == 6


def test_register_envs_is_idempotent() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        register_envs()
        register_envs()
    _no_warnings(caught)
    for env_id, entry_point, _ in ENV_SPECS:
        assert gym.spec(env_id).entry_point == entry_point


# --------------------------------------------------------------------------- episodes
def test_episode_truncates_after_exactly_its_periods(scenario: Scenario) -> None:
    env = _env(scenario, episode_hours=1.5)
    assert env.episode_periods == 18
    _, info = env.reset(seed=0)
    start_h = info["time_h"]
    for k in range(1, 19):
        _, _, terminated, truncated, info = env.step(np.zeros(5, dtype=np.float32))
        assert terminated is False
        assert truncated is (k == 18)
        assert info["time_h"] == pytest.approx(start_h + k * PERIOD_H)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.zeros(5, dtype=np.float32))
    env.reset()  # a new episode after truncation
    env.step(np.zeros(5, dtype=np.float32))


def test_default_episode_is_the_scenario_after_the_lead_in(scenario: Scenario) -> None:
    env = _env(scenario, episode_hours=None)
    assert env.episode_periods == 6 * 12 - 1
    _, rewards, _ = _rollout(env, np.zeros((100, 5), dtype=np.float32))
    assert len(rewards) == env.episode_periods
    assert env.plant is not None and env.plant.done  # the whole scenario was used


def test_supply_air_action_reaches_the_plant(scenario: Scenario) -> None:
    env = _env(scenario)
    ends = {}
    for sign in (1.0, -1.0):
        action = np.zeros((24, 5), dtype=np.float32)
        action[:, 0] = sign
        observations, _, infos = _rollout(env, action, seed=0)
        obs = observations[-1]
        inlet = np.mean([_raw(env, obs, f"rack_inlet_mean_c.{p}") for p in range(4)])
        ends[sign] = (_raw(env, obs, "supply_air_c"), inlet, infos[-1]["setpoints"])
    high, low = ends[1.0], ends[-1.0]
    assert high[2]["supply_air_c"] == env.action_scale.supply_air_c[1]
    assert low[2]["supply_air_c"] == env.action_scale.supply_air_c[0]
    assert high[0] > low[0] + 8.0  # supply-air reading follows the setpoint
    assert high[1] > low[1] + 8.0  # and so do the rack inlets


def test_reward_is_the_sum_of_its_terms_and_info_is_complete(scenario: Scenario) -> None:
    env = _env(scenario, episode_hours=1.0)
    # Warm supply air at minimum fan speed: rack inlets go above 27 °C, so both terms bite.
    action = np.tile(np.array([1.0, -1.0, 0.0, 0.0, -1.0], dtype=np.float32), (12, 1))
    _, rewards, infos = _rollout(env, action, seed=0)
    term_names = set(CoolingEnergyReward()(10.0, np.array([20.0]), 300.0)[1])
    for reward, info in zip(rewards, infos[1:], strict=True):
        assert term_names <= set(info)
        assert reward == pytest.approx(info["energy_term"] + info["thermal_term"], abs=1e-12)
        assert set(info["setpoints"]) == set(ACTION_NAMES)
        for key in ("true_cooling_kwh", "true_facility_kwh", "true_it_kwh", "true_max_inlet_c"):
            assert isinstance(info[key], float) and math.isfinite(info[key])
        assert info["true_facility_kwh"] > info["true_it_kwh"] + info["true_cooling_kwh"]
        # Metered cooling energy and the plant's true cooling energy agree to meter noise.
        assert info["cooling_kwh"] == pytest.approx(info["true_cooling_kwh"], rel=0.03)
        assert info["max_inlet_c"] == pytest.approx(info["true_max_inlet_c"], abs=1.0)
    assert min(info["thermal_term"] for info in infos[1:]) < 0.0
    assert max(info["max_inlet_c"] for info in infos[1:]) > 27.0


def test_env_runs_the_scenarios_plant(scenario: Scenario) -> None:
    """Without a random start the env's plant is build_plant's: same readings, same truth."""
    env = _env(scenario, episode_hours=1.0)
    env.reset(seed=0)
    action = np.array([0.2, 0.5, -0.3, 0.1, -1.0], dtype=np.float32)
    _, _, _, _, info = env.step(action)

    ref = build_plant(scenario)
    ref.advance(scenario.steps_per_period)  # the lead-in under the site's control
    ref.apply_command(
        SetpointCommand(
            command_id="ref",
            expires_at_s=ref.time_s + scenario.control_period_s,
            **info["setpoints"],
        )
    )
    logs, readings = ref.advance(scenario.steps_per_period)
    assert env.plant is not None and env.plant.last_frame is not None
    np.testing.assert_array_equal(env.plant.last_frame.values, readings[-1])
    cooling = [ref.log_names.index(c) for c in COOLING_COLUMNS]
    expected = energy_kwh(logs[:, 0, cooling].sum(axis=1), scenario.step_s)
    assert info["true_cooling_kwh"] == pytest.approx(expected, rel=1e-12)


def test_same_seed_gives_the_same_trajectory(scenario: Scenario) -> None:
    actions = np.random.default_rng(5).uniform(-1, 1, (8, 5)).astype(np.float32)
    runs = [_rollout(_env(scenario, random_start=True), actions, seed=11) for _ in range(2)]
    again = _env(scenario, random_start=True)
    _rollout(again, actions, seed=3)
    runs.append(_rollout(again, actions, seed=11))  # a reused env resets cleanly too
    for obs, rewards, infos in runs[1:]:
        np.testing.assert_array_equal(np.stack(obs), np.stack(runs[0][0]))
        assert rewards == runs[0][1]
        assert [i["true_cooling_kwh"] for i in infos[1:]] == [
            i["true_cooling_kwh"] for i in runs[0][2][1:]
        ]


def test_random_start_draws_every_start_that_fits(scenario: Scenario) -> None:
    # 70 of the 72 periods: after the lead-in the episode can start at period 1 or 2.
    env = _env(scenario, episode_hours=70 * PERIOD_H, random_start=True)
    starts: dict[int, float] = {}
    for seed in range(12):
        _, info = env.reset(seed=seed)
        starts[info["start_period"]] = info["time_h"]
    assert set(starts) == {1, 2}
    assert starts[2] - starts[1] == pytest.approx(PERIOD_H)
    for seed in (0, 1, 2):  # the latest start still runs the whole episode
        _, rewards, _ = _rollout(env, np.zeros((80, 5), dtype=np.float32), seed=seed)
        assert len(rewards) == 70


def test_random_start_follows_the_seed(scenario: Scenario) -> None:
    env = _env(scenario, episode_hours=1.0, random_start=True)
    starts = [env.reset(seed=seed)[1]["start_period"] for seed in range(8)]
    assert len(set(starts)) > 1
    assert all(1 <= s <= 72 - 12 for s in starts)
    assert [env.reset(seed=seed)[1]["start_period"] for seed in range(8)] == starts
    fixed = _env(scenario, episode_hours=1.0)
    assert {fixed.reset(seed=seed)[1]["start_period"] for seed in range(4)} == {1}


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"episode_hours": 6.0}, "does not fit in scenario env-short"),
        ({"episode_hours": 0.0}, "positive"),
        ({"episode_hours": -1.0}, "positive"),
        ({"episode_hours": math.nan}, "positive"),
        ({"episode_hours": 0.1}, "whole number of control periods"),
    ],
)
def test_bad_constructor_input_names_the_problem(
    scenario: Scenario, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        _env(scenario, **kwargs)


def test_unknown_scenario_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="no-such-scenario"):
        PlantEnv("no-such-scenario")


@pytest.mark.parametrize(
    "action",
    [np.zeros(4), np.zeros((1, 5)), np.array([0, 0, np.nan, 0, 0]), np.array([np.inf, 0, 0, 0, 0])],
    ids=["short", "batched", "nan", "inf"],
)
def test_bad_action_is_a_value_error(scenario: Scenario, action: NDArray[np.float64]) -> None:
    env = _env(scenario, episode_hours=0.5)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="action"):
        env.step(action.astype(np.float32))


def test_step_before_reset_is_refused(scenario: Scenario) -> None:
    with pytest.raises(RuntimeError, match="reset"):
        _env(scenario, episode_hours=0.5).step(np.zeros(5, dtype=np.float32))


# --------------------------------------------------------------------------- faults
def test_shift_faults_keeps_what_the_window_sees() -> None:
    events = (
        FaultEvent("chiller_trip", start_h=0.5, duration_h=1.0),  # over before the window
        FaultEvent("coil_fouling", start_h=1.0, duration_h=3.0),  # active at the window start
        FaultEvent("pump_wear", start_h=0.0),  # permanent
        FaultEvent("crah_fan_trip", start_h=4.0, duration_h=0.5),  # later
    )
    shifted = shift_faults(events, 2.0)
    assert [(e.kind, e.start_h, e.duration_h) for e in shifted] == [
        ("coil_fouling", 0.0, 2.0),
        ("pump_wear", 0.0, None),
        ("crah_fan_trip", 2.0, 0.5),
    ]
    assert shift_faults(events, 0.0) == events

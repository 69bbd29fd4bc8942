"""The sensor validator on the real plant: a biased or stuck inlet sensor is flagged from
its neighbours, a biased supply-air sensor from the coil's heat balance, a clean week is
not, and the substitute tracks the truth."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from physics.plant.faults import FaultEvent
from physics.plant.scenario import Scenario, load_scenario
from physics.plant.simulation import build_plant
from twin.plant_env import PlantEnv
from twin.sensor_check import SensorCheckConfig, SensorFlag, SensorValidator

ONSET_H = 6.0


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    return load_scenario("holdout-typical-week")


def faulty(
    scenario: Scenario,
    kind: str,
    point: str,
    magnitude: float | None = None,
    duration_h: float | None = None,
) -> Scenario:
    event = FaultEvent(kind, ONSET_H, duration_h=duration_h, magnitude=magnitude, target=point)
    return replace(scenario, faults=(event,))


def hot_spot(scenario: Scenario, pod: int) -> tuple[str, float]:
    """The pod's hottest inlet over the first hours, from the truth log, and how much hotter
    it runs than the pod's second hottest (K)."""
    plant = build_plant(scenario)
    logs, _ = plant.advance(round(ONSET_H * 3600 / scenario.step_s))
    names = list(plant.log_names)
    cols = [names.index(f"rack_inlet_c.{pod}.{r:02d}") for r in range(scenario.site.racks_per_pod)]
    mean = logs[:, 0, cols].mean(axis=0)
    best = int(np.argmax(mean))
    return f"rack_inlet_c.{pod}.{best:02d}", float(mean[best] - np.sort(mean)[-2])


def hottest_rack(scenario: Scenario, pod: int) -> str:
    return hot_spot(scenario, pod)[0]


def run_validator(
    scenario: Scenario, hours: float, config: SensorCheckConfig | None = None
) -> tuple[SensorValidator, list[tuple[float, SensorFlag]], list[tuple[float, SensorFlag]]]:
    """Feed a plant run under the site's control to a validator, period by period; the
    flags raised and cleared with the hour (since the start) of each."""
    plant = build_plant(scenario)
    site = scenario.site
    validator = SensorValidator(plant.point_names, site.n_pods, site.racks_per_pod, config)
    raised: list[tuple[float, SensorFlag]] = []
    cleared: list[tuple[float, SensorFlag]] = []
    for _ in range(round(hours * 3600 / scenario.control_period_s)):
        _, readings = plant.advance(scenario.steps_per_period)
        validator.update(plant.time_s, readings[:, 0])
        hour = plant.time_h - scenario.start_h
        raised += [(hour, f) for f in validator.raised]
        cleared += [(hour, f) for f in validator.cleared]
    return validator, raised, cleared


@pytest.mark.parametrize("pod", [0, 2])
def test_a_low_bias_on_the_pods_hottest_rack_is_flagged_within_two_hours(
    scenario: Scenario, pod: int
) -> None:
    point = hottest_rack(scenario, pod)
    _, raised, _ = run_validator(faulty(scenario, "sensor_bias", point, -1.5), ONSET_H + 3)
    assert [f.point for _, f in raised] == [point]
    hour, flag = raised[0]
    assert ONSET_H < hour <= ONSET_H + 2.0
    assert flag.reason == "bias" and flag.source == "neighbours"
    assert abs(flag.since_s - ONSET_H * 3600) <= 2 * 300


def test_a_bias_on_an_ordinary_rack_is_flagged_and_its_substitute_follows_the_truth(
    scenario: Scenario,
) -> None:
    point = "rack_inlet_c.1.12"
    sc = faulty(scenario, "sensor_bias", point, -1.5)
    plant = build_plant(sc)
    site = sc.site
    validator = SensorValidator(plant.point_names, site.n_pods, site.racks_per_pod)
    column = plant.point_names.index(point)
    truth_column = list(plant.log_names).index(point)
    errors: list[float] = []
    for _ in range(round((ONSET_H + 12) * 3600 / sc.control_period_s)):
        logs, readings = plant.advance(sc.steps_per_period)
        checked = validator.update(plant.time_s, readings[:, 0])
        if validator.flags:
            errors += list(checked[:, column] - logs[:, 0, truth_column])
    assert [f.point for f in validator.flags] == [point]
    error = np.asarray(errors)
    # The raw reading is 1.5 K low; the substitute is within a few tenths of the truth.
    assert abs(error.mean()) < 0.2, error.mean()
    assert np.abs(error).max() < 0.6


def test_a_stuck_inlet_sensor_is_flagged_as_stuck(scenario: Scenario) -> None:
    point = "rack_inlet_c.2.05"
    _, raised, _ = run_validator(faulty(scenario, "sensor_stuck", point), ONSET_H + 6)
    assert [f.point for _, f in raised] == [point]
    assert raised[0][1].reason == "stuck"


def test_a_stuck_supply_air_sensor_is_flagged(scenario: Scenario) -> None:
    _, raised, _ = run_validator(faulty(scenario, "sensor_stuck", "supply_air_c"), ONSET_H + 6)
    assert [(f.point, f.reason) for _, f in raised] == [("supply_air_c", "stuck")]


def test_a_clean_week_with_sensor_noise_raises_no_flag(scenario: Scenario) -> None:
    assert scenario.noise.level >= 1.0 and not scenario.faults
    env = PlantEnv(scenario)
    _, info = env.reset(seed=0)
    raised = list(info["sensor_flags_raised"])
    truncated = False
    hold = np.zeros(5, dtype=np.float32)  # mid-range setpoints, economiser off
    while not truncated:
        _, _, _, truncated, info = env.step(hold)
        raised += info["sensor_flags_raised"]
    assert env.episode_periods * env.period_s >= 6.9 * 86_400
    assert raised == []


def test_the_plant_env_hides_a_low_biased_hot_spot_no_more(scenario: Scenario) -> None:
    """With the check the policy sees the pod's hottest inlet near the truth; without it,
    the pod's second hottest rack, as the biased hot spot reads below it."""
    pod = max(range(scenario.site.n_pods), key=lambda p: hot_spot(scenario, p)[1])
    point, gap = hot_spot(scenario, pod)
    assert gap > 0.3
    sc = faulty(scenario, "sensor_bias", point, -1.5)
    hottest = PlantEnv(sc).observation_spec.names.index(f"rack_inlet_max_c.{pod}")
    seen: dict[bool, float] = {}
    for check in (True, False):
        env = PlantEnv(sc, sensor_check=SensorCheckConfig() if check else None, record_log=True)
        obs, _ = env.reset(seed=0)
        gaps = []
        for _ in range(round((ONSET_H + 4) / (env.period_s / 3600))):
            obs, _, _, _, info = env.step(np.zeros(5, dtype=np.float32))
            if info["time_h"] - sc.start_h > ONSET_H + 1:
                centre, scale = env.observation_spec.centre_scale()
                observed = obs[hottest] * scale[hottest] + centre[hottest]
                truth = env.log_frame()[point].iloc[-1]
                gaps.append(observed - truth)
        seen[check] = float(np.mean(gaps))
        assert ("sensor_flags" in info) == check
    assert abs(seen[True]) < 0.15, seen
    assert seen[False] < -0.5 * gap, (seen, gap)


def test_a_high_reading_is_reported_but_never_lowered(scenario: Scenario) -> None:
    point = "rack_inlet_c.3.10"
    sc = faulty(scenario, "sensor_bias", point, +1.5)
    plant = build_plant(sc)
    site = sc.site
    validator = SensorValidator(plant.point_names, site.n_pods, site.racks_per_pod)
    column = plant.point_names.index(point)
    for _ in range(round((ONSET_H + 2) * 3600 / sc.control_period_s)):
        _, readings = plant.advance(sc.steps_per_period)
        checked = validator.update(plant.time_s, readings[:, 0])
    assert [f.point for f in validator.flags] == [point]
    np.testing.assert_array_equal(checked[:, column], readings[:, 0, column])


def test_a_transient_fault_clears_after_a_clean_stretch_and_reset_clears_at_once(
    scenario: Scenario,
) -> None:
    point = "rack_inlet_c.1.03"
    sc = faulty(scenario, "sensor_bias", point, -1.5, duration_h=2.0)
    config = SensorCheckConfig(clear_periods=24)  # 2 h clean
    _, raised, cleared = run_validator(sc, ONSET_H + 6, config)
    assert [f.point for _, f in raised] == [point]
    assert [f.point for _, f in cleared] == [point]
    assert ONSET_H + 4.0 <= cleared[0][0] <= ONSET_H + 4.5  # 2 h after the fault ended

    validator, _, cleared = run_validator(faulty(scenario, "sensor_bias", point, -1.5), ONSET_H + 1)
    assert [f.point for f in validator.flags] == [point] and not cleared
    validator.reset(point)
    assert validator.flags == ()


def supply_air_run(
    scenario: Scenario, bias_c: float, hours: float, *, perfect_twin: bool
) -> tuple[SensorValidator, float | None, list[float]]:
    """A supply-air bias from ``ONSET_H``, the validator fed period by period (with the
    plant's own truth as the prediction when ``perfect_twin``, else nothing): the validator,
    the hour the flag was raised, and the substitute's mean error in each flagged period."""
    sc = faulty(scenario, "sensor_bias", "supply_air_c", bias_c)
    plant = build_plant(sc)
    site = sc.site
    validator = SensorValidator(plant.point_names, site.n_pods, site.racks_per_pod)
    column = plant.point_names.index("supply_air_c")
    truth_column = list(plant.log_names).index("supply_air_c")
    flagged_at: float | None = None
    errors: list[float] = []
    for _ in range(round((ONSET_H + hours) * 3600 / sc.control_period_s)):
        logs, readings = plant.advance(sc.steps_per_period)
        truth = logs[:, 0, truth_column]
        expected = {"supply_air_c": float(truth.mean())} if perfect_twin else None
        checked = validator.update(plant.time_s, readings[:, 0], expected)
        if validator.raised:
            flagged_at = plant.time_h - sc.start_h
        if validator.flags:
            errors.append(float(np.abs(checked[:, column] - truth).mean()))
    return validator, flagged_at, errors


def test_the_twin_residual_flags_a_supply_air_bias_that_neighbours_cannot_see(
    scenario: Scenario,
) -> None:
    """Supply air has no redundant neighbour; a prediction of it (here the plant's own
    truth, as a perfect twin would give) exposes a bias and stands in for the reading."""
    validator, flagged_at, errors = supply_air_run(scenario, -1.5, 2.0, perfect_twin=True)
    assert [(f.point, f.source) for f in validator.flags] == [("supply_air_c", "twin")]
    assert flagged_at is not None and flagged_at <= ONSET_H + 0.5
    assert max(errors) < 0.5


@pytest.mark.parametrize("bias_c", [-1.5, +1.5])
def test_the_coil_heat_balance_flags_a_supply_air_bias_without_a_twin(
    scenario: Scenario, bias_c: float
) -> None:
    """No prediction given: the validator checks supply air against the air the metered
    coil load implies, flags the bias within the hour and substitutes an estimate that
    follows the truth."""
    validator, flagged_at, errors = supply_air_run(scenario, bias_c, 3.0, perfect_twin=False)
    assert [(f.point, f.reason, f.source) for f in validator.flags] == [
        ("supply_air_c", "bias", "heat_balance")
    ]
    assert flagged_at is not None and ONSET_H <= flagged_at <= ONSET_H + 1.0
    assert max(errors) < 0.5, "the substitute strays from the true supply air"


def test_config_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        SensorCheckConfig(cusum_h=0.0)
    with pytest.raises(ValueError):
        SensorCheckConfig(stuck_periods=1)


def _quantised_ramp(
    scenario: Scenario,
    config: SensorCheckConfig,
    slow_rack: str,
    slow_share: float,
    rise_c: float = 0.6,
) -> list[SensorFlag]:
    """Readings as a COV subscription with a 0.3 K increment delivers them: every inlet and
    the supply air ramp ``rise_c`` over two hours (shown only in 0.3 K jumps), ``slow_rack`` by
    ``slow_share`` of that; every other point holds the plant's first reading."""
    plant = build_plant(scenario)
    site = scenario.site
    _, readings = plant.advance(scenario.steps_per_period)
    base = readings[:, 0]
    names = plant.point_names
    inlets = [i for i, n in enumerate(names) if n.startswith("rack_inlet_c.")]
    inlets.append(names.index("supply_air_c"))
    slow = names.index(slow_rack)
    validator = SensorValidator(names, site.n_pods, site.racks_per_pod, config)
    raised: list[SensorFlag] = []
    for period in range(48):
        ramp = rise_c * max(period - 24, 0) / 24.0
        frame = base.copy()
        rise = np.full(len(inlets), ramp)
        rise[inlets.index(slow)] = slow_share * ramp
        frame[:, inlets] = base[:, inlets] + np.floor(rise / 0.3) * 0.3
        validator.update(period * scenario.control_period_s, frame)
        raised += validator.raised
    return raised


def test_a_cov_increment_is_not_taken_for_a_stuck_sensor(scenario: Scenario) -> None:
    # The slow rack rises 0.27 K while its pod rises 0.6 K: behind a 0.3 K increment it
    # never reports a change, alive all the same.
    rack = "rack_inlet_c.1.07"
    plain = _quantised_ramp(scenario, SensorCheckConfig(), rack, 0.45)
    assert [(f.point, f.reason) for f in plain] == [(rack, "stuck")]  # what COV reads did
    aware = _quantised_ramp(scenario, SensorCheckConfig(reading_resolution_c=0.3), rack, 0.45)
    assert aware == []
    # A sensor that holds while its pod rises by more than the increment and the stuck
    # rule's 0.3 K is still flagged.
    frozen = _quantised_ramp(
        scenario, SensorCheckConfig(reading_resolution_c=0.3), rack, 0.0, rise_c=1.5
    )
    assert (rack, "stuck") in [(f.point, f.reason) for f in frozen]


def test_a_negative_reading_resolution_is_refused() -> None:
    with pytest.raises(ValueError, match="reading_resolution_c"):
        SensorCheckConfig(reading_resolution_c=-0.1)

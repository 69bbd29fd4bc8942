"""MPC over the twin: the Pyomo model, the receding-horizon policy and the oracle."""

from __future__ import annotations

import time

import numpy as np
import pytest

from control.baselines import FixedSetpoints
from control.evaluation import evaluate
from control.mpc import MpcConfig, MpcPolicy, OracleMpcPolicy, oracle_twin
from control.mpc_model import FAN, SAT, LocalModel, MpcProblem, MpcSettings
from control.policy import Policy
from physics.plant.scenario import Scenario, load_scenario
from physics.plant.site import draw_hidden_params
from twin.exogenous import ExogenousTable
from twin.spaces import ActionScale, HallReadings, ObservationSpec, build_observation

SCENARIO = """\
name: short-hot-6h
site: {variant: reference, seed: 3}
weather: {file: "pvlib:miami", start: "07-10"}
workload: {kind: diurnal, mean_frac: 0.6}
duration: 6 h
step: 60 s
control_period: 5 min
sensor_noise: 1.0
seed: 3
"""

SPEC = ObservationSpec()
SCALE = ActionScale()
RATE = np.array([0.5, 0.05, 0.5, 1.0])


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    path = tmp_path_factory.mktemp("mpc") / "short-hot-6h.yaml"
    path.write_text(SCENARIO)
    return load_scenario(path)


def _toy(settings: MpcSettings) -> LocalModel:
    """Cooling from the fans only (∝ speed³); the pods' recirculation rise climbs linearly
    below 0.7 fan speed (2 K at 0.7, 6 K at 0.6); the coil never limits."""
    h, k, p = settings.horizon, settings.knots, settings.n_pods
    fan = np.linspace(0.3, 1.0, k)
    rise = 2.0 + 40.0 * np.maximum(0.7 - fan, 0.0)
    zeros = np.zeros(k)
    return LocalModel(
        u_prev=np.array([20.0, 1.0, 7.0, 29.0]),
        fan_knots=fan,
        fan_cost_kw=78.0 * fan**3,
        rise_k=np.tile(rise, (p, 1)),
        coil_approach_k=np.ones((h, k)),
        chw_knots=np.linspace(5.5, 16.0, k),
        chw_cost_kw=zeros,
        gap_knots=np.linspace(3.0, 15.0, k),
        gap_cost_kw=zeros,
        approach_knots=np.linspace(-8.0, 11.0, k),
        approach_cost_kw=zeros,
        supply_air_cost_kw_k=0.0,
        wet_bulb_c=np.full(h, 25.0),
        exo_cost_kw=np.full(h, 150.0),
        inlet_offset_k=np.zeros((h, p)),
        inlet_now_c=np.full(p, 22.0),
        lag=0.0,
    )


def _pinned_settings(fan_cap_frac: float = 1.0) -> MpcSettings:
    """Six periods, two pods, supply air pinned at 20 °C, fans at most 0.1 a period."""
    return MpcSettings(
        horizon=6,
        knots=8,
        n_pods=2,
        low=(19.99, 0.3, 5.5, 18.0),
        high=(20.01, 1.0, 16.0, 35.0),
        rate=(0.5, 0.1, 0.5, 1.0),
        margin_k=1.0,
        fan_cap_frac=fan_cap_frac,
    )


def test_pyomo_model_solves_to_optimality_with_rate_limits() -> None:
    # Supply air pinned at 20 °C: the hottest inlet 20 + rise must stay below 27 − 1 K,
    # so the fans come down at their rate limit and stop at 0.6.
    settings = _pinned_settings()
    problem = MpcProblem(settings)
    solution = problem.solve(_toy(settings))
    assert solution.optimal, solution.status
    # (0.6 less 0.00025: the supply air may still drop 0.01 K, worth 0.00025 of fan speed)
    assert solution.setpoints[:, FAN] == pytest.approx([0.9, 0.8, 0.7, 0.6, 0.6, 0.6], abs=5e-4)
    assert solution.inlet_c.max() <= 26.0 + 1e-6
    assert solution.slack_kh == pytest.approx(0.0, abs=1e-6)
    assert solution.cooling_kw[-1] == pytest.approx(150.0 + 78.0 * 0.6**3, abs=0.5)
    # Pods 5.5 K hotter cannot be brought below the limit: the slack takes the excess, the
    # plan stays optimal and no fan saving is bought with a hotter rack.
    hot = problem.solve(_hot(settings))
    assert hot.optimal and hot.slack_kh > 0.0
    assert hot.setpoints[:, FAN].min() >= 0.7 - 1e-4
    with pytest.raises(ValueError, match="shape"):
        problem.solve(_bad(settings))


def test_crah_headroom_caps_the_planned_fan_speed() -> None:
    scale = ActionScale()
    react = MpcConfig(crah_headroom_units=0).settings(scale, n_pods=4, period_h=1 / 12)
    assert react.fan_cap_frac == 1.0
    n_minus_1 = MpcConfig().settings(scale, 4, 1 / 12, n_crah=12)  # the shipped rule
    assert n_minus_1.fan_cap_frac == pytest.approx(11 / 12)
    assert n_minus_1.high == react.high and n_minus_1.low == react.low
    # From full speed (the site's own setpoint) the fans come down at their rate limit.
    path = n_minus_1.fan_cap_path(1.0)
    assert path[:2] == pytest.approx([0.95, 0.9166667]) and path.max() <= 0.95 + 1e-9
    with pytest.raises(ValueError, match="below the site's 3 CRAH units"):
        MpcConfig(crah_headroom_units=3).settings(scale, 4, 1 / 12, n_crah=3)
    with pytest.raises(ValueError, match="must not be negative"):
        MpcConfig(crah_headroom_units=-1)


def test_the_plan_respects_the_fan_cap() -> None:
    settings = _pinned_settings(fan_cap_frac=0.5)
    solution = MpcProblem(settings).solve(_hot(settings))  # hot pods want every bit of air
    assert solution.optimal, solution.status
    # Down from 1.0 at the rate limit, then held at the cap.
    assert solution.setpoints[:, FAN] == pytest.approx([0.9, 0.8, 0.7, 0.6, 0.5, 0.5], abs=1e-6)


def test_repeated_solves_print_nothing(capfd: pytest.CaptureFixture[str]) -> None:
    # The toy's cost tables are 0 in many rows: every re-solve updates those coefficients
    # to 0 again, on which HiGHS (1.16) warns on the process's stdout unless its log is off.
    settings = MpcSettings(horizon=6, knots=8, n_pods=2)
    problem = MpcProblem(settings)
    capfd.readouterr()
    for _ in range(3):
        assert problem.solve(_toy(settings)).optimal
        assert problem.solve(_hot(settings)).optimal
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def _hot(settings: MpcSettings) -> LocalModel:
    toy = _toy(settings)
    offset = np.full((settings.horizon, settings.n_pods), 5.5)  # the pods run 5.5 K hotter
    return LocalModel(**{**toy.__dict__, "inlet_offset_k": offset})


def _bad(settings: MpcSettings) -> LocalModel:
    return LocalModel(**{**_toy(settings).__dict__, "fan_knots": np.zeros(3)})


def _obs(
    hottest_c: float,
    supply_air_c: float,
    hot_aisle_c: float,
    table: ExogenousTable,
    row: int,
    shift_h: float = 0.0,
    last_action: np.ndarray | None = None,
) -> np.ndarray:
    inlet = np.full((1, 4, 25), hottest_c - 0.5)
    inlet[:, :, 0] = hottest_c
    wet = float(table.wet_bulb_c[row])
    hall = HallReadings(
        rack_inlet_c=inlet,
        hot_aisle_c=np.full((1, 4), hot_aisle_c),
        supply_air_c=np.array([supply_air_c]),
        return_air_c=np.array([hot_aisle_c - 1.0]),
        chw_supply_c=np.array([7.0]),
        chw_return_c=np.array([12.0]),
        cw_supply_c=np.array([29.4]),
        it_power_kw=np.array([float(table.it_power_kw[row].sum())]),
        cooling_power_kw=np.array([250.0]),
        facility_power_kw=np.array([1100.0]),
        outdoor_dry_bulb_c=np.array([float(table.dry_bulb_c[row])]),
        outdoor_wet_bulb_c=np.array([wet]),
    )
    return build_observation(
        SPEC,
        hall,
        time_h=float(table.time_h[row]) + shift_h,
        forecast_wet_bulb_1h_c=wet,
        forecast_wet_bulb_3h_c=wet,
        forecast_it_power_1h_kw=float(table.it_power_kw[row].sum()),
        last_action=np.zeros(5) if last_action is None else last_action,
    )


def test_mpc_saves_when_cool_and_responds_when_hot(scenario: Scenario) -> None:
    policy = MpcPolicy(scenario=scenario)
    assert isinstance(policy, Policy) and policy.kind == "mpc"
    policy.reset(1)
    table = policy.table
    # The period comes from the observation's time features, exactly.
    assert policy.period_of(_obs(20.0, 19.0, 30.0, table, 37))[0] == 37
    assert policy.period_of(_obs(20.0, 19.0, 30.0, table, 37, shift_h=0.04))[0] == -1
    action = np.zeros((1, 5))  # what an environment reports before the first command
    cool = []
    for row in range(4):  # each observation carries the command applied last, as envs do
        action = policy.act(_obs(20.0, 19.0, 30.0, table, row, last_action=action[0]))
        cool.append(SCALE.to_setpoints(action)[0])
    assert cool[-1][0] > cool[0][0] > 19.0  # supply air up
    assert cool[-1][2] > cool[0][2] > 7.0  # chilled water up
    assert cool[-1][1] < cool[0][1] < 1.0  # fans down
    # Racks read 28 °C (hotter than the twin explains): the bias learns it within a few
    # periods and the controller cools (colder supply air, more air), never the other way.
    hot = []
    for row in range(4, 7):
        action = policy.act(_obs(28.0, cool[-1][0], 38.0, table, row, last_action=action[0]))
        hot.append(SCALE.to_setpoints(action)[0])
    assert hot[-1][0] < cool[-1][0] - 0.9 or hot[-1][1] > cool[-1][1] + 0.09
    assert hot[-1][0] <= cool[-1][0] + 1e-6 and hot[-1][1] >= cool[-1][1] - 1e-6
    assert policy.stats.fallbacks == 0
    assert policy.stats.held_back == 0  # every command was applied as planned


def test_mpc_starts_each_period_from_the_setpoints_applied(scenario: Scenario) -> None:
    # A shield (or an operator) holds the fans at 0.9 and the chilled water at 7.5 °C while
    # the MPC asks for less air and warmer water: each plan starts from what was applied,
    # and the inlet bias learns from what the twin predicted for those setpoints.
    policy = MpcPolicy(scenario=scenario)
    policy.reset(1)
    table = policy.table
    action = policy.act(_obs(22.0, 19.0, 32.0, table, 0, last_action=np.zeros(5)))
    asked = SCALE.to_setpoints(action)[0]
    for row in range(1, 5):
        held = asked.copy()
        held[1], held[2] = 0.9, 7.5
        action = policy.act(_obs(22.0, 19.0, 32.0, table, row, last_action=SCALE.to_action(held)))
        asked = SCALE.to_setpoints(action)[0]
        # The plan moves at most one rate step from the applied setpoints, not from its own.
        assert abs(asked[1] - 0.9) <= RATE[1] + 1e-4
        assert abs(asked[2] - 7.5) <= RATE[2] + 1e-4
        memory = policy._memory[0]
        assert memory.u_prev is not None and memory.local is not None
    assert policy.stats.held_back == 4
    # The prediction the bias learns from is the twin's for the applied setpoints; for the
    # plan's own first move it is the plan's prediction.
    solution = policy.last_solution
    assert solution is not None and memory.local is not None
    assert memory.local.first_inlet_c(solution.first_move) == pytest.approx(
        solution.inlet_c[0], abs=0.05
    )
    colder = solution.first_move.copy()
    colder[SAT] -= 1.0
    assert (memory.local.first_inlet_c(colder) < solution.inlet_c[0]).all()


def test_the_mpc_behind_the_shield_rides_its_pace_without_overshoot(
    scenario: Scenario,
) -> None:
    # Behind the site's shield (per-hour limits slower than the MPC's own rates), the MPC
    # follows what the shield lets through and stays inside its margin.
    from control.shielded import ShieldedPolicy

    policy = MpcPolicy(scenario=scenario)
    result = evaluate(ShieldedPolicy(policy, scenario), scenario, on="plant")
    assert policy.stats.held_back > 0
    assert result.kpis["violation_kh_above_27"] == 0.0
    # (before it followed the applied setpoints: 27.56 °C, 0.037 K·h on this run)
    assert result.kpis["max_inlet_c"] < 27.0


def test_mpc_in_the_twin_is_safe_saves_and_is_fast(scenario: Scenario) -> None:
    fixed = evaluate(FixedSetpoints(), scenario, on="twin")
    policy = MpcPolicy(scenario=scenario)
    started = time.perf_counter()
    mpc = evaluate(policy, scenario, on="twin")
    wall_s = time.perf_counter() - started
    assert mpc.kpis["violation_kh_above_27"] == 0.0
    assert mpc.kpis["cooling_kwh"] < fixed.kpis["cooling_kwh"]
    assert policy.stats.fallbacks == 0
    # Bounds and rate limits on every move (the first from the site's own setpoints).
    names = ["supply_air_c", "fan_speed_frac", "chw_supply_c", "cw_supply_c"]
    sp = mpc.series[[f"sp.{n}" for n in names]].to_numpy()
    low, high = SCALE.low[:4], SCALE.high[:4]
    assert (sp >= low - 1e-4).all() and (sp <= high + 1e-4).all()
    start = np.array([19.0, 1.0, 7.0, 29.4])
    moves = np.abs(np.diff(np.vstack([start, sp]), axis=0))
    assert (moves <= RATE + 1e-4).all()
    # Solve time per step (sampling the twin, updating the model, HiGHS): the target is
    # 1 s; the first step also hands the model to the solver.
    steps = np.asarray(policy.stats.step_s)
    assert steps[1:].max() < 1.0
    assert steps[0] < 3.0
    assert wall_s < 40.0


def test_oracle_twin_carries_the_plants_truths(scenario: Scenario) -> None:
    truth = oracle_twin(scenario)
    hidden = draw_hidden_params(scenario.site, [scenario.site_seed])
    assert truth.theta[0] == pytest.approx(hidden.crah_ua_mult[0].mean())
    assert truth.theta[1] == pytest.approx(hidden.chiller_eir_mult[0].mean())
    assert truth.theta[4] == pytest.approx(float(hidden.tower_approach_bias_k[0]))
    twin = truth.twin
    assert twin.pod_share.detach().numpy() == pytest.approx(hidden.pod_airflow_share[0], rel=1e-5)
    local = twin.rack_recirc.detach().numpy() + float(twin.cross_recirc.detach())
    plant = hidden.rack_recirc_frac[0] + hidden.cross_recirc_frac[0].sum(axis=1)[:, None]
    assert local == pytest.approx(plant, abs=1e-5)
    assert any("chiller_cap_mult" in note for note in truth.unmapped)

    oracle = OracleMpcPolicy(scenario, horizon=6)
    assert oracle.kind == "oracle" and oracle.settings.horizon == 6
    oracle.reset(1)
    table = oracle.table
    action = np.zeros((1, 5))
    steps = []
    for r in range(3):
        action = oracle.act(_obs(20.0, 19.0, 30.0, table, r, last_action=action[0]))
        steps.append(SCALE.to_setpoints(action)[0])
    moves = np.array(steps)
    assert (np.abs(np.diff(moves[:, :4], axis=0)) <= RATE + 1e-4).all()
    assert moves[-1, SAT] > 19.0

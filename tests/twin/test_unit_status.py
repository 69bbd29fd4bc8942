"""Unit status as a twin input: CRAH, chiller and tower-fan trips in the surrogate, from
recordings' status points and from scenarios' fault events, in both environments."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from physics.plant.scenario import load_scenario
from twin.dataset import PeriodData, periods_from_recordings
from twin.design import TwinDesign
from twin.exogenous import ExogenousTable
from twin.recording import Recording, load_recordings, record_run
from twin.rollout import rollout
from twin.surrogate import PhysicsTwin, TwinInputs, TwinState, TwinStep, UnitStatus
from twin.twin_env import TwinEnv
from twin.vec_env import TwinVectorEnv

N = 2

TRIPS = """\
name: {name}
site: {{variant: reference, seed: 11}}
weather: {{file: "pvlib:miami", start: "07-12"}}
workload: {{kind: diurnal, mean_frac: 0.6}}
duration: 12 h
step: 60 s
control_period: 5 min
sensor_noise: 0.0
faults:
{faults}
seed: 3
"""
FAULTS = """\
  - {kind: crah_fan_trip, at: 2 h, duration: 4 h, target: 4}
  - {kind: crah_fan_trip, at: 122 min, duration: 4 h, target: 5}
  - {kind: chiller_trip, at: 7 h, duration: 2 h, target: 0}
  - {kind: tower_fan_failure, at: 570 min, duration: 1 h}
"""


def _scenario_file(tmp: Path, name: str, faults: str) -> Path:
    path = tmp / f"{name}.yaml"
    path.write_text(TRIPS.format(name=name, faults=faults or "  []"))
    return path


@pytest.fixture(scope="module")
def twin(design: TwinDesign) -> PhysicsTwin:
    return PhysicsTwin(design, residual_hidden=0)


@pytest.fixture(scope="module")
def trip_scenario(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _scenario_file(tmp_path_factory.mktemp("trips"), "trips", FAULTS)


@pytest.fixture(scope="module")
def trip_recording(trip_scenario: Path, tmp_path_factory: pytest.TempPathFactory) -> Recording:
    out = tmp_path_factory.mktemp("trip-recording")
    record_run(load_scenario(trip_scenario), policy="explore", seed=4, out_dir=out)
    return load_recordings(out)[0]


# --------------------------------------------------------------------------- surrogate
def _inputs(
    status: UnitStatus | None, *, fan: float = 1.0, it_kw: float = 150.0, chw_c: float = 7.0
) -> TwinInputs:
    return TwinInputs(
        setpoints=torch.tensor([19.0, fan, chw_c, 29.4, 0.0]).expand(N, -1),
        it_power_kw=torch.full((N, 4), it_kw),
        outdoor_dry_bulb_c=torch.full((N,), 30.0),
        outdoor_wet_bulb_c=torch.full((N,), 24.0),
        status=status,
    )


def _status(crah: float = 1.0, chillers: float = 3.0, tower: float = 1.0) -> UnitStatus:
    return UnitStatus(
        crah_running_frac=torch.full((N,), crah),
        chillers_available=torch.full((N,), chillers),
        tower_fan_frac=torch.full((N,), tower),
    )


def _settle(twin: PhysicsTwin, inputs: TwinInputs, steps: int = 120) -> TwinStep:
    state: TwinState = twin.state_from_readings(
        torch.full((N, 4, 25), 22.0),
        torch.full((N, 4), 34.0),
        torch.full((N,), 19.0),
        torch.full((N,), 30.0),
        torch.full((N,), 7.0),
        torch.full((N,), 12.0),
        torch.full((N,), 29.4),
    )
    with torch.no_grad():
        for _ in range(steps):
            out: TwinStep = twin(state, inputs, twin.nominal_theta(N))
            state = out.state
    return out


def test_no_status_is_every_unit_running(twin: PhysicsTwin, design: TwinDesign) -> None:
    none = _settle(twin, _inputs(None), steps=20)
    every = _settle(twin, _inputs(UnitStatus.all_running(N, design)), steps=20)
    assert torch.equal(none.state.rack_inlet_c, every.state.rack_inlet_c)
    assert torch.equal(none.cooling_kw, every.cooling_kw)
    assert torch.equal(none.state.cw_supply_c, every.state.cw_supply_c)


def test_crah_trip_at_full_speed_heats_the_inlets(twin: PhysicsTwin) -> None:
    full = _settle(twin, _inputs(_status(crah=1.0), fan=1.0))
    half = _settle(twin, _inputs(_status(crah=0.5), fan=1.0))
    # Half the units at full speed cannot supply what the racks draw: hot air is pulled back.
    assert float(half.state.rack_inlet_c.amax()) > float(full.state.rack_inlet_c.amax()) + 0.5
    assert float(half.crah_fan_kw[0]) == pytest.approx(0.5 * float(full.crah_fan_kw[0]))


def test_crah_trip_below_full_speed_speeds_the_others_up(twin: PhysicsTwin) -> None:
    fan = 0.6
    all_run = _settle(twin, _inputs(_status(crah=1.0), fan=fan))
    one_out = _settle(twin, _inputs(_status(crah=11 / 12), fan=fan))
    # The same airflow from 11 units: each at 12/11 the speed, fan power ∝ n·speed³.
    assert float(one_out.crah_fan_kw[0]) == pytest.approx(
        float(all_run.crah_fan_kw[0]) * (12 / 11) ** 2, rel=1e-4
    )
    inlet_change = (one_out.state.rack_inlet_c - all_run.state.rack_inlet_c).abs().amax()
    assert float(inlet_change) < 0.1
    # With too few units left to hold it, the speed caps at full and airflow falls short.
    capped = _settle(twin, _inputs(_status(crah=0.4), fan=fan))
    assert float(capped.crah_fan_kw[0]) == pytest.approx(0.4 * 12 * twin.design.crah_design_fan_kw)
    assert float(capped.state.rack_inlet_c.amax()) > float(all_run.state.rack_inlet_c.amax())


def test_chiller_trip_warms_the_supply_only_beyond_the_remaining_capacity(
    twin: PhysicsTwin,
) -> None:
    heavy_all = _settle(twin, _inputs(_status(chillers=3.0), it_kw=250.0))
    heavy_one = _settle(twin, _inputs(_status(chillers=1.0), it_kw=250.0))
    assert float(heavy_all.state.chw_supply_c[0]) == pytest.approx(7.0, abs=0.3)
    assert float(heavy_one.state.chw_supply_c[0]) > 8.0
    assert float(heavy_one.chillers_on[0]) == 1.0
    light_all = _settle(twin, _inputs(_status(chillers=3.0), it_kw=100.0))
    light_two = _settle(twin, _inputs(_status(chillers=2.0), it_kw=100.0))
    assert float(light_two.state.chw_supply_c[0]) == pytest.approx(
        float(light_all.state.chw_supply_c[0]), abs=0.05
    )


def test_tower_fan_loss_warms_the_condenser_water(twin: PhysicsTwin) -> None:
    runs = {f: _settle(twin, _inputs(_status(tower=f))) for f in (1.0, 0.5, 0.0)}
    cw = {f: float(r.state.cw_supply_c[0]) for f, r in runs.items()}
    assert cw[0.0] > cw[0.5] > cw[1.0]
    assert float(runs[0.0].tower_fan_kw[0]) == 0.0
    assert float(runs[0.5].tower_fan_kw[0]) <= float(runs[1.0].tower_fan_kw[0])


# --------------------------------------------------------------------------- recordings
def test_recorded_status_points_become_period_status(
    trip_recording: Recording, design: TwinDesign
) -> None:
    data = periods_from_recordings([trip_recording], design)
    status = data.unit_status
    assert status is not None
    hours = (data.time_h - float(trip_recording.frame["time_h"].iloc[0])).numpy()
    crah = status.crah_running_frac.numpy()
    assert np.allclose(crah[(hours > 2.2) & (hours < 5.8)], 10 / 12)
    assert np.allclose(crah[hours < 1.8], 1.0)
    chillers = status.chillers_available.numpy()
    assert (chillers[(hours > 7.2) & (hours < 8.8)] <= 2.0).all()
    tower = status.tower_fan_frac.numpy()
    assert np.allclose(tower[(hours > 9.7) & (hours < 10.3)], 0.0)
    assert np.allclose(tower[hours < 9.3], 1.0)


def test_recordings_without_status_points_are_as_before(
    trip_recording: Recording, design: TwinDesign, twin: PhysicsTwin
) -> None:
    frame = trip_recording.frame
    status_cols = [
        c for c in frame.columns if c.startswith(("crah_running.", "chiller_", "tower_fan_alarm"))
    ]
    status_cols = [c for c in status_cols if not c.startswith("chiller_power_kw")]
    bare = replace(trip_recording, frame=frame.drop(columns=status_cols))
    old = periods_from_recordings([bare], design)
    new = periods_from_recordings([trip_recording], design)
    assert old.unit_status is None and new.unit_status is not None
    assert torch.equal(old.rack_inlet_c, new.rack_inlet_c)
    # Where every unit ran the status changes nothing, to the bit.
    status = new.unit_status
    nominal = (status.crah_running_frac == 1.0) & (status.chillers_available == 3.0)
    nominal &= status.tower_fan_frac == 1.0
    starts = old.windows(6)
    calm = starts[torch.stack([nominal[starts + h] for h in range(7)]).all(dim=0)]
    assert calm.numel() > 20
    a, b = rollout(twin, old, calm, 6), rollout(twin, new, calm, 6)
    assert torch.equal(a.rack_inlet_c, b.rack_inlet_c) and torch.equal(a.meters, b.meters)
    # During the CRAH trip the twin's fan power follows the running units' speed-up.
    trip = torch.nonzero(status.crah_running_frac < 1.0).flatten()[:-1]
    fan_i = 0
    with_status = rollout(twin, new, trip, 1).meters[0, :, fan_i]
    without = rollout(twin, old, trip, 1).meters[0, :, fan_i]
    measured = new.meters[trip, fan_i]
    assert (with_status - measured).abs().mean() < (without - measured).abs().mean()


def test_period_status_survives_index_and_concat(
    trip_recording: Recording, design: TwinDesign
) -> None:
    data = periods_from_recordings([trip_recording], design)
    frame = trip_recording.frame.drop(columns=[f"crah_running.{i:02d}" for i in range(12)])
    frame = frame.drop(columns=[f"chiller_alarm.{k}" for k in range(3)] + ["tower_fan_alarm"])
    bare = periods_from_recordings([replace(trip_recording, frame=frame)], design)
    both = PeriodData.concat([data, bare])
    assert both.unit_status is not None
    assert both.unit_status.crah_running_frac.shape == (len(both),)
    assert torch.equal(both.unit_status.crah_running_frac[len(data) :], torch.ones(len(bare)))
    picked = both.index(torch.tensor([0, len(data)]))
    assert picked.unit_status is not None and len(picked.unit_status.tower_fan_frac) == 2


# --------------------------------------------------------------------------- scenarios
def test_scenario_trips_reach_the_table(trip_scenario: Path) -> None:
    table = ExogenousTable.from_scenario(load_scenario(trip_scenario))
    hours = table.time_h - table.time_h[0]
    crah = table.crah_running_frac
    assert np.allclose(crah[hours < 2.0], 1.0)
    # Unit 5 trips two minutes after unit 4: the period that straddles it averages the steps.
    first = int(np.searchsorted(hours, 2.0))
    assert crah[first] == pytest.approx((2 * 11 / 12 + 3 * 10 / 12) / 5)
    assert np.allclose(crah[(hours > 2.1) & (hours < 5.9)], 10 / 12)
    assert crah[int(np.searchsorted(hours, 6.0))] == pytest.approx((2 * 11 / 12 + 3) / 5)
    assert np.allclose(crah[hours > 6.05], 1.0)
    assert np.allclose(table.chillers_available[(hours >= 7.0) & (hours < 9.0)], 2.0)
    assert np.allclose(table.chillers_available[hours < 7.0], 3.0)
    assert np.allclose(table.tower_fan_frac[(hours >= 9.5) & (hours < 10.5)], 0.0)
    assert np.allclose(table.tower_fan_frac[hours >= 10.5], 1.0)


def _tower_loss_scenario(tmp: Path, with_fault: bool) -> Path:
    fault = "  - {kind: tower_fan_failure, at: 0 h, duration: 12 h}\n" if with_fault else ""
    return _scenario_file(tmp, f"tower-{with_fault}", fault)


def test_single_env_runs_a_scenario_with_trips(tmp_path: Path) -> None:
    cw = {}
    for with_fault in (False, True):
        env = TwinEnv(
            _tower_loss_scenario(tmp_path, with_fault), episode_hours=1.0, random_start=False
        )
        env.reset(seed=0)
        for _ in range(6):
            obs, reward, _, _, _ = env.step(np.zeros(5, dtype=np.float32))
            assert np.isfinite(obs).all() and np.isfinite(reward)
        cw[with_fault] = float(env.sim.state.cw_supply_c[0])
    assert cw[True] > cw[False] + 0.5


def test_vector_env_runs_a_scenario_with_trips(trip_scenario: Path) -> None:
    vec = TwinVectorEnv(3, scenario=trip_scenario, episode_hours=6.0, seed=0)
    vec.sim.last_start = 0
    vec.reset(seed=0)
    actions = np.zeros((3, 5), dtype=np.float32)
    actions[:, 1] = 1.0  # fans at full speed: a CRAH trip takes airflow away
    for _ in range(72):
        obs, reward, _, _, _ = vec.step(actions)
        assert np.isfinite(obs).all() and np.isfinite(reward).all()
    rows = vec.sim.table.crah_running_frac[: 72 + 1]
    assert rows.min() < 1.0  # the episode covered the trip
    assert vec.sim.start.tolist() == [0, 0, 0]

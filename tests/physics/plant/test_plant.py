"""The plant as a whole: energy balances, plausibility, commands, faults, determinism."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from physics.compiled import as_record
from physics.constants import CP_WATER_KJ_KG_K, RHO_WATER_KG_M3
from physics.kpi import rack_inlet_columns
from physics.plant.faults import FaultEvent
from physics.plant.plant import Plant
from physics.plant.scenario import Scenario, load_scenario
from physics.plant.sensors import SensorNoise
from physics.plant.simulation import SimulationResult, build_plant, run_scenario
from physics.plant.site import site_variant
from physics.plant.site_control import SetpointCommand
from physics.weather import hour_of_year, load_weather


@pytest.fixture(scope="module")
def tropical_week() -> SimulationResult:
    return run_scenario(load_scenario("tropical-typical-week"))


def _plant(n_steps: int = 120, **kwargs: object) -> Plant:
    util = np.full((n_steps, 4), 0.6)
    args: dict[str, object] = {
        "weather": load_weather("pvlib:miami"),
        "utilisation": util,
        "start_h": hour_of_year(7, 1),
        "noise": SensorNoise(level=0.0),
    }
    args.update(kwargs)
    return Plant(site_variant("reference"), **args)  # type: ignore[arg-type]


def _run(plant: Plant) -> pd.DataFrame:
    rows = []
    while not plant.done:
        plant.step()
        rows.append(plant.last_log[0].copy())
    return pd.DataFrame(rows, columns=list(plant.log_names))


def test_room_energy_balance_closes_over_a_tropical_week(tropical_week: SimulationResult) -> None:
    log = tropical_week.log
    removed = log["coil_heat_kw"].sum()
    gains = (log["room_gain_kw"] + log["crah_fan_heat_kw"] - log["room_stored_kw"]).sum()
    assert abs(removed - gains) / gains < 0.01


def test_water_side_energy_balance_closes(tropical_week: SimulationResult) -> None:
    log = tropical_week.log
    # Chillers and economiser remove what the coils put into the water, less what it stored.
    into_water = (log["coil_heat_kw"] - log["chw_stored_kw"]).sum()
    removed = (log["chiller_load_kw"] + log["economiser_heat_kw"]).sum()
    assert abs(removed - into_water) / into_water < 0.01
    # The tower rejects evaporator load plus compressor work plus economiser heat exactly.
    np.testing.assert_allclose(
        log["tower_heat_kw"],
        log["chiller_load_kw"] + log["chiller_power_kw"] + log["economiser_heat_kw"],
        rtol=1e-12,
    )


def test_facility_power_is_exactly_the_sum_of_its_parts(tropical_week: SimulationResult) -> None:
    log = tropical_week.log
    mechanical = (
        log["chiller_power_kw"]
        + log["crah_fan_power_kw"]
        + log["chw_pump_power_kw"]
        + log["cw_pump_power_kw"]
        + log["tower_fan_power_kw"]
    )
    parts = (
        log["it_power_kw"]
        + log["pdu_loss_kw"]
        + log["ups_loss_kw"]
        + mechanical
        + log["lighting_kw"]
        + log["aux_kw"]
        + log["transformer_loss_kw"]
    )
    np.testing.assert_allclose(log["facility_power_kw"], parts, rtol=1e-12)


def test_reference_site_is_plausible_without_faults(tropical_week: SimulationResult) -> None:
    kpis = tropical_week.kpis
    assert 1.3 <= kpis.pue <= 1.7
    assert kpis.min_inlet_c >= 18.0 and kpis.max_inlet_c <= 27.0
    assert kpis.violation_kh_above_27 == 0.0
    assert 800.0 < kpis.it_kwh / kpis.duration_h < 1100.0  # about 1 MW of IT


def test_chiller_trip_without_redundancy_heats_at_the_rate_thermal_mass_allows() -> None:
    scenario = load_scenario("chiller-trip")
    log = run_scenario(scenario).log
    t_h = (log["time_h"] - log["time_h"].iloc[0]).to_numpy()
    inlet = log[rack_inlet_columns(log)].to_numpy()
    before = t_h < 36.0
    assert inlet[before].max() < 27.0
    # Window while the chiller is locked out and the valves are wide open.
    window = (t_h >= 36.5) & (t_h < 37.9)
    measured_k_per_min = np.polyfit(t_h[window] * 60.0, inlet[window].mean(axis=1), 1)[0]
    cfg = scenario.site
    water_kj_k = (
        (
            cfg.chw_loop.supply_volume_m3
            + cfg.chw_loop.return_volume_m3
            + cfg.chw_loop.supply_main_volume_m3
        )
        * RHO_WATER_KG_M3
        * CP_WATER_KJ_KG_K
    )
    room_kj_k = cfg.room.server_capacity_kj_k * cfg.n_racks + cfg.room.structure_capacity_kj_k
    net_kw = (log["room_gain_kw"] + log["crah_fan_heat_kw"] - log["chiller_load_kw"])[window]
    expected_k_per_min = net_kw.mean() / (water_kj_k + room_kj_k) * 60.0
    assert measured_k_per_min > 0.05
    assert measured_k_per_min == pytest.approx(expected_k_per_min, rel=0.15)
    assert inlet[window].max() > 27.0  # the trip is felt


def test_same_seed_same_run_and_other_seed_other_site() -> None:
    a = _run(_plant(60, seeds=(3,), noise=SensorNoise()))
    b = _run(_plant(60, seeds=(3,), noise=SensorNoise()))
    c = _run(_plant(60, seeds=(4,), noise=SensorNoise()))
    pd.testing.assert_frame_equal(a, b)
    assert not np.allclose(a["chiller_power_kw"], c["chiller_power_kw"])


def test_batched_sites_match_single_sites() -> None:
    batch = _plant(30, seeds=(1, 2))
    single = _plant(30, seeds=(2,))
    for _ in range(30):
        batch.step()
        single.step()
    np.testing.assert_allclose(batch.last_log[1], single.last_log[0], rtol=1e-9, atol=1e-9)


def test_valid_command_wins_until_it_expires() -> None:
    plant = _plant(90)
    plant.apply_command(
        SetpointCommand("c1", expires_at_s=1800.0, supply_air_c=24.0, fan_speed_frac=0.6)
    )
    log = _run(plant)
    during = log.iloc[20:29]
    after = log.iloc[-5:]
    np.testing.assert_allclose(during["sp.supply_air_c"], 24.0)
    np.testing.assert_allclose(during["supply_air_c"], 24.0, atol=0.15)
    np.testing.assert_allclose(during["crah_fan_speed_frac"], 0.6)
    assert (log["command_active"].iloc[:29] == 1.0).all()
    np.testing.assert_allclose(after["sp.supply_air_c"], plant.config.defaults.supply_air_c)
    assert (after["command_active"] == 0.0).all()


def test_commands_outside_the_envelope_are_clipped() -> None:
    plant = _plant(5)
    plant.apply_command(
        SetpointCommand("c2", expires_at_s=1e9, supply_air_c=40.0, fan_speed_frac=0.0)
    )
    log = _run(plant)
    limits = plant.config.limits
    assert log["sp.supply_air_c"].max() == limits.supply_air_c[1]
    assert log["sp.fan_speed_frac"].min() == limits.fan_speed_frac[0]


def test_coil_fouling_opens_the_valves_and_crah_trip_stops_a_unit() -> None:
    clean = _run(_plant(60))
    fouled = _run(_plant(60, faults=[FaultEvent("coil_fouling", start_h=0.0, magnitude=0.3)]))
    valves = [c for c in clean if c.startswith("crah_valve_frac")]
    assert fouled[valves].iloc[-1].mean() > clean[valves].iloc[-1].mean() * 1.1
    tripped = _run(_plant(60, faults=[FaultEvent("crah_fan_trip", start_h=0.5, target=3)]))
    assert tripped["crah_valve_frac.03"].iloc[-1] == 0.0
    assert tripped["crah_airflow_kg_s"].iloc[-1] < clean["crah_airflow_kg_s"].iloc[-1]


def test_a_crah_trip_speeds_the_others_up_and_shows_in_its_status_point() -> None:
    """The BMS's failure sequence: with one of 12 units tripped the 11 others run at
    speed·12/11 (capped at full speed), and the reported fan speed is the one they run at."""
    plant = _plant(60, faults=[FaultEvent("crah_fan_trip", start_h=0.5, target=3)])
    plant.apply_command(SetpointCommand("slow", expires_at_s=1e9, fan_speed_frac=0.6))
    log = _run(plant)
    before, after = log.iloc[20], log.iloc[-1]
    assert before["crah_running.03"] == 1.0 and after["crah_running.03"] == 0.0
    assert after[[f"crah_running.{i:02d}" for i in range(12) if i != 3]].eq(1.0).all()
    assert before["crah_fan_speed_frac"] == pytest.approx(0.6)
    assert after["crah_fan_speed_frac"] == pytest.approx(0.6 * 12 / 11)
    # The airflow is held (fan airflow is linear in speed).
    assert after["crah_airflow_kg_s"] == pytest.approx(before["crah_airflow_kg_s"], rel=1e-6)
    full = _run(_plant(60, faults=[FaultEvent("crah_fan_trip", start_h=0.5, target=3)]))
    assert full["crah_fan_speed_frac"].iloc[-1] == 1.0  # already at full speed: no more air


def test_chiller_and_tower_alarms_are_status_points() -> None:
    plant = _plant(
        120,
        faults=[
            FaultEvent("chiller_trip", start_h=0.5, duration_h=0.5, target=0),
            FaultEvent("tower_fan_failure", start_h=1.5, magnitude=0.5),
        ],
    )
    log = _run(plant)
    assert log["chiller_alarm.0"].iloc[:25].eq(0.0).all()
    assert log["chiller_alarm.0"].iloc[35:55].eq(1.0).all()
    assert log["chiller_running.0"].iloc[35:55].eq(0.0).all()
    assert log[["chiller_alarm.1", "chiller_alarm.2"]].eq(0.0).all().all()
    running = log[[f"chiller_running.{k}" for k in range(3)]].sum(axis=1)
    np.testing.assert_array_equal(running, log["chillers_on"])
    assert log["tower_fan_alarm"].iloc[:85].eq(0.0).all()
    assert log["tower_fan_alarm"].iloc[95:].eq(1.0).all()


def test_sensor_bias_shows_in_readings_not_in_truth() -> None:
    plant = _plant(
        10, faults=[FaultEvent("sensor_bias", 0.0, magnitude=2.0, target="supply_air_c")]
    )
    frame = None
    while not plant.done:
        frame = plant.step()
    assert frame is not None
    reading = frame.as_dict()["supply_air_c"]
    truth = plant.last_log[0][plant.log_names.index("supply_air_c")]
    assert reading - truth == pytest.approx(2.0)


def test_build_plant_covers_the_scenario(tmp_path: Path) -> None:
    scenario: Scenario = load_scenario("crah-trip-surge")
    plant = build_plant(scenario)
    assert plant.n_steps == scenario.n_steps
    assert plant.point_names == plant.sensors.names


@pytest.mark.slow
def test_annualised_pue_of_the_reference_site_in_tropical_weather() -> None:
    """Twelve representative weeks (one per month) of one site, stepped side by side."""
    step_s = 60.0
    n_steps = int(7 * 86_400 / step_s)
    starts = [hour_of_year(month, 10) for month in range(1, 13)]
    time_h = np.arange(n_steps) * step_s / 3600.0
    from physics.workload import WorkloadSpec, make_workload

    util = make_workload(WorkloadSpec(kind="diurnal"), time_h, 4, seed=1)
    plant = Plant(
        site_variant("reference"),
        weather=load_weather("pvlib:miami"),
        utilisation=util,
        start_h=starts,
        seeds=(7,) * 12,
    )
    facility = it = 0.0
    lo, hi = np.inf, -np.inf
    inlet_cols = [i for i, n in enumerate(plant.log_names) if n.startswith("rack_inlet_c.")]
    fac_i, it_i = plant.log_names.index("facility_power_kw"), plant.log_names.index("it_power_kw")
    while not plant.done:
        plant.step()
        facility += plant.last_log[:, fac_i].sum()
        it += plant.last_log[:, it_i].sum()
        inlets = plant.last_log[:, inlet_cols]
        lo, hi = min(lo, inlets.min()), max(hi, inlets.max())
    assert 1.3 <= facility / it <= 1.7
    assert lo >= 18.0 and hi <= 27.0


@pytest.mark.parametrize(
    "field",
    [
        "rack_power_scale",
        "rack_recirc_frac",
        "cross_recirc_frac",
        "pod_airflow_share",
        "crah_ua_mult",
        "chiller_eir_mult",
        "chiller_cap_mult",
        "tower_approach_bias_k",
        "server_capacity_kj_k",
        "structure_capacity_mult",
    ],
)
def test_every_hidden_parameter_changes_what_the_plant_does(field: str) -> None:
    from dataclasses import replace

    def run(scale: float) -> np.ndarray:
        plant = _plant(20, warmup_steps=0)
        hidden = plant._hidden
        value = getattr(hidden, field)
        changed = value * scale if field != "tower_approach_bias_k" else value + (scale - 1.0)
        plant._engine.hidden = as_record(replace(hidden, **{field: changed}))
        _run(plant)
        return plant.last_log[0]

    assert not np.allclose(run(1.0), run(1.3), rtol=1e-9, atol=1e-9)


def test_tower_fan_failure_trips_chillers_on_head_pressure_and_stays_bounded() -> None:
    plant = _plant(
        360,
        faults=[FaultEvent("tower_fan_failure", 1.0, 2.0, magnitude=1.0)],
    )
    logs, _ = plant.advance(plant.n_steps)
    names = plant.log_names
    cw = logs[:, 0, names.index("cw_supply_c")]
    on = logs[:, 0, names.index("chillers_on")]
    during = slice(70, 180)
    assert on[:60].min() >= 1 and on[during].min() == 0  # the cut-out trips them
    # Condenser water does not run away: without chillers the hall heats up, the Guideline
    # 36 economiser enable sees a hot return and sends its heat to the (fanless) tower, which
    # can warm the condenser water towards the chilled-water return but never past it.
    chw_return = logs[:, 0, names.index("chw_return_c")]
    assert cw.max() <= chw_return.max()
    assert on[-30:].min() >= 1 and cw[-1] == pytest.approx(29.4, abs=0.2)  # recovery

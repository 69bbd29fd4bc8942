"""The live controller on the simulated plant in-process (the MQTT closed loop is in
test_live_mqtt.py): real reservoir, real historian, real plant; the sink applies each command
to the plant exactly as the BMS emulator does (a command with an id and an expiry)."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest

from connectors.historian import Historian, Reading
from control import approval
from control.catalog import RULE_POLICIES
from control.live import LiveController
from control.policy import Obs, Policy
from control.preevaluation import register_builtin
from control.reservoir import PolicyRecord, Reservoir
from control.shield import ShieldConfig
from control.twin_tracker import TwinTracker
from control.watchdog import WatchdogConfig
from physics.plant.faults import FaultEvent
from physics.plant.plant import Plant
from physics.plant.scenario import Scenario, load_scenario
from physics.plant.simulation import build_plant
from physics.plant.site_control import SETPOINT_FIELDS, SetpointCommand
from twin.assimilation import EnsembleKalmanAssimilator, FilterConfig
from twin.design import TwinDesign
from twin.surrogate import PhysicsTwin

PERIOD_S = 300.0


@dataclass(frozen=True)
class Sample:
    value: float
    ts: float
    quality: str = "good"
    stale: bool = False


class PlantSite:
    """The plant as a site: sensor snapshots, and a sink that applies commands to it."""

    def __init__(self, plant: Plant, historian: Historian | None = None) -> None:
        self.plant = plant
        self.historian = historian
        self.frozen_at: float | None = None
        self.commands: list[SetpointCommand] = []
        self.fail_writes = False
        self._frame: dict[str, Sample] = {}

    def advance(self, seconds: float) -> float:
        steps = round(seconds / self.plant.step_s)
        first_s = self.plant.time_s
        _, readings = self.plant.advance(steps)
        if self.historian is not None and self.frozen_at is None:  # what ingestion stores
            self.historian.write(
                [
                    Reading(n, first_s + (k + 1) * self.plant.step_s, float(v))
                    for k in range(steps)
                    for n, v in zip(self.plant.point_names, readings[k, 0], strict=True)
                    if math.isfinite(v)
                ]
            )
        if self.frozen_at is None:
            ts = self.plant.time_s
            self._frame = {
                n: Sample(float(v), ts, "good" if math.isfinite(v) else "bad")
                for n, v in zip(self.plant.point_names, readings[-1, 0], strict=True)
            }
        return self.plant.time_s

    def snapshot(self) -> Mapping[str, Sample]:
        return dict(self._frame)

    def write(
        self,
        command_fields: Mapping[str, float],
        expires_at_s: float,
        *,
        issued_at_s: float,
        command_id: str,
    ) -> None:
        if self.fail_writes:
            raise ConnectionError("broker unreachable")
        command = SetpointCommand(command_id, expires_at_s, **command_fields)
        self.commands.append(command)
        self.plant.apply_command(command)

    def site_in_control(self) -> bool:
        command = self.plant.command
        return command is None or not command.valid_at(self.plant.time_s)


class CrashingPolicy:
    name = "crashing"
    kind = "rule"

    def __init__(self, after: int) -> None:
        self.after = after

    def reset(self, n_envs: int = 1) -> None:
        return None

    def act(self, observation: Obs) -> Obs:
        self.after -= 1
        if self.after < 0:
            raise FloatingPointError("policy blew up")
        return np.zeros((observation.shape[0], 5), dtype=np.float32)


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    return load_scenario("tropical-typical-week")


@pytest.fixture
def site(scenario: Scenario) -> PlantSite:
    plant = build_plant(replace(scenario, duration_h=12.0))
    site = PlantSite(plant)
    site.advance(PERIOD_S)
    return site


@pytest.fixture
def reservoir(tmp_path: Path) -> Iterator[Reservoir]:
    with Reservoir(tmp_path / "reservoir") as res:
        yield res


@pytest.fixture
def historian(tmp_path: Path) -> Iterator[Historian]:
    store = Historian(tmp_path / "historian.sqlite")
    yield store
    store.close()


def rule_loader(record: PolicyRecord) -> Policy:
    builtin = record.hyperparameters.get("builtin")
    if builtin == "crashing":
        return CrashingPolicy(after=int(record.hyperparameters["after"]))
    return RULE_POLICIES[str(builtin)]()


def deploy(
    res: Reservoir, name: str = "trim-and-respond", *, live: bool = True, **params: int
) -> str:
    if name in RULE_POLICIES:
        ref = register_builtin(res, name, actor="test").ref
    else:
        ref = res.register(
            name, "rule", None, hyperparameters={"builtin": name, **params}, training_scenarios=[]
        ).ref
    res.add_evaluation(ref, on="twin", scenario="hot-week", kpis={"cooling_kwh": 1.0})
    res.transition(ref, "pre_evaluated", actor="gate1", reason="passed")
    approval.approve(res, ref, operator="ann", reason="ok")
    approval.promote(res, ref, operator="ann", reason="shadow")
    if live:
        approval.promote(res, ref, operator="ann", reason="live")
    return ref


def controller(
    site: PlantSite,
    reservoir: Reservoir,
    historian: Historian,
    scenario: Scenario,
    **kwargs: object,
) -> LiveController:
    return LiveController(
        reservoir=reservoir,
        snapshot=site.snapshot,
        sink=site,
        historian=historian,
        loader=rule_loader,
        site=scenario.site,
        control_period_s=PERIOD_S,
        hour_of_year=lambda now_s: scenario.start_h + now_s / 3600.0,
        **kwargs,  # type: ignore[arg-type]
    )


def test_without_a_live_policy_the_site_runs_and_kpis_are_logged(
    site: PlantSite, reservoir: Reservoir, historian: Historian, scenario: Scenario
) -> None:
    ctl = controller(site, reservoir, historian, scenario)
    report = ctl.step(site.plant.time_s)
    assert report.mode == "site" and not site.commands
    kpis = historian.latest(["kpi.pue", "kpi.cooling_power_kw", "kpi.rack_inlet_max_c"])
    assert 1.05 < kpis["kpi.pue"].value < 2.0
    assert kpis["kpi.cooling_power_kw"].value > 50.0


def test_live_policy_writes_through_the_shield_every_period(
    site: PlantSite, reservoir: Reservoir, historian: Historian, scenario: Scenario
) -> None:
    deploy(reservoir)
    shield = ShieldConfig()
    ctl = controller(site, reservoir, historian, scenario, shield=shield)
    previous = 19.0
    for _ in range(24):  # two hours
        report = ctl.step(site.plant.time_s)
        assert report.mode == "live"
        assert set(report.written) == set(SETPOINT_FIELDS)
        supply = report.written["supply_air_c"]
        assert shield.supply_air_c[0] <= supply <= shield.supply_air_c[1]
        assert abs(supply - previous) <= shield.supply_air_step_k + 1e-9
        previous = supply
        command = site.commands[-1]
        assert command.expires_at_s == site.plant.time_s + PERIOD_S
        site.advance(PERIOD_S)
    assert len(site.commands) == 24
    series = historian.series([f"ctl.{f}" for f in SETPOINT_FIELDS])
    assert len(series) == 24 and series["ctl.supply_air_c"].iloc[-1] == pytest.approx(previous)
    # trim-and-respond raised the supply air from the site's 19 °C
    assert previous > 19.0


def test_shadow_policy_logs_what_it_would_write_and_never_writes(
    site: PlantSite, reservoir: Reservoir, historian: Historian, scenario: Scenario
) -> None:
    ref = deploy(reservoir, live=False)
    ctl = controller(site, reservoir, historian, scenario)
    for _ in range(6):
        report = ctl.step(site.plant.time_s)
        assert report.mode == "site" and report.shadow is not None
        site.advance(PERIOD_S)
    assert ctl.shadow_ref == ref and not site.commands
    shadow = historian.series([f"shadow.{f}" for f in SETPOINT_FIELDS])
    assert len(shadow) == 6 and shadow["shadow.supply_air_c"].iloc[-1] > 19.0


def test_operator_override_always_wins(
    site: PlantSite, reservoir: Reservoir, historian: Historian, scenario: Scenario
) -> None:
    deploy(reservoir)
    override = {"active": True}
    ctl = controller(site, reservoir, historian, scenario, override=lambda: override["active"])
    for _ in range(3):
        assert ctl.step(site.plant.time_s).mode == "override"
        site.advance(PERIOD_S)
    assert not site.commands
    override["active"] = False
    assert ctl.step(site.plant.time_s).mode == "live" and len(site.commands) == 1
    kinds = [e.kind for e in historian.events() if e.source == "live"]
    assert kinds.count("override") == 2  # became active, then released


def test_stale_data_trips_within_two_periods_and_the_site_takes_over(
    site: PlantSite, reservoir: Reservoir, historian: Historian, scenario: Scenario
) -> None:
    ref = deploy(reservoir)
    ctl = controller(
        site, reservoir, historian, scenario, watchdog=WatchdogConfig(stale_after_s=180.0)
    )
    for _ in range(3):
        assert ctl.step(site.plant.time_s).mode == "live"
        site.advance(PERIOD_S)
    site.frozen_at = site.plant.time_s  # the data stop here
    lost_at = site.plant.time_s
    trips = []
    for _ in range(2):
        report = ctl.step(site.plant.time_s)
        trips.append(report.mode)
        site.advance(PERIOD_S)
        if report.mode == "tripped":
            break
    assert "tripped" in trips
    assert site.plant.time_s - lost_at <= 2 * PERIOD_S
    assert site.site_in_control()  # the last command expired within one period
    assert reservoir.get(ref).state == "rolled_back"
    last = reservoir.history(ref)[-1]
    assert last.actor == "watchdog" and "stale_data" in last.reason
    assert any(e.kind == "trip" and e.source == "watchdog" for e in historian.events())
    written = len(site.commands)
    ctl.step(site.plant.time_s)
    assert len(site.commands) == written  # nothing more is written


def test_crashing_policy_is_rolled_back(
    site: PlantSite, reservoir: Reservoir, historian: Historian, scenario: Scenario
) -> None:
    ref = deploy(reservoir, "crashing", after=2)
    ctl = controller(site, reservoir, historian, scenario)
    modes = []
    for _ in range(4):
        modes.append(ctl.step(site.plant.time_s).mode)
        site.advance(PERIOD_S)
    assert modes == ["live", "live", "tripped", "site"]
    assert reservoir.get(ref).state == "rolled_back"
    assert "FloatingPointError: policy blew up" in reservoir.history(ref)[-1].reason
    assert approval.in_control(reservoir) is None


def test_a_crashing_policy_hands_back_to_the_previous_one_within_one_period(
    site: PlantSite, reservoir: Reservoir, historian: Historian, scenario: Scenario
) -> None:
    previous = deploy(reservoir, "trim-and-respond")
    ref = deploy(reservoir, "crashing", after=1)
    assert reservoir.get(previous).state == "standby"
    ctl = controller(site, reservoir, historian, scenario)
    reports = []
    for _ in range(4):
        reports.append(ctl.step(site.plant.time_s))
        site.advance(PERIOD_S)
    assert [r.mode for r in reports] == ["live", "tripped", "live", "live"]
    assert reservoir.get(ref).state == "rolled_back"
    assert approval.in_control(reservoir).ref == previous  # type: ignore[union-attr]
    assert ctl.live_ref == previous and reports[2].written  # it writes the next period
    resumed = reservoir.history(previous)[-1]
    assert (resumed.actor, resumed.to_state) == ("watchdog", "live")


def test_inlet_breach_trips(
    site: PlantSite, reservoir: Reservoir, historian: Historian, scenario: Scenario
) -> None:
    ref = deploy(reservoir)
    ctl = controller(
        site, reservoir, historian, scenario, watchdog=WatchdogConfig(inlet_trip_c=15.0)
    )
    report = ctl.step(site.plant.time_s)
    assert report.mode == "tripped" and report.trip is not None
    assert report.trip.kind == "inlet_breach" and not site.commands
    assert reservoir.get(ref).state == "rolled_back"


def test_tampered_policy_is_never_loaded(
    site: PlantSite, reservoir: Reservoir, historian: Historian, scenario: Scenario, tmp_path: Path
) -> None:
    artifact = tmp_path / "agent.json"
    artifact.write_text('{"builtin": "trim-and-respond"}')
    record = reservoir.register(
        "agent",
        "rule",
        artifact,
        hyperparameters={"builtin": "trim-and-respond"},
        training_scenarios=[],
    )
    reservoir.add_evaluation(record.ref, on="twin", scenario="s", kpis={"cooling_kwh": 1.0})
    reservoir.transition(record.ref, "pre_evaluated", actor="gate1", reason="passed")
    approval.approve(reservoir, record.ref, operator="ann", reason="ok")
    approval.promote(reservoir, record.ref, operator="ann", reason="shadow")
    approval.promote(reservoir, record.ref, operator="ann", reason="live")
    path = reservoir.artifact_path(record.ref)
    assert path is not None
    path.write_text('{"builtin": "something else"}')
    ctl = controller(site, reservoir, historian, scenario)
    assert ctl.step(site.plant.time_s).mode == "site"
    assert not site.commands and reservoir.get(record.ref).state == "rolled_back"


def test_failed_write_is_logged_and_not_counted_as_written(
    site: PlantSite, reservoir: Reservoir, historian: Historian, scenario: Scenario
) -> None:
    deploy(reservoir)
    ctl = controller(site, reservoir, historian, scenario)
    site.fail_writes = True
    report = ctl.step(site.plant.time_s)
    assert report.mode == "live" and report.written == {}
    assert any(e.kind == "write_error" for e in historian.events())
    assert historian.points("ctl.") == []
    site.fail_writes = False
    site.advance(PERIOD_S)
    report = ctl.step(site.plant.time_s)
    # Pacing starts again from the site's setpoints, since nothing of ours was applied.
    assert abs(report.written["supply_air_c"] - 19.0) <= 0.5 + 1e-9


def test_time_must_increase(
    site: PlantSite, reservoir: Reservoir, historian: Historian, scenario: Scenario
) -> None:
    ctl = controller(site, reservoir, historian, scenario)
    ctl.step(100.0)
    with pytest.raises(ValueError, match="must increase"):
        ctl.step(100.0)


def _tracker(historian: Historian, scenario: Scenario, ctl_points: tuple[str, ...]) -> TwinTracker:
    model = PhysicsTwin(TwinDesign.for_variant("reference"), residual_hidden=0)
    return TwinTracker(
        EnsembleKalmanAssimilator(model, FilterConfig(members=16)),
        historian,
        points=ctl_points,
        step_s=scenario.step_s,
        control_period_s=PERIOD_S,
        hour_of_year=lambda now_s: scenario.start_h + now_s / 3600.0,
    )


def test_twin_is_assimilated_and_predicts_each_period(
    scenario: Scenario, reservoir: Reservoir, historian: Historian
) -> None:
    site = PlantSite(build_plant(replace(scenario, duration_h=12.0)), historian)
    for _ in range(3):  # three periods of readings before control starts
        site.advance(PERIOD_S)
    deploy(reservoir)
    ref = deploy(reservoir, "fixed-setpoints", live=False)  # a shadow beside the live one
    ctl = controller(site, reservoir, historian, scenario)
    ctl.twin = _tracker(historian, scenario, ctl.points)
    errors = []
    for _ in range(8):
        due = ctl.twin.pending
        report = ctl.step(site.plant.time_s + 7.0)  # a service's clock runs past the samples
        assert report.mode == "live" and ctl.shadow_ref == ref
        if due is not None:
            assert report.freshness is not None
            errors.append(abs(due.rack_inlet_max_c - report.freshness.hottest_inlet_c))
        site.advance(PERIOD_S)
    assert len(errors) == 7
    assert float(np.median(errors)) < 1.5  # the drawings' physics, calibrated online
    names = historian.points("twin.")
    for name in (
        "twin.rack_inlet_max_c",
        "twin.cooling_power_kw",
        "twin.param.coil_ua_mult",
        "twin.std.rack_inlet_max_c",
        "twin.shadow.cooling_power_kw",
    ):
        assert name in names, names
    savings = historian.series(["kpi.savings_pct"])["kpi.savings_pct"]
    assert len(savings) == 8 and savings.between(-50.0, 50.0).all()
    assert "twin.site.cooling_power_kw" in names
    predicted = historian.series(["twin.cooling_power_kw", "kpi.cooling_power_kw"]).dropna()
    assert len(predicted) == 8
    ratio = predicted["twin.cooling_power_kw"] / predicted["kpi.cooling_power_kw"]
    assert ratio.between(0.5, 1.5).all()


def test_twin_plant_divergence_trips(
    scenario: Scenario, reservoir: Reservoir, historian: Historian
) -> None:
    site = PlantSite(build_plant(replace(scenario, duration_h=12.0)), historian)
    for _ in range(3):
        site.advance(PERIOD_S)
    ref = deploy(reservoir)
    strict = WatchdogConfig(divergence_c=0.001, divergence_periods=2)
    ctl = controller(site, reservoir, historian, scenario, watchdog=strict)
    ctl.twin = _tracker(historian, scenario, ctl.points)
    modes = []
    for _ in range(4):
        report = ctl.step(site.plant.time_s)
        modes.append(report.mode)
        site.advance(PERIOD_S)
        if report.mode == "tripped":
            assert report.trip is not None and report.trip.kind == "divergence"
            break
    assert modes == ["live", "live", "tripped"]
    assert reservoir.get(ref).state == "rolled_back"


def test_a_biased_inlet_sensor_is_reported_once_and_distrusted(
    reservoir: Reservoir, historian: Historian, scenario: Scenario
) -> None:
    point = "rack_inlet_c.1.07"
    bias = FaultEvent("sensor_bias", 2.0, magnitude=-1.5, target=point)
    site = PlantSite(build_plant(replace(scenario, duration_h=12.0, faults=(bias,))))
    site.advance(PERIOD_S)
    ctl = controller(site, reservoir, historian, scenario)
    for _ in range(36):  # 3 h, the bias from 2 h
        ctl.step(site.plant.time_s)
        site.advance(PERIOD_S)
    events = [e for e in historian.events() if e.kind == "sensor_fault"]
    assert len(events) == 1 and events[0].source == "sensor_check"
    assert events[0].message.startswith(f"{point}: bias")
    assert ctl.sensor_validator is not None
    assert [f.point for f in ctl.sensor_validator.flags] == [point]
    assert 2.0 * 3600 < ctl.sensor_validator.flags[0].flagged_at_s <= 2.5 * 3600


def test_the_watchdog_sees_a_hot_spot_behind_a_low_biased_sensor(
    reservoir: Reservoir, historian: Historian, scenario: Scenario
) -> None:
    """The hall's hottest rack reads 1.5 K low from 2 h: after the sensor check flags it,
    the watchdog's hottest inlet is the checked one (the substitute), above every raw
    reading, so a real hot spot still trips the inlet limit."""
    probe = PlantSite(build_plant(replace(scenario, duration_h=12.0)))
    probe.advance(2 * 3600.0)
    inlets = {n: s.value for n, s in probe.snapshot().items() if n.startswith("rack_inlet_c.")}
    point = max(inlets, key=inlets.__getitem__)
    bias = FaultEvent("sensor_bias", 2.0, magnitude=-1.5, target=point)
    site = PlantSite(build_plant(replace(scenario, duration_h=12.0, faults=(bias,))))
    site.advance(PERIOD_S)
    deploy(reservoir)
    ctl = controller(site, reservoir, historian, scenario)
    for _ in range(36):  # 3 h, the bias from 2 h
        report = ctl.step(site.plant.time_s)
        site.advance(PERIOD_S)
    assert ctl.sensor_validator is not None and point in [
        f.point for f in ctl.sensor_validator.flags
    ]
    snapshot = site.snapshot()
    raw = max(s.value for n, s in snapshot.items() if n.startswith("rack_inlet_c."))
    true_c = snapshot[point].value + 1.5  # the reading less its bias
    report = ctl.step(site.plant.time_s)
    assert report.freshness is not None
    seen = report.freshness.hottest_inlet_c
    print(f"{point}: watchdog sees {seen:.2f} °C, true {true_c:.2f}, raw max {raw:.2f}")
    assert seen > raw and abs(seen - true_c) < 0.4

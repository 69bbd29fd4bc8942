"""The live loop over BACnet/IP: plant ↔ a real bacpypes3 device (priority arrays, heartbeat,
supervisory enable) ↔ TwinLoop's BACnet client ↔ field ingestion/historian ↔ LiveController
↔ field setpoint sink ↔ the device, on loopback on free non-default ports. The test steps
the device's plant (faster than real time); every reading and every write crosses BACnet.

Checked: writes applied in TwinLoop's slot and audited with the device's answer; an
operator's override at a higher priority detected within one period, recorded and never
fought; the hand-back by relinquish when the controller stops writing; a killed TwinLoop
released by the device's heartbeat timeout; a dead device tripping the watchdog within two
periods."""

from __future__ import annotations

import socket
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from connectors.bacnet_client import BacnetClient
from connectors.bacnet_device import OPERATOR_PRIORITY, BacnetBmsDevice
from connectors.catalog import PointCatalog
from connectors.field_ingestion import FieldIngestor
from connectors.field_sink import FieldOverride, FieldSetpointSink
from connectors.historian import Historian
from connectors.point_map import reference_point_map
from control import approval
from control.catalog import RULE_POLICIES
from control.live import LiveController, StepReport, plant_hour_of_year
from control.policy import Policy
from control.reservoir import PolicyRecord, Reservoir
from control.service import ScenarioForecast
from physics.kpi import COOLING_COLUMNS
from physics.plant.scenario import Scenario, load_scenario
from physics.plant.simulation import build_plant, run_scenario
from physics.plant.site_control import SETPOINT_FIELDS
from tests.control.deployed import deploy

pytestmark = pytest.mark.integration

HEARTBEAT_TIMEOUT_S = 900.0


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    return load_scenario("tropical-typical-week")


def rule_loader(record: PolicyRecord) -> Policy:
    return RULE_POLICIES[str(record.hyperparameters["builtin"])]()


@dataclass
class BacnetLoop:
    """Every piece of the live loop over one BACnet device."""

    scenario: Scenario
    device: BacnetBmsDevice
    client: BacnetClient
    ingestor: FieldIngestor
    sink: FieldSetpointSink
    override: FieldOverride
    historian: Historian
    reservoir: Reservoir
    controller: LiveController
    time_s: float
    """The plant clock (scenario epoch + the device's plant time while it runs)."""
    cooling_kwh: float = 0.0
    killed: set[str] = field(default_factory=set)

    def kill(self, part: str) -> None:
        """Stop the ``client`` (TwinLoop dies) or the ``device`` (it stops answering)."""
        if part == "client":
            self.client.stop()
        else:
            self.device.stop()
        self.killed.add(part)

    def run_period(self) -> None:
        """One control period of plant steps; the plant's true cooling energy is summed."""
        plant = self.device.plant
        cols = [plant.log_names.index(c) for c in COOLING_COLUMNS]
        for _ in range(self.scenario.steps_per_period):
            self.device.step()
            self.cooling_kwh += float(plant.last_log[0, cols].sum()) * plant.step_s / 3600.0
        self.time_s = self.scenario.start_h * 3600.0 + self.device.now_s

    def control(self) -> StepReport:
        """One period of TwinLoop: poll every point, decide, write or hand back."""
        self.ingestor.poll_once()
        report = self.controller.step(self.time_s)
        self.sink.period_done(self.time_s, report.written)
        return report

    def twinloop_slots(self) -> dict[str, float | None]:
        slot = self.device.twinloop_priority - 1
        return {f: self.device.priority_array(f)[slot] for f in SETPOINT_FIELDS}


@pytest.fixture
def make_loop(tmp_path: Path) -> Iterator[Callable[[Scenario], BacnetLoop]]:
    opened: list[BacnetLoop] = []

    def make(scenario: Scenario) -> BacnetLoop:
        plant = build_plant(scenario)
        point_map = reference_point_map(
            PointCatalog.for_site(plant.config),
            address=f"127.0.0.1:{free_udp_port()}",
            device_instance=1001,
        )
        device = BacnetBmsDevice(plant, point_map, heartbeat_timeout_s=HEARTBEAT_TIMEOUT_S)
        device.start()
        client = BacnetClient(point_map, local_port=free_udp_port(), timeout_s=2.0).start()
        historian = Historian(tmp_path / "historian.sqlite")
        reservoir = Reservoir(tmp_path / "reservoir")
        deploy(reservoir, "trim-and-respond")
        holder: list[BacnetLoop] = []

        def clock() -> float:
            return holder[0].time_s

        ingestor = FieldIngestor(client, historian, clock=clock, stale_after_s=1e6)
        sink = FieldSetpointSink(client, historian, protocol="bacnet", clock=clock)
        override = FieldOverride(lambda: ingestor.last_poll, historian, clock=clock)
        controller = LiveController(
            reservoir=reservoir,
            snapshot=ingestor.snapshot,
            sink=sink,
            historian=historian,
            loader=rule_loader,
            site=scenario.site,
            control_period_s=scenario.control_period_s,
            override=override,
            forecaster=ScenarioForecast(scenario),
            hour_of_year=plant_hour_of_year,
        )
        loop = BacnetLoop(
            scenario,
            device,
            client,
            ingestor,
            sink,
            override,
            historian,
            reservoir,
            controller,
            time_s=scenario.start_h * 3600.0,
        )
        holder.append(loop)
        opened.append(loop)
        return loop

    yield make
    for loop in opened:
        for name, part in (("client", loop.client), ("device", loop.device)):
            if name not in loop.killed:
                part.stop()
        loop.reservoir.close()
        loop.historian.close()


def test_closed_loop_over_bacnet_writes_audits_and_saves(
    make_loop: Callable[[Scenario], BacnetLoop], scenario: Scenario
) -> None:
    window = replace(scenario, duration_h=3.0)
    loop = make_loop(replace(scenario, duration_h=5.0))  # room for the rollback after it
    n_periods = window.n_steps // window.steps_per_period
    loop.run_period()  # the lead-in: the site's own control
    modes = []
    for _ in range(n_periods - 1):
        report = loop.control()
        modes.append(report.mode)
        # What the controller wrote is what TwinLoop's slot holds and the plant runs on.
        slots = loop.twinloop_slots()
        for name, value in report.written.items():
            assert slots[name] == pytest.approx(value, abs=1e-4), name
            assert loop.device.control_of(name) == "twinloop"
        loop.run_period()
    assert modes == ["live"] * (n_periods - 1)
    assert loop.device.counters()["writes"] == 5 * (n_periods - 1)
    assert loop.device.counters()["refused_no_heartbeat"] == 0
    assert loop.device.counters()["released_heartbeat"] == 0
    assert loop.client.counters()["heartbeats"] == n_periods - 1
    audit = loop.historian.audit(limit=10_000)
    assert Counter(a.outcome for a in audit) == {"applied": 5 * (n_periods - 1)}
    assert all(a.detail == "bacnet: applied" for a in audit)
    # Every point of every poll is in the historian, as MQTT ingestion stores it.
    inlets = loop.historian.series(["rack_inlet_c.0.00", "setpoint.supply_air_c"])
    assert len(inlets) == n_periods - 1
    baseline = run_scenario(window).kpis.cooling_kwh
    saving_pct = 100.0 * (baseline - loop.cooling_kwh) / baseline  # the window's energy
    print(f"\nclosed loop over BACnet, {window.duration_h:g} h: {saving_pct:.1f} % saved")
    assert saving_pct > 0.0
    # The operator's rollback: any ramp back is written in TwinLoop's slot; the period the
    # controller writes nothing, the slot is relinquished.
    ref = approval.in_control(loop.reservoir)
    assert ref is not None
    approval.rollback_policy(loop.reservoir, ref.ref, operator="ann", reason="test")
    ramp = []
    while (mode := loop.control().mode) != "site":
        ramp.append(mode)
        assert loop.device.control_of("supply_air_c") == "twinloop"
        assert len(ramp) < 12, ramp
        loop.run_period()
    assert set(ramp) <= {"hand_back"}
    assert set(loop.twinloop_slots().values()) == {None}
    assert all(loop.device.control_of(f) == "site" for f in SETPOINT_FIELDS)
    handback = loop.historian.audit(limit=5)
    assert all("relinquished" in a.detail and a.outcome == "applied" for a in handback)
    assert {a.field for a in handback} == set(SETPOINT_FIELDS)


def test_an_operator_override_is_respected_within_one_period(
    make_loop: Callable[[Scenario], BacnetLoop], scenario: Scenario
) -> None:
    loop = make_loop(replace(scenario, duration_h=2.0))
    loop.run_period()
    for _ in range(2):
        assert loop.control().mode == "live"
        loop.run_period()
    loop.device.operator_write("chw_supply_c", 8.0, priority=OPERATOR_PRIORITY)
    writes = loop.device.counters()["writes"]
    report = loop.control()  # the next period
    assert report.mode == "override" and not report.written
    # TwinLoop backed off everywhere; the operator's value holds, the rest is the site's.
    assert set(loop.twinloop_slots().values()) == {None}
    assert loop.device.control_of("chw_supply_c") == "operator"
    loop.run_period()
    assert loop.device.plant.command is not None
    assert loop.device.plant.command.chw_supply_c == 8.0
    assert loop.control().mode == "override"
    assert loop.device.counters()["writes"] == writes  # 0 writes fighting the operator
    events = [e for e in loop.historian.events() if e.kind == "override"]
    assert any("chw_supply_c held by the BMS (priority 8)" in e.message for e in events)
    assert loop.client.counters()["overrides_detected"] == 1
    loop.device.operator_write("chw_supply_c", None)  # the operator lets go
    loop.run_period()
    assert loop.control().mode == "live"
    assert loop.device.control_of("chw_supply_c") == "twinloop"
    assert any("chw_supply_c given back" in e.message for e in loop.historian.events())


def test_a_killed_twinloop_is_released_by_the_heartbeat_timeout(
    make_loop: Callable[[Scenario], BacnetLoop], scenario: Scenario
) -> None:
    loop = make_loop(replace(scenario, duration_h=2.0))
    loop.run_period()
    assert loop.control().mode == "live"
    assert all(loop.device.control_of(f) == "twinloop" for f in SETPOINT_FIELDS)
    loop.kill("client")  # TwinLoop dies: no hand-back, no more heartbeats
    steps_to_timeout = int(HEARTBEAT_TIMEOUT_S / loop.device.plant.step_s)
    loop.device.step(steps_to_timeout - 1)
    assert loop.device.control_of("supply_air_c") == "twinloop"  # a write holds for ever...
    loop.device.step(2)
    # ... but the device keeps the last word.
    assert all(loop.device.control_of(f) == "site" for f in SETPOINT_FIELDS)
    assert loop.device.counters()["released_heartbeat"] == 1


def test_a_dead_device_trips_the_watchdog_within_two_periods(
    make_loop: Callable[[Scenario], BacnetLoop], scenario: Scenario
) -> None:
    loop = make_loop(replace(scenario, duration_h=2.0))
    loop.run_period()
    for _ in range(2):
        assert loop.control().mode == "live"
        loop.run_period()
    loop.kill("device")  # the device stops answering
    period_s = scenario.control_period_s
    modes = []
    for _ in range(2):
        loop.time_s += period_s
        modes.append(loop.control().mode)
    assert "tripped" in modes, modes
    trips = [e for e in loop.historian.events() if e.kind == "trip"]
    assert trips and "stale" in trips[0].message
    assert any(e.kind == "device_lost" for e in loop.historian.events())
    live = loop.reservoir.get("trim-and-respond")
    assert live.state == "rolled_back"
    # The hand-back could not reach the dead device: audited as such, and retried.
    assert loop.sink.held
    assert any(a.outcome == "error" and "timeout" in a.detail for a in loop.historian.audit())

"""The closed loop over real Mosquitto: plant ↔ BMS emulator ↔ MQTT ↔ ingestion/historian ↔
LiveController ↔ setpoint writer ↔ MQTT ↔ BMS emulator, faster than real time (the test
steps the emulator; every message still goes through the broker). Also the site file of
``twinloop serve``, and the service's own alarm evaluation over a real Modbus TCP device
(no dashboard anywhere)."""

from __future__ import annotations

import math
import socket
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest

from connectors.bms_emulator import BmsEmulator
from connectors.broker import MosquittoBroker, mosquitto_available
from connectors.catalog import PointCatalog
from connectors.historian import Historian
from connectors.ingestion import MqttIngestor
from connectors.modbus_device import ModbusPlantDevice, site_map
from connectors.payloads import OverrideMessage
from connectors.setpoint_writer import SetpointWriter
from connectors.topics import Topics
from control.alarms import ENGINE, EVALUATED_POINT
from control.catalog import RULE_POLICIES
from control.live import LiveController, StepReport, plant_hour_of_year
from control.policy import Policy
from control.reservoir import PolicyRecord, Reservoir
from control.service import (
    LiveService,
    ScenarioForecast,
    ServiceConfigError,
    load_service_config,
)
from control.site_link import MqttSetpointSink, OverrideMonitor
from physics.kpi import COOLING_COLUMNS
from physics.plant.scenario import Scenario, load_scenario
from physics.plant.simulation import build_plant, run_scenario
from tests.control.deployed import deploy

SITE = "hall-test"


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    return load_scenario("tropical-typical-week")


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[MosquittoBroker]:
    if not mosquitto_available():
        pytest.skip(
            "Mosquitto is not installed (/usr/sbin/mosquitto); scripts/setup.sh installs it"
        )
    with MosquittoBroker(tmp_path / "broker") as running:
        yield running


def rule_loader(record: PolicyRecord) -> Policy:
    return RULE_POLICIES[str(record.hyperparameters["builtin"])]()


@dataclass
class Loop:
    """Every piece of the live loop, wired over one broker."""

    scenario: Scenario
    emulator: BmsEmulator
    ingestor: MqttIngestor
    writer: SetpointWriter
    override: OverrideMonitor
    historian: Historian
    reservoir: Reservoir
    controller: LiveController
    cooling_kwh: float = 0.0

    def run_period(self) -> None:
        """One control period of plant steps; the plant's true cooling energy is summed."""
        plant = self.emulator.plant
        cols = [plant.log_names.index(c) for c in COOLING_COLUMNS]
        for _ in range(self.scenario.steps_per_period):
            self.emulator.step()
            self.cooling_kwh += float(plant.last_log[0, cols].sum()) * plant.step_s / 3600.0

    def settle(self) -> None:
        """Wait until ingestion has every point of the latest step."""
        now = self.emulator.now_s
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline:
            snap = self.ingestor.snapshot()
            if len(snap) == len(self.emulator.plant.point_names) and all(
                s.ts >= now for s in snap.values()
            ):
                return
            time.sleep(0.002)
        raise AssertionError("ingestion did not receive the latest step within 10 s")

    def control(self) -> StepReport:
        report = self.controller.step(self.emulator.now_s)
        if report.written:  # let the emulator take the command before the plant moves on
            deadline = time.monotonic() + 10.0
            while time.monotonic() < deadline:
                self.emulator.process_commands()
                if set(self.emulator.active_commands()) == set(report.written):
                    break
                time.sleep(0.002)
            else:
                raise AssertionError("the emulator did not receive the command within 10 s")
        return report

    def close(self) -> None:
        for part in (self.override, self.writer, self.ingestor, self.emulator):
            part.stop()
        self.reservoir.close()
        self.historian.close()


@pytest.fixture
def make_loop(broker: MosquittoBroker, tmp_path: Path) -> Iterator[object]:
    loops: list[Loop] = []

    def make(scenario: Scenario, policy: str) -> Loop:
        topics = Topics(SITE)
        plant = build_plant(scenario)
        emulator = BmsEmulator(
            plant, broker.address("bms"), topics, epoch_s=scenario.start_h * 3600.0
        ).start()
        historian = Historian(tmp_path / "historian.sqlite")
        ingestor = MqttIngestor(
            broker.address("ingest"), topics, historian, stale_after_s=1e6
        ).start()
        writer = SetpointWriter(broker.address("controller"), topics, historian).start()
        override = OverrideMonitor(broker.address("override"), topics).start()
        reservoir = Reservoir(tmp_path / "reservoir")
        deploy(reservoir, policy)
        controller = LiveController(
            reservoir=reservoir,
            snapshot=ingestor.snapshot,
            sink=MqttSetpointSink(writer),
            historian=historian,
            loader=rule_loader,
            site=scenario.site,
            control_period_s=scenario.control_period_s,
            override=override,
            forecaster=ScenarioForecast(scenario),
            hour_of_year=plant_hour_of_year,
        )
        loop = Loop(
            scenario, emulator, ingestor, writer, override, historian, reservoir, controller
        )
        loops.append(loop)
        return loop

    yield make
    for loop in loops:
        loop.close()


def _closed_loop_saving(make_loop: object, scenario: Scenario, hours: float) -> dict[str, float]:
    window = replace(scenario, duration_h=hours)
    assert callable(make_loop)
    loop: Loop = make_loop(window, "trim-and-respond")
    n_periods = window.n_steps // window.steps_per_period
    loop.run_period()  # the lead-in: the site's own control
    modes = []
    for _ in range(n_periods - 1):
        loop.settle()
        modes.append(loop.control().mode)
        loop.run_period()
    assert modes == ["live"] * (n_periods - 1)
    baseline = run_scenario(window).kpis.cooling_kwh
    counters = loop.emulator.counters()
    assert counters["applied"] >= 5 * (n_periods - 1)
    assert counters["expired"] == counters["rejected"] == 0
    # A duplicate is the writer's own re-send of a command whose echo was late (a loaded
    # machine): the BMS recognised its id and did not apply it twice.
    assert counters["duplicates"] <= loop.writer.counters()["resent"]
    audit = loop.historian.audit(limit=10_000)
    # One "published" row per field written; the BMS's echo adds an "applied" row as it comes.
    outcomes = Counter(a.outcome for a in audit)
    assert set(outcomes) <= {"published", "applied"}
    assert outcomes["published"] == 5 * (n_periods - 1)
    assert 5 * (n_periods - 2) <= outcomes["applied"] <= outcomes["published"]
    ctl = loop.historian.series(["ctl.supply_air_c"])
    assert len(ctl) == n_periods - 1
    return {
        "live_kwh": loop.cooling_kwh,
        "baseline_kwh": baseline,
        "saving_pct": 100.0 * (baseline - loop.cooling_kwh) / baseline,
    }


@pytest.mark.integration
def test_closed_loop_over_mosquitto_saves_energy_short(
    make_loop: object, scenario: Scenario
) -> None:
    result = _closed_loop_saving(make_loop, scenario, hours=4.0)
    print(f"closed loop 4 h: {result}")
    assert result["saving_pct"] > 0.0


@pytest.mark.integration
@pytest.mark.slow
def test_closed_loop_over_mosquitto_saves_energy_24h(make_loop: object, scenario: Scenario) -> None:
    started = time.perf_counter()
    result = _closed_loop_saving(make_loop, scenario, hours=25.0)  # 1 h lead-in + 24 h
    wall_s = time.perf_counter() - started
    print(f"closed loop 25 h in {wall_s:.0f} s wall: {result}")
    assert wall_s < 25 * 3600.0 / 10  # at least 10x faster than real time
    assert result["saving_pct"] > 0.0


@pytest.mark.integration
def test_stale_data_over_mqtt_hands_control_back_to_the_site(
    make_loop: object, scenario: Scenario
) -> None:
    assert callable(make_loop)
    loop: Loop = make_loop(replace(scenario, duration_h=2.0), "trim-and-respond")
    period_s = scenario.control_period_s
    loop.run_period()
    for _ in range(3):
        loop.settle()
        assert loop.control().mode == "live"
        assert loop.emulator.control == "remote"
        loop.run_period()
    loop.ingestor.stop()  # the data stop reaching the controller; the plant runs on
    lost_at = loop.emulator.now_s
    modes = []
    while "tripped" not in modes:
        modes.append(loop.control().mode)
        loop.run_period()
        assert loop.emulator.now_s - lost_at <= 2 * period_s, f"no trip in 2 periods: {modes}"
    # The last command expired within one period of the trip: the site's control runs.
    assert loop.emulator.control == "site" and not loop.emulator.active_commands()
    live = loop.reservoir.get("trim-and-respond")
    assert live.state == "rolled_back" and loop.reservoir.history(live.ref)[-1].actor == "watchdog"


@pytest.mark.integration
def test_operator_override_over_mqtt_stops_all_writes(
    make_loop: object, scenario: Scenario, broker: MosquittoBroker
) -> None:
    assert callable(make_loop)
    loop: Loop = make_loop(replace(scenario, duration_h=1.0), "trim-and-respond")
    loop.run_period()
    loop.settle()
    # The operator takes manual control at the BMS (retained, as a BMS gateway publishes it).
    message = OverrideMessage(active=True, by="operator", ts=loop.emulator.now_s)
    loop.emulator._client.publish(Topics(SITE).override, message.encode(), qos=1, retain=True)
    deadline = time.monotonic() + 10.0
    while not loop.override() and time.monotonic() < deadline:
        time.sleep(0.01)
    written = len(loop.historian.audit(limit=1000))
    assert loop.control().mode == "override"
    assert len(loop.historian.audit(limit=1000)) == written == 0


def test_site_file_is_validated(tmp_path: Path) -> None:
    good = tmp_path / "site.yaml"
    good.write_text(
        "site: hall-a\n"
        "broker: {credentials: broker/credentials.json}\n"
        "historian: data/historian.sqlite\n"
        "reservoir: data/reservoir\n"
        "control_period_s: 60\n"
        "shield: {supply_air_c: [18, 25], supply_air_step_k: 0.3}\n"
        "watchdog: {stale_after_s: 120}\n"
        "alarms: {inlet_high_c: 26, period_s: 5}\n"
        "twin: drawings\n"
    )
    config = load_service_config(good)
    assert config.twin is not None and str(config.twin) == "drawings"
    assert config.historian == tmp_path / "data" / "historian.sqlite"
    url = tmp_path / "pg.yaml"
    url.write_text(good.read_text().replace("data/historian.sqlite", "postgresql://tl@db/hall"))
    assert load_service_config(url).historian == "postgresql://tl@db/hall"  # kept whole
    assert config.shield_config().supply_air_c == (18.0, 25.0)
    assert config.watchdog_config().stale_after_s == 120.0
    alarms = config.alarm_config()
    assert (alarms.inlet_high_c, alarms.period_s, alarms.inlet_critical_c) == (26.0, 5.0, 32.0)
    for text, message in [
        ("site: a\nhistorian: h\nreservoir: r\n", "broker: Field required"),
        ("site: a/b\nbroker: {credentials: c}\nhistorian: h\nreservoir: r\n", "topic site"),
        ("site: a\nbroker: {host: x}\nhistorian: h\nreservoir: r\n", "give either"),
        (
            "site: a\nbroker: {credentials: c}\nhistorian: h\nreservoir: r\nshield: {x: 1}\n",
            "shield: unknown key(s) x",
        ),
        (
            "site: a\nbroker: {credentials: c}\nhistorian: h\nreservoir: r\n"
            "shield: {supply_air_step_k: -1}\n",
            "supply_air_step_k",
        ),
        ("site: a\nbroker: {credentials: c}\nhistorian: h\nreservoir: r\nspeed: 2\n", "speed"),
        (
            "site: a\nbroker: {credentials: c}\nhistorian: h\nreservoir: r\nalarms: {x: 1}\n",
            "alarms: unknown key(s) x",
        ),
        (
            "site: a\nbroker: {credentials: c}\nhistorian: h\nreservoir: r\n"
            "alarms: {inlet_high_c: 35}\n",
            "alarms: inlet_critical_c must be above inlet_high_c",
        ),
        ("[1, 2]\n", "expected a mapping"),
    ]:
        bad = tmp_path / "bad.yaml"
        bad.write_text(text)
        with pytest.raises(
            ServiceConfigError, match=message.replace("(", r"\(").replace(")", r"\)")
        ):
            load_service_config(bad)


def test_cooling_columns_are_plant_log_columns(scenario: Scenario) -> None:
    plant = build_plant(replace(scenario, duration_h=1.0))
    assert all(c in plant.log_names for c in COOLING_COLUMNS)
    assert math.isfinite(float(np.sum(plant.last_log)))


def test_plant_clock_is_the_median_of_the_catalog_points() -> None:
    """One reading stamped 1e12 (or a point the catalog does not list) cannot move the
    plant clock serve derives from the data."""
    from connectors.ingestion import PointState
    from control.service import plant_clock

    def state(name: str, ts: float, age_s: float = 1.0) -> PointState:
        return PointState(name, 20.0, "degC", ts, "good", 1, False, "", age_s)

    points = ["a", "b", "c", "d", "e"]
    snapshot = {p: state(p, 6000.0) for p in points}
    assert plant_clock(snapshot, points, 60.0) == 6060.0
    snapshot["outdoor_wet_bulb_c"] = state("outdoor_wet_bulb_c", 1e12)
    snapshot["junk"] = state("junk", 1e12)
    snapshot["a"] = state("a", 1e12)
    assert plant_clock(snapshot, [*points, "outdoor_wet_bulb_c"], 60.0) == 6060.0
    assert math.isnan(plant_clock({}, points, 60.0))


@pytest.mark.integration
def test_the_service_raises_alarms_with_no_dashboard(tmp_path: Path, scenario: Scenario) -> None:
    """``twinloop serve``'s service over a Modbus TCP device on loopback: its own alarm
    evaluation raises every rack inlet above the site file's limit (set below this plant's
    inlets), and records each evaluation; nothing else is running."""
    Reservoir(tmp_path / "reservoir").close()
    plant = build_plant(replace(scenario, duration_h=1.0))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    point_map = site_map(PointCatalog.for_site(plant.config), address=f"127.0.0.1:{port}")
    (tmp_path / "map.yaml").write_text(point_map.to_yaml(), encoding="utf-8")
    site = tmp_path / "site.yaml"
    site.write_text(
        "site: hall-a\n"
        "protocol: modbus\n"
        "modbus: {point_map: map.yaml, timeout_s: 1.0}\n"
        "historian: historian.sqlite\n"
        "reservoir: reservoir\n"
        "time_scale: 100\n"
        "alarms: {inlet_high_c: 15, inlet_critical_c: 60, period_s: 0.2}\n",
        encoding="utf-8",
    )
    inlets = {p for p in plant.point_names if p.startswith("rack_inlet_c.")}
    with ModbusPlantDevice(plant, point_map, speed=100.0, heartbeat_timeout_s=900.0):
        service = LiveService(load_service_config(site), base=tmp_path).start()
        try:
            deadline = time.monotonic() + 30.0
            raised: set[str] = set()
            while raised != {f"inlet:{p}" for p in inlets} and time.monotonic() < deadline:
                time.sleep(0.1)
                log = service.historian.alarm_records()
                raised = {r.key for r in log if r.action == "raise" and r.key.startswith("inlet:")}
            beat = service.historian.latest([EVALUATED_POINT])
        finally:
            service.close()
    assert raised == {f"inlet:{p}" for p in inlets}
    assert {(r.actor, r.severity) for r in log if r.key in raised} == {(ENGINE, "high")}
    assert EVALUATED_POINT in beat and service.alarms.failures == 0

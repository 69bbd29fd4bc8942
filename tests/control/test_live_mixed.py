"""The live service over a mixed site: ``protocol: mixed`` in the site file, one emulated
plant served by a real bacpypes3 BMS device and a real pymodbus plant controller on loopback
free ports, the readings stamped with the BMS's clock (``clock: plant``, ``clock_device``).
The test steps the plant and runs the service's own ingestion, controller and sink one
period at a time; every reading and write crosses BACnet or Modbus.

Checked: each setpoint is written at the device that owns it and audited with that device's
protocol and answer; the Modbus device cut off makes only its points stale, the watchdog
trips and hands back (relinquished at the BMS, not reachable at the Modbus device, which
its own heartbeat timeout then releases)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from connectors.bacnet_client import BacnetClient
from connectors.catalog import PointCatalog
from connectors.device_clock import PlantCalendar
from connectors.mixed_emulator import MixedPlantEmulator, mixed_point_map
from connectors.modbus_client import ModbusClient
from connectors.multi_link import MultiLink
from control.live import StepReport
from control.service import LiveService, load_service_config
from physics.plant.scenario import load_scenario
from physics.plant.simulation import build_plant
from physics.plant.site_control import SETPOINT_FIELDS
from tests.twinloop.cli_process import live_rule_reservoir

pytestmark = pytest.mark.integration

HEARTBEAT_TIMEOUT_S = 900.0
SCENARIO = "tropical-typical-week"


def free_port(kind: socket.SocketKind) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class MixedSite:
    """The emulated mixed site and the service over it, stepped a period at a time."""

    def __init__(self, tmp_path: Path) -> None:
        scenario = replace(load_scenario(SCENARIO), duration_h=3.0)
        self.steps_per_period = scenario.steps_per_period
        plant = build_plant(scenario)
        point_map = mixed_point_map(
            PointCatalog.for_site(plant.config),
            bacnet_address=f"127.0.0.1:{free_port(socket.SOCK_DGRAM)}",
            modbus_address=f"127.0.0.1:{free_port(socket.SOCK_STREAM)}",
        )
        (tmp_path / "map.yaml").write_text(point_map.to_yaml(), encoding="utf-8")
        live_rule_reservoir(tmp_path / "reservoir")
        site = tmp_path / "site.yaml"
        site.write_text(
            "site: hall-a\n"
            "protocol: mixed\n"
            f"mixed: {{point_map: map.yaml, local: '127.0.0.1:{free_port(socket.SOCK_DGRAM)}',"
            " timeout_s: 0.5, reads: poll, clock_device: bms}\n"
            "clock: plant\n"
            f"scenario: {SCENARIO}\n"
            "historian: historian.sqlite\n"
            "reservoir: reservoir\n"
            f"control_period_s: {scenario.control_period_s}\n"
            "sensor_step_s: 60\n",
            encoding="utf-8",
        )
        start = scenario.weather().start
        assert start is not None
        self.emulator = MixedPlantEmulator(
            plant,
            point_map,
            heartbeat_timeout_s=HEARTBEAT_TIMEOUT_S,
            epoch_s=scenario.start_h * 3600.0,
            calendar=PlantCalendar(int(start.year)),
        ).start()
        self.service = LiveService(load_service_config(site), base=tmp_path)

    def period(self) -> StepReport:
        """A period of plant steps, then one of the service: poll, decide, write."""
        self.emulator.step(self.steps_per_period)
        self.service.ingestor.poll_once()
        now = self.service.now_s()
        report = self.service.controller.step(now)
        assert self.service.field_sink is not None
        self.service.field_sink.period_done(now, report.written)
        return report

    def close(self) -> None:
        try:
            self.service.close()
        finally:
            self.emulator.stop()


@pytest.fixture
def mixed_site(tmp_path: Path) -> Iterator[MixedSite]:
    site = MixedSite(tmp_path)
    try:
        site.emulator.step()
        site.service.start()  # the poller's first poll now; the test polls after that
        assert site.service.wait_for_data(10.0)
        yield site
    finally:
        site.close()


def test_a_mixed_site_writes_each_setpoint_at_its_owner_and_survives_a_silent_meter(
    mixed_site: MixedSite,
) -> None:
    site, emulator = mixed_site.service, mixed_site.emulator
    for _ in range(2):
        report = mixed_site.period()
        assert report.mode == "live"
    assert all(emulator.control_of(f) == "twinloop" for f in SETPOINT_FIELDS)
    written = report.written["chw_supply_c"]
    assert emulator.modbus.setpoint("chw_supply_c") == pytest.approx(written, abs=1e-5)
    audit = {(a.field, a.detail) for a in site.historian.audit(limit=1000)}
    assert ("chw_supply_c", "modbus plant: applied") in audit
    assert ("cw_supply_c", "modbus plant: applied") in audit
    assert ("supply_air_c", "bacnet bms: applied") in audit
    # The readings are on the BMS's clock: the plant's time, whichever device read them.
    plant_s = emulator.bacnet.plant_epoch_s
    snapshot = site.ingestor.snapshot()
    assert snapshot["facility_power_kw"].ts == snapshot["supply_air_c"].ts == plant_s

    emulator.disconnect_modbus()  # the meters and the chiller plant controller go silent
    report = mixed_site.period()
    assert report.mode == "tripped"
    command = emulator.plant.command  # the step ran on the Modbus setpoint still held
    assert command is not None and command.chw_supply_c == pytest.approx(written, abs=1e-5)
    # Only the silent device's points are old; the BMS's were read on its clock now.
    snapshot, after_s = site.ingestor.snapshot(), emulator.bacnet.plant_epoch_s
    for entry in emulator.point_map.points:
        expected_s = plant_s if entry.device == "plant" else after_s
        assert snapshot[entry.name].ts == expected_s, entry.name
    trips = [e for e in site.historian.events() if e.kind == "trip"]
    assert trips and "stale" in trips[0].message
    assert "chw_supply_c" in trips[0].message or "facility_power_kw" in trips[0].message
    assert "supply_air_c," not in trips[0].message.split("stale key point(s)")[-1]
    # Handed back: the BMS's fields relinquished, the silent controller's not reachable...
    for field in ("supply_air_c", "fan_speed_frac", "economiser_enable"):
        assert emulator.control_of(field) == "site", field
    assert emulator.control_of("chw_supply_c") == "twinloop"
    errors = [a for a in site.historian.audit(limit=1000) if a.outcome == "error"]
    assert {a.field for a in errors} == {"chw_supply_c", "cw_supply_c"}
    assert all(a.detail.startswith("modbus plant: error timeout") for a in errors)
    # ... until its own heartbeat timeout releases them, as the device is built to.
    emulator.step(int(HEARTBEAT_TIMEOUT_S / emulator.plant.step_s) + 1)
    assert all(emulator.control_of(f) == "site" for f in SETPOINT_FIELDS)
    assert emulator.modbus.counters()["released_heartbeat"] == 1
    assert site.ingestor.stats()["partial_polls"] >= 1


def test_a_map_with_several_devices_of_each_protocol_gets_one_client_each(
    tmp_path: Path,
) -> None:
    """Two BACnet devices (each client on its own local port, ``local`` + n) and two Modbus
    devices (a read-only meter among them) from one map; nothing is contacted."""
    plant = build_plant(load_scenario(SCENARIO))
    catalog = PointCatalog.for_site(plant.config)
    data = mixed_point_map(
        catalog, bacnet_address="127.0.0.1:47901", modbus_address="127.0.0.1:5020"
    ).model_dump(mode="json", exclude_none=True)
    data["devices"]["ahu"] = {**data["devices"]["bms"], "address": "127.0.0.1:47902"}
    data["devices"]["ahu"]["device_instance"] = 1002
    data["devices"]["meters"] = {"protocol": "modbus", "address": "127.0.0.1:5021", "unit_id": 3}
    for entry in data["points"]:
        if entry.get("point", "").startswith("hot_aisle_c."):
            entry["device"] = "ahu"
        if entry.get("point") in ("facility_power_kw", "ups_output_kw"):
            entry["device"] = "meters"
    (tmp_path / "map.yaml").write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    live_rule_reservoir(tmp_path / "reservoir")
    (tmp_path / "site.yaml").write_text(
        "site: hall-a\nprotocol: mixed\n"
        "mixed: {point_map: map.yaml, local: '127.0.0.1:47950', reads: poll}\n"
        "historian: historian.sqlite\nreservoir: reservoir\n",
        encoding="utf-8",
    )
    service = LiveService(load_service_config(tmp_path / "site.yaml"), base=tmp_path)
    try:
        link = service.field_client
        assert isinstance(link, MultiLink)
        assert set(link.links) == {"bms", "ahu", "plant", "meters"}
        bms, ahu = link.links["bms"], link.links["ahu"]
        assert isinstance(bms, BacnetClient) and isinstance(ahu, BacnetClient)
        assert (bms.local_port, ahu.local_port) == (47950, 47951)
        assert isinstance(link.links["meters"], ModbusClient)
        assert link.points["meters"] == ("facility_power_kw", "ups_output_kw")
        assert link.writable_devices == ("bms", "plant")  # the ahu and the meter read only
        assert link.owner["chw_supply_c"] == "plant" and link.label("fan_speed_frac") == (
            "bacnet bms"
        )
    finally:
        service.close()

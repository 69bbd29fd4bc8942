"""A mixed site: one plant served by a real bacpypes3 BACnet device and a real pymodbus
server at once (connectors.mixed_emulator), read and written by TwinLoop's MultiLink over
one point map, on loopback free ports. Checked: the drafted map puts every point on one
device; a poll merges both devices; each setpoint goes to the device that owns it; a
silent Modbus device makes only its points stale (a partial poll, never a whole one) and
its hand-back fails there while the BACnet one is done; counters are per device."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from connectors.bacnet_client import BacnetClient
from connectors.catalog import PointCatalog
from connectors.device_clock import DeviceClockGuard, PlantCalendar
from connectors.field_ingestion import FieldIngestor
from connectors.field_sink import FieldSetpointSink, FieldWriteError
from connectors.historian import Historian
from connectors.mixed_emulator import MixedPlantEmulator, merge_commands, mixed_point_map
from connectors.modbus_client import ModbusClient
from connectors.modbus_device import PLANT_CONTROLLER_POINTS
from connectors.multi_link import MultiLink, MultiLinkError
from connectors.point_map import PointMap
from physics.plant.plant import Plant
from physics.plant.site_control import SETPOINT_FIELDS, SetpointCommand

pytestmark = pytest.mark.integration


def free_port(kind: socket.SocketKind) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def draft(plant: Plant) -> PointMap:
    return mixed_point_map(
        PointCatalog.for_site(plant.config),
        bacnet_address=f"127.0.0.1:{free_port(socket.SOCK_DGRAM)}",
        modbus_address=f"127.0.0.1:{free_port(socket.SOCK_STREAM)}",
    )


def test_the_mixed_map_puts_every_point_on_one_device(plant: Plant) -> None:
    pm = draft(plant)
    catalog = PointCatalog.for_site(plant.config)
    names = [e.name for e in pm.points]
    assert len(names) == len(set(names)) == len(catalog.points) + len(SETPOINT_FIELDS)
    on_modbus = {e.name for e in pm.for_device("plant")}
    assert {p for p in PLANT_CONTROLLER_POINTS if p in catalog} <= on_modbus
    assert "chiller_power_kw.0" in on_modbus and "rack_inlet_c.0.00" not in on_modbus
    owners = {e.setpoint: e.device for e in pm.points if e.setpoint is not None}
    assert owners == {
        "supply_air_c": "bms",
        "fan_speed_frac": "bms",
        "economiser_enable": "bms",
        "chw_supply_c": "plant",
        "cw_supply_c": "plant",
    }
    assert {d.protocol for d in pm.devices.values()} == {"bacnet", "modbus"}


def test_commands_of_two_devices_merge_and_never_share_a_field() -> None:
    a = SetpointCommand("a", 100.0, supply_air_c=20.0)
    b = SetpointCommand("b", 90.0, chw_supply_c=8.0)
    merged = merge_commands(a, b)
    assert merged is not None
    assert (merged.supply_air_c, merged.chw_supply_c, merged.expires_at_s) == (20.0, 8.0, 90.0)
    assert merge_commands(None, b) is b and merge_commands(None, None) is None
    with pytest.raises(ValueError, match="chw_supply_c is commanded by two devices"):
        merge_commands(b, SetpointCommand("c", 90.0, chw_supply_c=9.0))


def test_a_clock_device_must_be_a_bacnet_device_of_the_map(plant: Plant) -> None:
    pm = draft(plant)
    links = {
        "bms": BacnetClient(pm, device="bms"),
        "plant": ModbusClient(pm, device="plant"),
    }
    with pytest.raises(MultiLinkError, match="speaks modbus: only a BACnet device has a clock"):
        MultiLink(pm, links, clock_device="plant")
    with pytest.raises(MultiLinkError, match="'ups' is not a device of the map"):
        MultiLink(pm, links, clock_device="ups")
    with pytest.raises(MultiLinkError, match="'plant' has no link"):
        MultiLink(pm, {"bms": links["bms"]})


@dataclass
class Mixed:
    emulator: MixedPlantEmulator
    link: MultiLink


@pytest.fixture
def mixed(plant: Plant) -> Iterator[Mixed]:
    pm = draft(plant)
    emulator = MixedPlantEmulator(plant, pm, heartbeat_timeout_s=180.0).start()
    link = MultiLink(
        pm,
        {
            "bms": BacnetClient(
                pm, device="bms", local_port=free_port(socket.SOCK_DGRAM), timeout_s=1.0
            ),
            "plant": ModbusClient(pm, device="plant", timeout_s=0.5),
        },
    )
    try:
        emulator.step()
        link.start()
        yield Mixed(emulator, link)
    finally:
        link.stop()
        emulator.stop()


def test_a_poll_merges_both_devices_and_writes_go_to_their_owners(mixed: Mixed) -> None:
    result = mixed.link.poll()
    assert result.device_ok and not result.partial and result.errors == {}
    assert result.supervisory_enabled is True
    assert {n: d.ok for n, d in result.devices.items()} == {"bms": True, "plant": True}
    assert set(result.readings) == {e.name for e in mixed.link.point_map.points}
    out = mixed.link.write({"chw_supply_c": 8.0, "supply_air_c": 20.0, "fan_speed_frac": 0.7})
    assert {f: o.status for f, o in out.items()} == dict.fromkeys(out, "applied")
    modbus, bacnet = mixed.emulator.modbus, mixed.emulator.bacnet
    assert modbus.counters()["writes"] == 1 and bacnet.counters()["writes"] == 2
    assert modbus.setpoint("chw_supply_c") == pytest.approx(8.0)
    assert mixed.emulator.control_of("chw_supply_c") == "twinloop"
    assert mixed.emulator.control_of("cw_supply_c") == "site"
    mixed.emulator.step()  # one plant step under both devices' setpoints
    command = mixed.emulator.plant.command
    assert command is not None
    assert (command.chw_supply_c, command.supply_air_c, command.cw_supply_c) == (8.0, 20.0, None)
    assert modbus.counters()["steps"] == bacnet.counters()["steps"] == 2
    # The Modbus device's envelope answers for its setpoint, with the protocol's own name.
    refused = mixed.link.write({"cw_supply_c": 45.0})["cw_supply_c"]
    assert refused.status == "refused"
    assert mixed.link.write({"nonsense": 1.0})["nonsense"].detail == "not_writable"
    counters = mixed.link.counters()
    assert counters["plant.writes_applied"] == 1 and counters["bms.writes_applied"] == 2
    assert counters["plant.heartbeats"] == counters["bms.heartbeats"] == 1
    assert counters["whole_polls"] == 1
    assert mixed.link.heartbeat()
    assert mixed.link.label("chw_supply_c") == "modbus plant"


def test_a_silent_modbus_device_stales_only_its_points(mixed: Mixed, tmp_path: Path) -> None:
    link = mixed.link
    with Historian(tmp_path / "h.sqlite") as historian:
        ingestor = FieldIngestor(link, historian, stale_after_s=1e6, name="site")
        sink = FieldSetpointSink(link, historian, protocol="mixed", labels=link.label)
        ingestor.poll_once()
        sink.write(
            {"chw_supply_c": 8.0, "supply_air_c": 20.0}, 1e9, issued_at_s=0.0, command_id="c1"
        )
        mixed.emulator.disconnect_modbus()
        mixed.emulator.step()
        modbus_points = set(link.points["plant"])
        for n in range(2):
            result = ingestor.poll_once()
            assert result.device_ok and result.partial  # never a whole poll
            assert not result.devices["plant"].ok and result.devices["bms"].ok
            assert modbus_points.isdisjoint(result.readings)
            assert {result.errors[p] for p in modbus_points} == {"timeout"}
            snap = ingestor.snapshot()
            stale = {p for p, s in snap.items() if s.stale}
            # The first miss is no news (the readings' age tells); the second stales them.
            assert stale == (modbus_points if n == 1 else set()), n
        assert snap["facility_power_kw"].stale_reason == "device plant: timeout"
        assert not snap["rack_inlet_c.0.00"].stale and not snap["setpoint.supply_air_c"].stale
        stats = ingestor.stats()
        assert stats["partial_polls"] == 2 and stats["answered_polls"] == 1
        assert stats["link.plant.error:timeout"] > 0
        events = [e for e in historian.events() if e.kind == "device_lost"]
        assert [e.message for e in events] == ["plant: timeout: its points stale"]
        # Handed back: the BACnet device relinquishes, the Modbus one cannot be reached.
        outcomes = sink.hand_back(1.0, "watchdog")
        assert outcomes["supply_air_c"].status == "relinquished"
        assert outcomes["chw_supply_c"].status == "error"
        assert sink.held == {"chw_supply_c"}
        audit = {(a.field, a.detail) for a in historian.audit(limit=100)}
        assert ("chw_supply_c", "modbus plant: applied") in audit
        assert ("supply_air_c", "bacnet bms: applied") in audit
        assert ("chw_supply_c", "modbus plant: error timeout (watchdog)") in audit
        with pytest.raises(FieldWriteError, match="chw_supply_c: timeout"):
            sink.write({"chw_supply_c": 8.0}, 1e9, issued_at_s=2.0, command_id="c2")
        # The device keeps the last word: its heartbeat timeout releases the setpoint.
        assert mixed.emulator.control_of("chw_supply_c") == "twinloop"
        mixed.emulator.step(4)
        assert mixed.emulator.control_of("chw_supply_c") == "site"
        assert mixed.emulator.modbus.counters()["released_heartbeat"] == 1
        # Back on the network: its points fresh again, and the event says so.
        mixed.emulator.reconnect_modbus()
        result = ingestor.poll_once()
        assert result.device_ok and not result.partial and result.errors == {}
        assert not any(s.stale for s in ingestor.snapshot().values())
        assert [e.message for e in historian.events() if e.kind == "device_back"] == [
            "plant: answering again"
        ]
        assert ingestor.stats()["answered_polls"] == 2


def test_the_clock_devices_loss_stops_the_sites_clock(plant: Plant, tmp_path: Path) -> None:
    """Every device's readings carry the BACnet clock device's time; without it no poll is
    believed, even though the Modbus device still answers."""
    pm = draft(plant)
    calendar = PlantCalendar(2023)
    emulator = MixedPlantEmulator(plant, pm, epoch_s=3600.0, calendar=calendar).start()
    link = MultiLink(
        pm,
        {
            "bms": BacnetClient(
                pm,
                device="bms",
                local_port=free_port(socket.SOCK_DGRAM),
                timeout_s=0.5,
                device_clock=calendar.seconds,
            ),
            "plant": ModbusClient(pm, device="plant", timeout_s=0.5),
        },
        clock_device="bms",
    )
    try:
        emulator.step(2)
        link.start()
        ingestor = FieldIngestor(
            link, None, stale_after_s=1e6, device_clock=DeviceClockGuard(speed=1.0)
        )
        result = ingestor.poll_once()
        assert result.device_ok and result.device_time_s == 3600.0 + 2 * plant.step_s
        assert {s.ts for s in ingestor.snapshot().values()} == {result.device_time_s}
        emulator.bacnet.stop()  # the clock device (and the plant's pacing) gone
        for _ in range(2):
            result = ingestor.poll_once()
            assert not result.device_ok  # the Modbus device answered, but at no known time
            assert result.errors["device"] == "device_clock:missing"
        assert all(s.stale for s in ingestor.snapshot().values())
        assert ingestor.stats()["clock_refused.missing"] == 2
    finally:
        link.stop()
        emulator.modbus.stop()

"""``twinloop serve`` with ``protocol: mixed`` (a BACnet BMS beside a Modbus plant
controller, one point map) and ``twinloop emulate --protocol mixed``: a bad site file or a
clock device the map cannot give stops with one error line and opens nothing; the emulator
serves one plant as both devices at once, and the service, a real process, holds the
setpoints at both and hands every one back when stopped."""

from __future__ import annotations

import json
import signal
import socket
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from connectors.bacnet_client import BacnetClient
from connectors.catalog import PointCatalog
from connectors.historian import Historian
from connectors.mixed_emulator import MixedPlantEmulator, mixed_point_map
from connectors.modbus_client import ModbusClient
from connectors.multi_link import MultiLink
from connectors.point_map import load_point_map
from physics.plant.scenario import load_scenario
from physics.plant.simulation import build_plant
from physics.plant.site_control import SETPOINT_FIELDS
from tests.twinloop.cli_process import (
    check_serve_hands_back_on_ctrl_c,
    live_rule_reservoir,
    one_error_line,
    start_emulator,
)
from twinloop.cli import main

SPEED = 100.0
"""Plant seconds per wall second: a 300 s period is 3 s."""
_TAIL = "historian: h.sqlite\nreservoir: r\n"


def free_port(kind: socket.SocketKind) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("site: a\nprotocol: mixed\n" + _TAIL, "mixed: Field required (protocol mixed)"),
        (
            "site: a\nprotocol: mixed\nmixed: {point_map: m.yaml}\nclock: plant\n" + _TAIL,
            "protocol mixed with clock plant needs 'scenario'",
        ),
        (
            "site: a\nprotocol: mixed\nmixed: {point_map: m.yaml}\nclock: plant\n"
            "scenario: tropical-typical-week\n" + _TAIL,
            "site.yaml: mixed.clock_device: required with clock plant",
        ),
        (
            "site: a\nprotocol: mixed\nmixed: {point_map: m.yaml, clock_device: bms}\n" + _TAIL,
            "site.yaml: mixed.clock_device: only with clock plant",
        ),
        (
            "site: a\nprotocol: mixed\nmixed: {point_map: m.yaml, local: '47808'}\n" + _TAIL,
            "mixed: local: '47808' is not host:port",
        ),
        (
            "site: a\nprotocol: mixed\nmixed: {point_map: m.yaml, device: bms}\n" + _TAIL,
            "mixed.device: Extra inputs are not permitted",
        ),
        (
            "site: a\nprotocol: fieldbus\n" + _TAIL,
            "protocol: Input should be 'mqtt', 'bacnet', 'modbus' or 'mixed'",
        ),
    ],
)
def test_a_bad_mixed_site_file_is_one_error_line(
    tmp_path: Path, body: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "site.yaml").write_text(body, encoding="utf-8")
    assert main(["serve", "--site", str(tmp_path / "site.yaml")]) == 2
    assert message in one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "h.sqlite").exists()


@pytest.mark.parametrize(
    ("clock_device", "message"),
    [
        ("plant", "mixed.clock_device: 'plant' is a modbus device: only a BACnet device"),
        ("ups", "mixed.clock_device: 'ups' is not a device of"),
    ],
)
def test_a_clock_device_the_map_cannot_give_is_one_error_line_and_opens_nothing(
    tmp_path: Path, clock_device: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    live_rule_reservoir(tmp_path / "reservoir")
    catalog = PointCatalog.for_site(build_plant(load_scenario("tropical-typical-week")).config)
    point_map = mixed_point_map(
        catalog, bacnet_address="127.0.0.1:47808", modbus_address="127.0.0.1:5020"
    )
    (tmp_path / "map.yaml").write_text(point_map.to_yaml(), encoding="utf-8")
    (tmp_path / "site.yaml").write_text(
        f"site: a\nprotocol: mixed\nmixed: {{point_map: map.yaml, clock_device: {clock_device}}}"
        "\nclock: plant\nscenario: tropical-typical-week\n"
        "historian: h.sqlite\nreservoir: reservoir\n",
        encoding="utf-8",
    )
    assert main(["serve", "--site", str(tmp_path / "site.yaml")]) == 2
    assert message in one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "h.sqlite").exists()


@pytest.mark.integration
def test_emulate_serves_one_plant_as_a_bacnet_and_a_modbus_device(tmp_path: Path) -> None:
    bacnet_port, modbus_port = free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_STREAM)
    map_file = tmp_path / "map.yaml"
    proc = start_emulator(
        [
            "--protocol",
            "mixed",
            "--scenario",
            "chiller-trip",
            "--bind",
            f"127.0.0.1:{bacnet_port}",
            "--modbus-bind",
            f"127.0.0.1:{modbus_port}",
            "--speed",
            "600",
            "--write-point-map",
            str(map_file),
        ],
        "Mixed site",
        tmp_path,
    )
    try:
        plant = build_plant(load_scenario("chiller-trip"))
        point_map = load_point_map(map_file, PointCatalog.for_site(plant.config))
        assert point_map.devices["bms"].port == bacnet_port
        assert point_map.devices["plant"].port == modbus_port
        links = {
            "bms": BacnetClient(
                point_map, device="bms", local_port=free_port(socket.SOCK_DGRAM), timeout_s=2.0
            ),
            "plant": ModbusClient(point_map, device="plant", timeout_s=2.0),
        }
        with MultiLink(point_map, links) as link:
            result = link.poll()
            assert result.device_ok and not result.partial and result.errors == {}
            assert len(result.readings) == len(plant.point_names) + len(SETPOINT_FIELDS)
            out = link.write({"chw_supply_c": 8.0, "supply_air_c": 21.0})
            assert {o.status for o in out.values()} == {"applied"}
            handed = link.relinquish()  # every writable device's every field
            assert set(handed) == set(SETPOINT_FIELDS)
            assert {o.status for o in handed.values()} == {"relinquished"}
        proc.send_signal(signal.SIGINT)
        out_text, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        counts = json.loads(out_text.strip().splitlines()[-1])
        assert counts["modbus.writes"] == 1 and counts["bacnet.writes"] == 1
        assert counts["bacnet.steps"] == counts["modbus.steps"] > 0  # one plant, stepped once
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


@pytest.fixture
def served_mixed_site(tmp_path: Path) -> Iterator[tuple[MixedPlantEmulator, Path]]:
    """A paced mixed emulated site, its map, a live rule policy and serve's site file."""
    live_rule_reservoir(tmp_path / "reservoir")
    plant = build_plant(replace(load_scenario("tropical-typical-week"), duration_h=12.0))
    point_map = mixed_point_map(
        PointCatalog.for_site(plant.config),
        bacnet_address=f"127.0.0.1:{free_port(socket.SOCK_DGRAM)}",
        modbus_address=f"127.0.0.1:{free_port(socket.SOCK_STREAM)}",
    )
    (tmp_path / "map.yaml").write_text(point_map.to_yaml(), encoding="utf-8")
    site = tmp_path / "site.yaml"
    site.write_text(
        "site: hall-a\n"
        "protocol: mixed\n"
        f"mixed: {{point_map: map.yaml, local: '127.0.0.1:{free_port(socket.SOCK_DGRAM)}', "
        "timeout_s: 1.0, reads: poll}\n"
        "historian: historian.sqlite\n"
        "reservoir: reservoir\n"
        "control_period_s: 300\n"
        "sensor_step_s: 60\n"
        f"time_scale: {SPEED}\n",
        encoding="utf-8",
    )
    with MixedPlantEmulator(plant, point_map, speed=SPEED, heartbeat_timeout_s=900.0) as em:
        yield em, site


@pytest.mark.integration
@pytest.mark.slow
def test_serve_over_a_mixed_site_holds_both_devices_and_hands_back_when_stopped(
    served_mixed_site: tuple[MixedPlantEmulator, Path],
) -> None:
    emulator, site = served_mixed_site
    check_serve_hands_back_on_ctrl_c(emulator.control_of, site, "mixed", settle_s=0.5)
    with Historian(site.parent / "historian.sqlite", readonly=True) as store:
        audit = store.audit(limit=10_000)
        details = {(a.field, a.detail) for a in audit}
        assert ("chw_supply_c", "modbus plant: applied") in details
        assert ("supply_air_c", "bacnet bms: applied") in details
        handed = {a.field for a in audit if "relinquished" in a.detail and "stopping" in a.detail}
        assert handed == set(SETPOINT_FIELDS)
        assert len(store.series(["facility_power_kw", "rack_inlet_c.0.00"])) >= 1

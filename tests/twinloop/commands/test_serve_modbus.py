"""``twinloop serve`` with ``protocol: modbus`` in the site file, and ``twinloop emulate
--protocol modbus``: the site's gateway as one Modbus TCP device (every point in input
registers, the five setpoints in holding registers). The service, a real process against a
real pymodbus server on loopback, takes the setpoints, hands them back (NaN) when stopped,
and when killed the device's heartbeat timeout releases them."""

from __future__ import annotations

import json
import signal
import socket
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from connectors.catalog import PointCatalog
from connectors.modbus_client import ModbusClient
from connectors.modbus_device import ModbusPlantDevice, site_map
from connectors.point_map import load_point_map
from physics.plant.scenario import load_scenario
from physics.plant.simulation import build_plant
from physics.plant.site_control import SETPOINT_FIELDS
from tests.twinloop.cli_process import (
    check_serve_hands_back_and_is_released_when_killed,
    live_rule_reservoir,
    one_error_line,
    start_emulator,
)
from twinloop.cli import main

SPEED = 100.0
"""Plant seconds per wall second: a 300 s period is 3 s, the 900 s heartbeat timeout 9 s."""


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "site: a\nprotocol: modbus\nhistorian: h.sqlite\nreservoir: r\n",
            "modbus: Field required",
        ),
        (
            "site: a\nprotocol: modbus\nmodbus: {point_map: m.yaml}\nclock: plant\n"
            "historian: h.sqlite\nreservoir: r\n",
            "clock must be unix (Modbus carries no plant clock)",
        ),
        (
            "site: a\nprotocol: modbus\nmodbus: {point_map: m.yaml, timeout_s: 0}\n"
            "historian: h.sqlite\nreservoir: r\n",
            "modbus.timeout_s",
        ),
    ],
)
def test_a_bad_modbus_site_file_is_one_error_line(
    tmp_path: Path, body: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "site.yaml").write_text(body, encoding="utf-8")
    assert main(["serve", "--site", str(tmp_path / "site.yaml")]) == 2
    assert message in one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "h.sqlite").exists()


def test_a_modbus_map_without_the_device_is_one_error_line_and_opens_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    live_rule_reservoir(tmp_path / "reservoir")
    catalog = PointCatalog.for_site(build_plant(load_scenario("tropical-typical-week")).config)
    (tmp_path / "map.yaml").write_text(
        site_map(catalog, address="127.0.0.1:5020").to_yaml(), encoding="utf-8"
    )
    (tmp_path / "site.yaml").write_text(
        "site: a\nprotocol: modbus\nmodbus: {point_map: map.yaml, device: meters}\n"
        "historian: h.sqlite\nreservoir: reservoir\n",
        encoding="utf-8",
    )
    assert main(["serve", "--site", str(tmp_path / "site.yaml")]) == 2
    assert "no Modbus device 'meters'" in one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "h.sqlite").exists()


@pytest.fixture
def served_site(tmp_path: Path) -> Iterator[tuple[ModbusPlantDevice, Path]]:
    """A paced Modbus device of the emulated site, its map, a reservoir with a live rule
    policy and the site file of ``serve``."""
    live_rule_reservoir(tmp_path / "reservoir")
    plant = build_plant(replace(load_scenario("tropical-typical-week"), duration_h=12.0))
    point_map = site_map(
        PointCatalog.for_site(plant.config), address=f"127.0.0.1:{free_tcp_port()}"
    )
    (tmp_path / "map.yaml").write_text(point_map.to_yaml(), encoding="utf-8")
    site = tmp_path / "site.yaml"
    site.write_text(
        "site: hall-a\n"
        "protocol: modbus\n"
        "modbus: {point_map: map.yaml, timeout_s: 1.0}\n"
        "historian: historian.sqlite\n"
        "reservoir: reservoir\n"
        "control_period_s: 300\n"
        "sensor_step_s: 60\n"
        f"time_scale: {SPEED}\n",
        encoding="utf-8",
    )
    with ModbusPlantDevice(plant, point_map, speed=SPEED, heartbeat_timeout_s=900.0) as device:
        yield device, site


@pytest.mark.integration
@pytest.mark.slow
def test_serve_over_modbus_hands_back_when_stopped_and_is_released_when_killed(
    served_site: tuple[ModbusPlantDevice, Path],
) -> None:
    device, site = served_site
    check_serve_hands_back_and_is_released_when_killed(device, site, "modbus")


@pytest.mark.integration
def test_emulate_serves_the_whole_plant_over_modbus(tmp_path: Path) -> None:
    port = free_tcp_port()
    map_file = tmp_path / "map.yaml"
    args = ["--protocol", "modbus", "--scenario", "chiller-trip", "--bind", f"127.0.0.1:{port}"]
    proc = start_emulator(
        [*args, "--speed", "600", "--write-point-map", str(map_file)], "Modbus device 1", tmp_path
    )
    try:
        plant = build_plant(load_scenario("chiller-trip"))
        point_map = load_point_map(map_file, PointCatalog.for_site(plant.config))
        with ModbusClient(point_map, timeout_s=2.0) as client:
            result = client.poll()
            assert result.device_ok and result.errors == {}
            assert result.supervisory_enabled is True
            assert len(result.readings) == len(plant.point_names) + 5
            assert client.write({"supply_air_c": 21.0})["supply_air_c"].status == "applied"
            refused = client.write({"supply_air_c": 40.0})["supply_air_c"]
            assert refused.status == "refused"  # outside the map's limits: never sent
            assert client.relinquish(["supply_air_c"])["supply_air_c"].status == "relinquished"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        counts = json.loads(out.strip().splitlines()[-1])
        assert counts["writes"] == 1 and counts["relinquishes"] == 1 and counts["steps"] > 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_emulate_modbus_refuses_a_bad_bind_and_unit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["emulate", "--protocol", "modbus", "--scenario", "chiller-trip"]
    assert main([*args, "--bind", "nowhere"]) == 2
    assert "HOST:PORT" in one_error_line(capsys.readouterr().err)
    assert main([*args, "--unit-id", "300"]) == 2
    assert "--unit-id 0-247" in one_error_line(capsys.readouterr().err)


def test_the_whole_site_map_keeps_setpoints_clear_of_the_sensors_and_the_heartbeat() -> None:
    from connectors.modbus_device import HEARTBEAT_ADDRESS, ModbusDeviceError

    catalog = PointCatalog.for_site(build_plant(load_scenario("tropical-typical-week")).config)
    point_map = site_map(catalog, address="127.0.0.1:5020")
    sensors = [e.modbus for e in point_map.points if e.point is not None]
    setpoints = [e.modbus for e in point_map.points if e.setpoint is not None]
    assert len(sensors) == len(catalog.points) and len(setpoints) == len(SETPOINT_FIELDS)
    top = max(r.address + r.words for r in sensors if r is not None)
    assert all(r is not None and top <= r.address < HEARTBEAT_ADDRESS for r in setpoints)
    # 440 points fill the input registers up to 880: the setpoints would reach the heartbeat.
    too_many = PointCatalog({f"rack_inlet_c.{i // 20}.{i % 20:02d}": "degC" for i in range(440)})
    with pytest.raises(ModbusDeviceError, match="do not fit below the heartbeat"):
        site_map(too_many, address="127.0.0.1:5020")

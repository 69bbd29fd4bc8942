"""``twinloop serve`` with ``protocol: modbus`` in the site file, and ``twinloop emulate
--protocol modbus``: the site's gateway as one Modbus TCP device (every point in input
registers, the five setpoints in holding registers). The service, a real process against a
real pymodbus server on loopback, takes the setpoints, hands them back (NaN) when stopped,
and when killed the device's heartbeat timeout releases them."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from connectors.catalog import PointCatalog
from connectors.historian import Historian
from connectors.modbus_client import ModbusClient
from connectors.modbus_device import ModbusPlantDevice, site_map
from connectors.point_map import load_point_map
from physics.plant.scenario import load_scenario
from physics.plant.simulation import build_plant
from physics.plant.site_control import SETPOINT_FIELDS
from tests.twinloop.cli_process import (
    live_rule_reservoir,
    one_error_line,
    serve_process,
    wait_until_twinloop_holds,
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
    # Stopped (Ctrl-C): TwinLoop writes NaN, the hand-back, itself.
    proc = serve_process(site)
    try:
        wait_until_twinloop_holds(device.control_of, proc)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err[-3000:]
    assert "serving site hall-a over modbus" in out
    assert all(device.control_of(f) == "site" for f in SETPOINT_FIELDS)
    assert device.counters()["released_heartbeat"] == 0
    # Killed: nothing hands back, the device's heartbeat timeout does.
    proc = serve_process(site)
    try:
        wait_until_twinloop_holds(device.control_of, proc)
        proc.kill()
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    killed_at = device.now_s
    assert device.control_of("supply_air_c") == "twinloop"  # a register holds its value
    deadline = time.monotonic() + 60.0
    while device.control_of("supply_air_c") == "twinloop" and time.monotonic() < deadline:
        time.sleep(0.1)
    released_after_s = device.now_s - killed_at
    assert all(device.control_of(f) == "site" for f in SETPOINT_FIELDS)
    assert device.counters()["released_heartbeat"] == 1
    assert released_after_s <= 900.0 + 300.0  # the timeout after the last beat, plus a period
    with Historian(site.parent / "historian.sqlite", readonly=True) as store:
        inlets = store.series(["rack_inlet_c.0.00"])
        assert len(inlets) >= 2 and inlets.index.is_unique  # a stored poll per run at least
        audit = store.audit(limit=10_000)
        assert any(a.detail == "modbus: applied" for a in audit)
        assert any("relinquished" in a.detail and "stopping" in a.detail for a in audit)


@pytest.mark.integration
def test_emulate_serves_the_whole_plant_over_modbus(tmp_path: Path) -> None:
    port = free_tcp_port()
    map_file = tmp_path / "map.yaml"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "twinloop.cli",
            "emulate",
            "--protocol",
            "modbus",
            "--scenario",
            "chiller-trip",
            "--bind",
            f"127.0.0.1:{port}",
            "--speed",
            "600",
            "--write-point-map",
            str(map_file),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 90
        line = ""
        while time.monotonic() < deadline and "Modbus device" not in line:
            line = proc.stdout.readline()
            if not line:
                break
        assert "Modbus device 1" in line and "Ctrl-C" in line, proc.stderr and proc.stderr.read()
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

"""Interoperability: TwinLoop's Modbus TCP device read and written by an independent master.

TwinLoop's Modbus client and device are both pymodbus, and both decode float32 words with
TwinLoop's own :mod:`connectors.modbus_registers`; a word order the two agree on wrongly
would pass every other Modbus test. Here the master is Debian's ``mbpoll`` (libmodbus, C):
it reads the plant controller's float32 input registers in the word order the point map
gives (``-B`` for big, none for little), writes the heartbeat (function 6) and a float32
setpoint (function 16), and is refused a value outside the envelope with exception 0x03;
every value is checked through the device (its registers, then the plant's command).
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
from collections.abc import Iterator

import pytest

from connectors.catalog import PointCatalog
from connectors.modbus_device import (
    HEARTBEAT_ADDRESS,
    ModbusPlantDevice,
    plant_controller_map,
)
from connectors.point_map import PointMap, parse_point_map
from physics.plant.plant import Plant
from tests.connectors.test_modbus import free_tcp_port

MBPOLL = shutil.which("mbpoll")

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        MBPOLL is None,
        reason="mbpoll (Debian package mbpoll, libmodbus) is not installed; "
        "scripts/setup.sh installs it",
    ),
]

LITTLE = ("chw_supply_c", "setpoint.cw_supply_c")
"""Entries mapped low word first; the rest high word first."""
RUN_S = 30.0
_VALUE = re.compile(r"^\[(\d+)\]:\s+(\S+)\s*$", re.MULTILINE)


def mixed_order_map(plant: Plant, port: int) -> PointMap:
    """The plant controller's map with :data:`LITTLE` in little word order."""
    catalog = PointCatalog.for_site(plant.config)
    data = plant_controller_map(catalog, address=f"127.0.0.1:{port}").model_dump(
        mode="json", exclude_none=True
    )
    for entry in data["points"]:
        name = entry.get("point") or f"setpoint.{entry['setpoint']}"
        if name in LITTLE:
            entry["modbus"]["word_order"] = "little"
    return parse_point_map(data, catalog)


def mbpoll(port: int, table: str, first: int, *args: str, big: bool = True) -> tuple[int, str]:
    """One mbpoll run (PDU addressing, one poll): its exit status and output."""
    assert MBPOLL is not None
    command = [MBPOLL, "-m", "tcp", "-a", "1", "-p", str(port), "-t", table, "-0", "-1"]
    command += ["-o", "5", "-r", str(first)] + (["-B"] if big else []) + ["127.0.0.1", *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=RUN_S, check=False)
    return done.returncode, done.stdout + done.stderr


def read_floats(port: int, first: int, count: int, *, big: bool) -> dict[int, float]:
    rc, out = mbpoll(port, "3:float", first, "-c", str(count), big=big)
    assert rc == 0, out
    return {int(a): float(v) for a, v in _VALUE.findall(out)}


@pytest.fixture
def device(plant: Plant) -> Iterator[ModbusPlantDevice]:
    port = free_tcp_port()
    with ModbusPlantDevice(plant, mixed_order_map(plant, port), heartbeat_timeout_s=600.0) as dev:
        dev.step()
        yield dev


def test_mbpoll_reads_the_float32_registers_in_the_mapped_word_order(
    device: ModbusPlantDevice, plant: Plant
) -> None:
    frame = plant.last_frame
    assert frame is not None
    sensors = [e for e in device.point_map.points if e.point is not None]
    assert len(sensors) >= 10
    count = max(e.modbus.address for e in sensors if e.modbus is not None) // 2 + 1
    as_big = read_floats(device.port, 0, count, big=True)
    as_little = read_floats(device.port, 0, count, big=False)
    checked = 0
    for entry in sensors:
        assert entry.point is not None and entry.modbus is not None
        i = plant.point_names.index(entry.point)
        if not frame.quality[0][i]:
            continue
        expected = float(frame.values[0][i])
        got = (as_little if entry.name in LITTLE else as_big)[entry.modbus.address]
        assert got == pytest.approx(expected, rel=1e-5, abs=1e-4), entry.name  # 6 digits
        checked += 1
    assert checked >= 10
    # The other word order reads something else: the order is really being checked.
    chw = plant.point_names.index("chw_supply_c")
    address = device.point_map.entry("chw_supply_c").modbus.address  # type: ignore[union-attr]
    assert as_big[address] != pytest.approx(float(frame.values[0][chw]), rel=1e-3)


def test_mbpoll_writes_a_setpoint_the_device_takes(device: ModbusPlantDevice, plant: Plant) -> None:
    chw = device.point_map.entry("setpoint.chw_supply_c").modbus
    cw = device.point_map.entry("setpoint.cw_supply_c").modbus
    assert chw is not None and cw is not None and cw.word_order == "little"
    # Without a heartbeat the device refuses (exception 0x06, device busy).
    rc, out = mbpoll(device.port, "4:float", chw.address, "8.5")
    assert rc != 0 and "busy" in out.lower(), out
    assert math.isnan(device.setpoint("chw_supply_c"))
    rc, out = mbpoll(device.port, "4", HEARTBEAT_ADDRESS, "7")  # function 6
    assert rc == 0, out
    assert device.counters()["heartbeats"] == 1
    rc, out = mbpoll(device.port, "4:float", chw.address, "8.5")  # function 16, high word first
    assert rc == 0, out
    rc, out = mbpoll(device.port, "4:float", cw.address, "27.25", big=False)  # low word first
    assert rc == 0, out
    assert device.setpoint("chw_supply_c") == 8.5
    assert device.setpoint("cw_supply_c") == 27.25
    rc, out = mbpoll(device.port, "4:float", chw.address, "99")  # outside the envelope
    assert rc != 0 and "illegal data value" in out.lower(), out
    assert device.setpoint("chw_supply_c") == 8.5  # refused, never clipped
    device.step()
    assert plant.command is not None
    assert (plant.command.chw_supply_c, plant.command.cw_supply_c) == (8.5, 27.25)
    # The hand-back: NaN in the register gives the field back to the site's control.
    rc, out = mbpoll(device.port, "4:float", chw.address, "nan")
    assert rc == 0, out
    assert device.control_of("chw_supply_c") == "site"
    device.step()
    assert plant.command is not None and plant.command.chw_supply_c is None
    counts = device.counters()
    assert counts["refused_no_heartbeat"] == 1 and counts["refused_out_of_envelope"] == 1

"""The emulated plant controller as a real pymodbus TCP server on loopback and TwinLoop's
Modbus client against it: registers and word orders, polling, writes with functions 6 and
16, exception responses, the heartbeat/enable pair and NaN as the hand-back."""

from __future__ import annotations

import math
import socket
from collections.abc import Iterator

import pytest
from pymodbus.client import ModbusTcpClient

from connectors.catalog import PointCatalog
from connectors.modbus_client import ModbusClient, read_blocks
from connectors.modbus_device import (
    HEARTBEAT_ADDRESS,
    SETPOINT_BASE,
    ModbusPlantDevice,
    plant_controller_map,
)
from connectors.modbus_registers import RegisterError, decode, encode
from connectors.point_map import ModbusRef, PointMap, parse_point_map
from physics.plant.plant import Plant


def free_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    ("raw", "kind", "order", "words"),
    [
        (-2.0, "int16", "big", [0xFFFE]),
        (65535.0, "uint16", "big", [0xFFFF]),
        (70000.0, "uint32", "big", [0x0001, 0x1170]),
        (70000.0, "uint32", "little", [0x1170, 0x0001]),
        (-1.0, "int32", "big", [0xFFFF, 0xFFFF]),
        (1.5, "float32", "big", [0x3FC0, 0x0000]),
        (1.5, "float32", "little", [0x0000, 0x3FC0]),
    ],
)
def test_register_words(raw: float, kind: str, order: str, words: list[int]) -> None:
    assert encode(raw, kind, order) == words
    assert decode(words, kind, order) == raw


def test_bad_words_are_refused() -> None:
    with pytest.raises(RegisterError, match="takes 2 register"):
        decode([1], "float32")
    with pytest.raises(RegisterError, match="not 0-65535"):
        decode([70000], "uint16")
    with pytest.raises(RegisterError, match="does not fit"):
        encode(70000.0, "int16")
    assert math.isnan(decode(encode(math.nan, "float32"), "float32"))


def test_reads_are_grouped_into_contiguous_requests() -> None:
    refs = [
        ("a", ModbusRef(address=0, function=4, type="float32")),
        ("b", ModbusRef(address=2, function=4, type="float32")),
        ("c", ModbusRef(address=10, function=4)),
        ("d", ModbusRef(address=4, function=3)),
        ("e", ModbusRef(address=124, function=4)),
        ("f", ModbusRef(address=125, function=4, type="uint32")),
    ]
    blocks = read_blocks(refs)
    assert [(fn, first, count) for fn, first, count, _ in blocks] == [
        (3, 4, 1),
        (4, 0, 4),
        (4, 10, 1),
        (4, 124, 3),
    ]


def controller_map(plant: Plant, port: int, **narrow: list[float]) -> PointMap:
    catalog = PointCatalog.for_site(plant.config)
    pm = plant_controller_map(catalog, address=f"127.0.0.1:{port}")
    if not narrow:
        return pm
    data = pm.model_dump(mode="json", exclude_none=True)
    for entry in data["points"]:
        if entry.get("setpoint") in narrow:
            entry["limits"] = narrow[entry["setpoint"]]
    return parse_point_map(data, catalog)


@pytest.fixture
def device(plant: Plant) -> Iterator[ModbusPlantDevice]:
    pm = controller_map(plant, free_tcp_port())
    with ModbusPlantDevice(plant, pm, heartbeat_timeout_s=180.0) as running:
        running.step()
        yield running


@pytest.fixture
def client(device: ModbusPlantDevice) -> Iterator[ModbusClient]:
    with ModbusClient(device.point_map, timeout_s=1.0) as c:
        yield c


def test_a_poll_reads_every_mapped_register(
    device: ModbusPlantDevice, client: ModbusClient, plant: Plant
) -> None:
    result = client.poll()
    assert result.device_ok and result.errors == {} and result.supervisory_enabled is True
    frame = plant.last_frame
    assert frame is not None
    sensors = [e.point for e in device.point_map.points if e.point is not None]
    assert "facility_power_kw" in sensors and "chiller_power_kw.0" in sensors
    for name in sensors:
        assert name is not None
        i = plant.point_names.index(name)
        if frame.quality[0][i]:
            assert result.readings[name].value == pytest.approx(float(frame.values[0][i]), rel=1e-6)
    assert math.isnan(result.readings["setpoint.chw_supply_c"].value)  # the site's
    assert result.readings["setpoint.chw_supply_c"].quality == "bad"


def test_write_applies_and_nan_hands_back(
    device: ModbusPlantDevice, client: ModbusClient, plant: Plant
) -> None:
    out = client.write({"chw_supply_c": 9.5})
    assert out["chw_supply_c"].status == "applied"
    assert (
        device.setpoint("chw_supply_c") == 9.5 and device.control_of("chw_supply_c") == "twinloop"
    )
    device.step()
    assert plant.command is not None and plant.command.chw_supply_c == 9.5
    assert plant.command.cw_supply_c is None
    assert client.poll().readings["setpoint.chw_supply_c"].value == 9.5
    back = client.relinquish()
    assert {o.status for o in back.values()} == {"relinquished"}
    assert device.control_of("chw_supply_c") == "site"
    device.step()
    assert plant.command is None
    assert device.counters()["heartbeats"] == 1 and device.counters()["writes"] == 1


def test_exception_responses_are_named(plant: Plant) -> None:
    port = free_tcp_port()
    narrow = controller_map(plant, port, chw_supply_c=[6.0, 10.0])  # the device's envelope
    with (
        ModbusPlantDevice(plant, narrow, heartbeat_timeout_s=180.0) as dev,
        ModbusClient(controller_map(plant, port), timeout_s=1.0) as cli,
    ):
        dev.step()
        assert cli.write({"chw_supply_c": 99.0})["chw_supply_c"].detail.startswith("out_of_range")
        out = cli.write({"chw_supply_c": 12.0})  # TwinLoop's map allows it, the device not
        assert out["chw_supply_c"].status == "refused"
        assert out["chw_supply_c"].detail == "modbus:illegal_value"
        assert cli.counters()["error:modbus:illegal_value"] == 1
        assert dev.counters()["refused_out_of_envelope"] == 1
        raw = ModbusTcpClient("127.0.0.1", port=port, timeout=1, retries=0)
        assert raw.connect()  # type: ignore[no-untyped-call]
        try:
            # any writer that skips the heartbeat: 0x06, device busy
            dev.step(5)  # the beat above is older than the timeout now
            words = encode(8.0, "float32")
            r = raw.write_registers(SETPOINT_BASE, words, device_id=1)
            assert r.isError() and r.exception_code == 6
            r = raw.write_register(SETPOINT_BASE, words[0], device_id=1)  # half a float32
            assert r.isError() and r.exception_code == 2
            r = raw.write_register(500, 1, device_id=1)  # no entry there
            assert r.isError() and r.exception_code == 2
            assert dev.counters()["refused_address"] == 2
            assert dev.counters()["refused_no_heartbeat"] == 1
        finally:
            raw.close()  # type: ignore[no-untyped-call]
        assert dev.control_of("chw_supply_c") == "site"


def test_a_dead_twinloop_is_released_by_the_heartbeat(
    device: ModbusPlantDevice, client: ModbusClient
) -> None:
    assert client.write({"cw_supply_c": 24.0})["cw_supply_c"].status == "applied"
    device.step(3)
    assert device.control_of("cw_supply_c") == "twinloop"
    device.step(1)
    assert device.control_of("cw_supply_c") == "site"
    assert device.counters()["released_heartbeat"] == 1
    assert client.write({"cw_supply_c": 24.0})["cw_supply_c"].status == "applied"  # beats again


def test_the_enable_is_the_operators(device: ModbusPlantDevice, client: ModbusClient) -> None:
    assert client.write({"cw_supply_c": 24.0})["cw_supply_c"].status == "applied"
    device.set_supervisory_enable(False)
    assert device.control_of("cw_supply_c") == "site"
    assert client.poll().supervisory_enabled is False
    out = client.write({"cw_supply_c": 24.0})
    assert out["cw_supply_c"].status == "withheld"
    raw = ModbusTcpClient(device.host, port=device.port, timeout=1, retries=0)
    assert raw.connect()  # type: ignore[no-untyped-call]
    try:  # the enable is an input register: nothing writes it over the network
        beat = raw.write_register(HEARTBEAT_ADDRESS, 7, device_id=1)
        assert not beat.isError()
        r = raw.write_registers(SETPOINT_BASE + 2, encode(24.0, "float32"), device_id=1)
        assert r.isError() and r.exception_code == 6
    finally:
        raw.close()  # type: ignore[no-untyped-call]
    device.set_supervisory_enable(True)
    assert client.poll().supervisory_enabled is True
    assert client.write({"cw_supply_c": 24.0})["cw_supply_c"].status == "applied"


def test_a_silent_device_and_a_wrong_unit_are_named(
    device: ModbusPlantDevice, plant: Plant
) -> None:
    nobody = controller_map(plant, free_tcp_port())
    with ModbusClient(nobody, timeout_s=0.5) as cli:
        result = cli.poll()
        assert not result.device_ok and set(result.errors.values()) == {"timeout"}
        assert cli.relinquish()["chw_supply_c"].detail == "timeout"
        assert not cli.heartbeat()
    data = device.point_map.model_dump(mode="json", exclude_none=True)
    data["devices"]["plant"]["unit_id"] = 7
    other = parse_point_map(data, PointCatalog.for_site(plant.config))
    with ModbusClient(other, timeout_s=1.0) as cli:
        result = cli.poll()
        assert result.readings == {}
        assert set(result.errors.values()) == {"modbus:device_failure"}

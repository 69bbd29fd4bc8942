"""Interoperability: TwinLoop's BACnet/IP client and device against an independent stack.

TwinLoop's client, device and discovery are all bacpypes3; a bug both sides of one library
share (an encoding, a property's meaning, a bit order) would pass every other BACnet test.
Here the other side is rusty-bacnet, a BACnet stack written in Rust (its own encoder,
decoder, object database and command prioritisation; it shares no code with bacpypes3):

- a rusty-bacnet device on a free loopback port serves analog inputs (sensors, also by
  COV subscription) and
  commandable analog values (setpoints with priority arrays and relinquish defaults),
  the heartbeat and the supervisory enable of a small point map; TwinLoop's
  :class:`BacnetClient` polls it (values, quality from the status flags, the device's
  errors by class and code), writes in TwinLoop's slot (read back from the device's own
  priority array), relinquishes, detects an operator override at a higher priority and
  backs off; ``twinloop bacnet discover`` lists it and drafts its map;
- a rusty-bacnet client reads and writes TwinLoop's :class:`BacnetBmsDevice`
  (ReadProperty, WriteProperty at priority 10 after a heartbeat, the priority array
  read back, the device's refusals by class and code).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import rusty_bacnet as rb
import yaml

from connectors.bacnet_client import BacnetClient
from connectors.bacnet_device import OPERATOR_PRIORITY, SITE_PRIORITY, BacnetBmsDevice
from connectors.bacnet_discovery import discover
from connectors.bacnet_stack import LoopThread
from connectors.catalog import PointCatalog
from connectors.point_map import PointMap, parse_point_map
from physics.plant.plant import Plant
from tests.connectors.test_bacnet import free_udp_port, site_map
from twinloop.cli import main as twinloop_main

pytestmark = pytest.mark.integration

OT, PID, PV = rb.ObjectType, rb.PropertyIdentifier, rb.PropertyValue
INSTANCE = 2001
TWINLOOP = 10
CALL_S = 20.0
"""Generous: the machine running the tests may be loaded."""
DEGREES_CELSIUS, KILOWATTS, NO_UNITS = 62, 48, 95

SENSORS: tuple[tuple[str, int, int, float], ...] = (
    ("supply_air_c", 1, DEGREES_CELSIUS, 21.5),
    ("return_air_c", 2, DEGREES_CELSIUS, 30.25),
    ("it_power_kw.0", 3, KILOWATTS, 250.0),
)
"""Point, analog-input instance, BACnet units, present value."""
SETPOINTS: tuple[tuple[str, int, float, float | None], ...] = (
    ("supply_air_c", 1, 20.0, 19.0),
    ("chw_supply_c", 3, 7.0, None),
)
"""Setpoint, analog-value instance, relinquish default, value the site's schedule holds
at priority 16 (None: slot empty)."""
ECONOMISER = 1
"""The binary-value of the economiser enable (relinquish default inactive)."""
HEARTBEAT, ENABLE = 900, 901
MISSING_SENSOR = ("chw_return_c", 99)
"""Mapped, never served: the device answers unknown-object."""
MISSING_SETPOINT = ("cw_supply_c", 4)


def _av(instance: int) -> Any:
    return rb.ObjectIdentifier(OT.ANALOG_VALUE, instance)


class IndependentDevice:
    """A rusty-bacnet BACnet/IP device on ``127.0.0.1:port`` in its own event loop."""

    def __init__(self, port: int, instance: int = INSTANCE) -> None:
        self.port, self.instance = port, instance
        self._loop = LoopThread(f"rusty-bacnet-{port}")
        self.server: Any = None

    def call(self, coro: Any) -> Any:
        return self._loop.call(coro, CALL_S)

    def start(self) -> IndependentDevice:
        async def start() -> Any:
            server = rb.BACnetServer(
                device_instance=self.instance,
                device_name="independent-bms",
                interface="127.0.0.1",
                port=self.port,
            )
            for point, instance, units, value in SENSORS:
                server.add_analog_input(instance, point, units=units, present_value=value)
            for field, instance, _default, _site in SETPOINTS:
                server.add_analog_value(instance, f"setpoint.{field}", units=DEGREES_CELSIUS)
            server.add_binary_value(ECONOMISER, "setpoint.economiser_enable")
            server.add_analog_value(
                HEARTBEAT, "twinloop_heartbeat", units=NO_UNITS, present_value_access="writable"
            )
            server.add_binary_value(ENABLE, "twinloop_supervisory_enable")
            await server.start()
            for _field, instance, default, site in SETPOINTS:
                oid = _av(instance)
                await server.write_property_local(
                    oid, PID.RELINQUISH_DEFAULT, PV.real(default), source_object=None
                )
                if site is not None:  # the site's own schedule, in the lowest slot
                    await server.write_property_local(
                        oid, PID.PRESENT_VALUE, PV.real(site), SITE_PRIORITY, source_object=None
                    )
            await server.write_property_local(
                rb.ObjectIdentifier(OT.BINARY_VALUE, ENABLE),
                PID.RELINQUISH_DEFAULT,
                PV.enumerated(1),  # active: supervisory control allowed
                source_object=None,
            )
            return server

        self._loop.start()
        self.server = self.call(start())
        return self

    def stop(self) -> None:
        async def stop() -> None:
            if self.server is not None:
                await self.server.stop()

        try:
            self.call(stop())
        finally:
            self._loop.stop()

    def read(self, oid: Any, prop: Any) -> Any:
        """A property as the device holds it (its own ReadProperty evaluator)."""

        async def read() -> Any:
            return (await self.server.read_property(oid, prop)).value

        return self.call(read())

    def write(self, oid: Any, prop: Any, value: Any, priority: int | None = None) -> None:
        """The BMS's own panel: a local write, at ``priority`` for a commandable value."""

        async def write() -> None:
            await self.server.write_property_local(oid, prop, value, priority, source_object=None)

        self.call(write())

    def set_sensor(self, instance: int, value: float) -> None:
        """The device's own input update (what its hardware would do)."""

        async def update() -> None:
            oid = rb.ObjectIdentifier(OT.ANALOG_INPUT, instance)
            await self.server.set_present_value_local(oid, PV.real(value))

        self.call(update())

    def slots(self, instance: int) -> list[float | None]:
        return list(self.read(_av(instance), PID.PRIORITY_ARRAY))

    def value(self, instance: int) -> float:
        return float(self.read(_av(instance), PID.PRESENT_VALUE))


def interop_map(port: int, *, instance: int = INSTANCE) -> PointMap:
    """The point map of :class:`IndependentDevice` (and two objects it does not serve)."""
    points: list[dict[str, Any]] = [
        {
            "point": point,
            "device": "bms",
            "bacnet": {"object": "analog-input", "instance": number},
            "unit": "kW" if units == KILOWATTS else "degC",
        }
        for point, number, units, _ in SENSORS
    ]
    points.append(
        {
            "point": MISSING_SENSOR[0],
            "device": "bms",
            "bacnet": {"object": "analog-input", "instance": MISSING_SENSOR[1]},
            "unit": "degC",
        }
    )
    for field, number in [(f, n) for f, n, _, _ in SETPOINTS] + [MISSING_SETPOINT]:
        points.append(
            {
                "setpoint": field,
                "device": "bms",
                "bacnet": {"object": "analog-value", "instance": number},
                "unit": "degC",
                "writable": True,
            }
        )
    points.append(
        {
            "setpoint": "economiser_enable",
            "device": "bms",
            "bacnet": {"object": "binary-value", "instance": ECONOMISER},
            "unit": "bool",
            "writable": True,
        }
    )
    data = {
        "site": "interop",
        "devices": {
            "bms": {
                "protocol": "bacnet",
                "address": f"127.0.0.1:{port}",
                "device_instance": instance,
                "priority": TWINLOOP,
                "heartbeat": {"object": "analog-value", "instance": HEARTBEAT},
                "supervisory_enable": {"object": "binary-value", "instance": ENABLE},
            }
        },
        "points": points,
    }
    return parse_point_map(data, PointCatalog.reference())


@pytest.fixture
def independent() -> Iterator[IndependentDevice]:
    device = IndependentDevice(free_udp_port()).start()
    try:
        yield device
    finally:
        device.stop()


@pytest.fixture
def client(independent: IndependentDevice) -> Iterator[BacnetClient]:
    with BacnetClient(
        interop_map(independent.port), local_port=free_udp_port(), timeout_s=3.0
    ) as c:
        yield c


# ---------------------------------------------------------------------- TwinLoop -> rusty
def test_poll_reads_values_quality_and_named_errors(
    independent: IndependentDevice, client: BacnetClient
) -> None:
    result = client.poll()
    assert result.device_ok and result.supervisory_enabled is True
    assert result.errors == {
        MISSING_SENSOR[0]: "bacnet:object/unknown-object",
        f"setpoint.{MISSING_SETPOINT[0]}": "bacnet:object/unknown-object",
    }
    for point, _, units, value in SENSORS:
        reading = result.readings[point]
        assert (reading.value, reading.quality) == (value, "good")
        assert reading.unit == ("kW" if units == KILOWATTS else "degC")
    assert result.readings["setpoint.supply_air_c"].value == 19.0  # the site's slot 16
    assert result.readings["setpoint.chw_supply_c"].value == 7.0  # the relinquish default
    assert result.readings["setpoint.economiser_enable"].value == 0.0  # inactive
    assert len(result.readings) == len(SENSORS) + len(SETPOINTS) + 1
    assert result.overrides == {}
    # The device's own update, then a point it takes out of service (status flags bit 3).
    independent.set_sensor(1, 22.75)
    independent.write(rb.ObjectIdentifier(OT.ANALOG_INPUT, 2), PID.OUT_OF_SERVICE, PV.boolean(True))
    again = client.poll()
    assert again.readings["supply_air_c"].value == 22.75
    assert again.readings["return_air_c"].quality == "bad"
    assert math.isnan(again.readings["return_air_c"].value)
    assert client.counters()["error:bacnet:object/unknown-object"] == 4


def test_write_holds_in_twinloops_slot_and_relinquish_hands_back(
    independent: IndependentDevice, client: BacnetClient
) -> None:
    beat_before = independent.value(HEARTBEAT)
    out = client.write({"supply_air_c": 22.5, "chw_supply_c": 9.5, "economiser_enable": 1.0})
    assert {o.status for o in out.values()} == {"applied"}, out
    assert independent.value(HEARTBEAT) != beat_before  # the heartbeat went first
    supply = independent.slots(1)
    assert supply[TWINLOOP - 1] == 22.5 and supply[SITE_PRIORITY - 1] == 19.0
    assert [i + 1 for i, v in enumerate(supply) if v is not None] == [TWINLOOP, SITE_PRIORITY]
    chw = independent.slots(3)
    assert [i + 1 for i, v in enumerate(chw) if v is not None] == [TWINLOOP]
    assert chw[TWINLOOP - 1] == 9.5
    assert independent.value(1) == 22.5 and independent.value(3) == 9.5
    assert independent.read(_av(1), PID.CURRENT_COMMAND_PRIORITY) == TWINLOOP
    economiser = rb.ObjectIdentifier(OT.BINARY_VALUE, ECONOMISER)
    assert independent.read(economiser, PID.PRESENT_VALUE) == 1  # active
    assert independent.read(economiser, PID.PRIORITY_ARRAY)[TWINLOOP - 1] == 1
    polled = client.poll()
    assert polled.readings["setpoint.supply_air_c"].value == 22.5 and polled.overrides == {}
    assert polled.readings["setpoint.economiser_enable"].value == 1.0
    back = client.relinquish()
    assert back[MISSING_SETPOINT[0]].detail == "bacnet:object/unknown-object"
    del back[MISSING_SETPOINT[0]]
    assert {o.status for o in back.values()} == {"relinquished"}, back
    assert independent.slots(1)[TWINLOOP - 1] is None and independent.slots(3) == [None] * 16
    assert independent.value(1) == 19.0  # the lower slot takes over
    assert independent.value(3) == 7.0  # the relinquish default
    assert independent.read(economiser, PID.PRIORITY_ARRAY) == [None] * 16
    assert independent.read(economiser, PID.PRESENT_VALUE) == 0
    polled = client.poll()
    assert polled.readings["setpoint.supply_air_c"].value == 19.0
    assert polled.readings["setpoint.chw_supply_c"].value == 7.0


def test_an_operator_override_is_detected_and_never_fought(
    independent: IndependentDevice, client: BacnetClient
) -> None:
    assert client.write({"chw_supply_c": 9.5})["chw_supply_c"].status == "applied"
    independent.write(_av(3), PID.PRESENT_VALUE, PV.real(8.0), OPERATOR_PRIORITY)
    result = client.poll()
    assert result.overrides == {"chw_supply_c": OPERATOR_PRIORITY}
    slots = independent.slots(3)  # TwinLoop backed off: its slot is empty on the device
    assert slots[TWINLOOP - 1] is None and slots[OPERATOR_PRIORITY - 1] == 8.0
    out = client.write({"chw_supply_c": 11.0, "supply_air_c": 21.0})
    assert out["chw_supply_c"].status == "withheld"
    assert out["chw_supply_c"].detail == f"override at priority {OPERATOR_PRIORITY}"
    assert out["supply_air_c"].status == "applied"
    assert independent.slots(3)[TWINLOOP - 1] is None and independent.value(3) == 8.0
    counts = client.counters()
    assert counts["overrides_detected"] == 1 and counts["backed_off"] == 1
    independent.write(_av(3), PID.PRESENT_VALUE, PV.null(), OPERATOR_PRIORITY)  # lets go
    assert client.poll().overrides == {}
    assert client.counters()["override_cleared"] == 1
    assert independent.value(3) == 7.0  # not TwinLoop's stale value
    assert client.write({"chw_supply_c": 11.0})["chw_supply_c"].status == "applied"
    assert independent.slots(3)[TWINLOOP - 1] == 11.0


def test_the_supervisory_enable_and_the_devices_refusals(
    independent: IndependentDevice, client: BacnetClient
) -> None:
    enable = rb.ObjectIdentifier(OT.BINARY_VALUE, ENABLE)
    independent.write(enable, PID.PRESENT_VALUE, PV.enumerated(0), OPERATOR_PRIORITY)
    assert client.poll().supervisory_enabled is False
    out = client.write({"supply_air_c": 23.0})
    assert (out["supply_air_c"].status, out["supply_air_c"].detail) == (
        "withheld",
        "supervisory disabled",
    )
    assert independent.slots(1)[TWINLOOP - 1] is None
    independent.write(enable, PID.PRESENT_VALUE, PV.null(), OPERATOR_PRIORITY)
    assert client.poll().supervisory_enabled is True
    # A setpoint the device does not have: its refusal, by class and code.
    out = client.write({MISSING_SETPOINT[0]: 25.0})
    assert out[MISSING_SETPOINT[0]].status == "refused"
    assert out[MISSING_SETPOINT[0]].detail == "bacnet:object/unknown-object"


def test_only_the_allow_listed_instance_is_believed(independent: IndependentDevice) -> None:
    wrong = interop_map(independent.port, instance=INSTANCE + 1)
    with BacnetClient(wrong, local_port=free_udp_port(), timeout_s=3.0) as cli:
        result = cli.poll()
        assert not result.device_ok and result.readings == {}
        assert result.errors["device"] == "bacnet:object/unknown-object"
        assert cli.write({"supply_air_c": 21.0})["supply_air_c"].detail == "identity_mismatch"
    assert independent.slots(1)[TWINLOOP - 1] is None


def test_cov_subscriptions_to_the_independent_device(independent: IndependentDevice) -> None:
    """TwinLoop's COV client against rusty-bacnet's own COV service and encoder: every
    served sensor subscribed, a change notified and read, the unserved one refused and
    polled instead (``auto``), named as a poll names it."""
    pm = interop_map(independent.port)
    with BacnetClient(pm, local_port=free_udp_port(), timeout_s=3.0, reads="auto") as cli:
        first = cli.poll()
        counts = cli.counters()
        assert counts["cov_subscribed"] == len(SENSORS) and counts["cov_fallback"] == 1
        assert counts["cov_refused:object/unknown-object"] == 1
        assert first.errors[MISSING_SENSOR[0]] == "bacnet:object/unknown-object"
        # rusty-bacnet has no time-of-device-restart: asked once, answered with an error
        # for that property, then not asked; the device is no less healthy for it.
        assert counts["restart_time:unserved"] == 1 and "device" not in first.errors
        for point, _instance, _units, value in SENSORS:
            assert first.readings[point].value == pytest.approx(value)
        point, instance, _units, value = SENSORS[0]
        independent.set_sensor(instance, value + 3.0)
        deadline = time.monotonic() + 10.0
        while cli.counters()["cov_notifications"] == counts["cov_notifications"]:
            assert time.monotonic() < deadline, "no notification from rusty-bacnet"
            time.sleep(0.01)
        assert cli.poll().readings[point].value == pytest.approx(value + 3.0)
        assert not any(k.startswith("cov_rejected") for k in cli.counters())


def test_discover_lists_the_independent_device_and_drafts_its_map(
    independent: IndependentDevice, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    address = f"127.0.0.1:{independent.port}"
    inventory = discover(address, local_host="127.0.0.1", local_port=free_udp_port(), timeout_s=3)
    assert inventory.device_instance == INSTANCE and inventory.device_name == "independent-bms"
    found = {(o.object, o.instance): (o.name, o.units) for o in inventory.objects}
    assert found[("analog-input", 1)] == ("supply_air_c", "degrees-celsius")
    assert found[("analog-input", 3)] == ("it_power_kw.0", "kilowatts")
    assert found[("analog-value", 3)] == ("setpoint.chw_supply_c", "degrees-celsius")
    assert found[("binary-value", ENABLE)] == ("twinloop_supervisory_enable", None)
    # The command line, as an operator runs it against the device's address.
    draft = tmp_path / "draft.yaml"
    rc = twinloop_main(
        [
            "bacnet",
            "discover",
            "--address",
            address,
            "--local",
            f"127.0.0.1:{free_udp_port()}",
            "--timeout",
            "3",
            "--write-point-map",
            str(draft),
        ]
    )
    assert rc == 0, capsys.readouterr()
    data = yaml.safe_load(draft.read_text(encoding="utf-8"))
    bms = data["devices"]["bms"]
    assert (bms["address"], bms["device_instance"]) == (address, INSTANCE)
    assert bms["heartbeat"] == {"object": "analog-value", "instance": HEARTBEAT}
    assert bms["supervisory_enable"] == {"object": "binary-value", "instance": ENABLE}
    drafted = {
        e.get("point") or f"setpoint.{e['setpoint']}": (e["bacnet"]["instance"], e["unit"])
        for e in data["points"]
    }
    assert drafted == {
        "supply_air_c": (1, "degC"),
        "return_air_c": (2, "degC"),
        "it_power_kw.0": (3, "kW"),
        "setpoint.supply_air_c": (1, "degC"),
        "setpoint.chw_supply_c": (3, "degC"),
        "setpoint.economiser_enable": (ECONOMISER, "bool"),
    }
    assert all(e.get("writable") for e in data["points"] if "setpoint" in e)


# ---------------------------------------------------------------------- rusty -> TwinLoop
def _error(exc: BaseException) -> tuple[Any, Any]:
    assert isinstance(exc, rb.BacnetProtocolError), repr(exc)
    return rb.ErrorClass.from_raw(exc.error_class), rb.ErrorCode.from_raw(exc.error_code)


def test_an_independent_client_reads_and_writes_twinloops_device(plant: Plant) -> None:
    port = free_udp_port()
    pm = site_map(plant, port)
    supply = pm.entry("setpoint.supply_air_c")
    inlet = pm.entry("rack_inlet_c.0.00")
    assert supply.bacnet is not None and inlet.bacnet is not None
    setpoint = _av(supply.bacnet.instance)
    sensor = rb.ObjectIdentifier(OT.ANALOG_INPUT, inlet.bacnet.instance)
    address = f"127.0.0.1:{port}"
    loop = LoopThread("rusty-client")
    loop.start()

    async def session(device: BacnetBmsDevice) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        async with rb.BACnetClient(
            interface="127.0.0.1", port=free_udp_port(), apdu_timeout_ms=5000
        ) as cli:

            async def read(oid: Any, prop: Any) -> Any:
                return (await cli.read_property(address, oid, prop)).value

            async def refusal(oid: Any, value: Any, priority: int) -> tuple[Any, Any]:
                try:
                    await cli.write_property(address, oid, PID.PRESENT_VALUE, value, priority)
                except rb.BacnetError as exc:
                    return _error(exc)
                raise AssertionError(f"the device took {value!r} at priority {priority}")

            seen["inlet"] = await read(sensor, PID.PRESENT_VALUE)
            seen["units"] = await read(sensor, PID.UNITS)
            seen["device"] = await read(
                rb.ObjectIdentifier(OT.DEVICE, 4_194_303), PID.OBJECT_IDENTIFIER
            )
            # TwinLoop's slot without a heartbeat first: the device's last word.
            seen["no_heartbeat"] = await refusal(setpoint, PV.real(22.5), TWINLOOP)
            await cli.write_property(address, _av(900), PID.PRESENT_VALUE, PV.real(1.0))
            await cli.write_property(address, setpoint, PID.PRESENT_VALUE, PV.real(22.5), TWINLOOP)
            seen["slots"] = await read(setpoint, PID.PRIORITY_ARRAY)
            seen["value"] = await read(setpoint, PID.PRESENT_VALUE)
            seen["ccp"] = await read(setpoint, PID.CURRENT_COMMAND_PRIORITY)
            seen["site_slot"] = await refusal(setpoint, PV.real(21.0), SITE_PRIORITY)
            seen["envelope"] = await refusal(setpoint, PV.real(80.0), OPERATOR_PRIORITY)
            try:
                await read(rb.ObjectIdentifier(OT.ANALOG_INPUT, 77_777), PID.PRESENT_VALUE)
            except rb.BacnetError as exc:
                seen["unknown"] = _error(exc)
            seen["held"] = device.priority_array("supply_air_c")
            await cli.write_property(address, setpoint, PID.PRESENT_VALUE, PV.null(), TWINLOOP)
            seen["slots_after"] = await read(setpoint, PID.PRIORITY_ARRAY)
            seen["value_after"] = await read(setpoint, PID.PRESENT_VALUE)
        return seen

    with BacnetBmsDevice(plant, pm, heartbeat_timeout_s=600.0) as device:
        device.step()
        frame = plant.last_frame
        assert frame is not None
        expected_inlet = float(frame.values[0][plant.point_names.index("rack_inlet_c.0.00")])
        try:
            seen = loop.call(session(device), 4 * CALL_S)
        finally:
            loop.stop()
        control_after = device.control_of("supply_air_c")
        counts = device.counters()
    assert seen["inlet"] == pytest.approx(expected_inlet, rel=1e-6)
    assert seen["units"] == DEGREES_CELSIUS
    assert seen["device"] == rb.ObjectIdentifier(OT.DEVICE, 1001)
    assert seen["no_heartbeat"] == (rb.ErrorClass.PROPERTY, rb.ErrorCode.WRITE_ACCESS_DENIED)
    slots = seen["slots"]
    assert len(slots) == 16 and slots[TWINLOOP - 1] == 22.5 and slots[SITE_PRIORITY - 1] == 19.0
    assert [i + 1 for i, v in enumerate(slots) if v is not None] == [TWINLOOP, SITE_PRIORITY]
    assert seen["value"] == 22.5 and seen["ccp"] == TWINLOOP
    assert seen["held"][TWINLOOP - 1] == 22.5  # TwinLoop's device agrees with the wire
    assert seen["site_slot"] == (rb.ErrorClass.PROPERTY, rb.ErrorCode.WRITE_ACCESS_DENIED)
    assert seen["envelope"] == (rb.ErrorClass.PROPERTY, rb.ErrorCode.VALUE_OUT_OF_RANGE)
    assert seen["unknown"] == (rb.ErrorClass.OBJECT, rb.ErrorCode.UNKNOWN_OBJECT)
    after = seen["slots_after"]
    assert after[TWINLOOP - 1] is None and seen["value_after"] == 19.0
    assert control_after == "site"
    assert counts["writes"] == 1 and counts["relinquishes"] == 1
    assert counts["refused_no_heartbeat"] == 1 and counts["refused_site_slot"] == 1
    assert counts["refused_out_of_envelope"] == 1

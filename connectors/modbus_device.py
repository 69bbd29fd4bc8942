"""The emulated site's power meters and chiller plant controller as a Modbus TCP server
(pymodbus 3.x), with the same heartbeat/enable pair as the BACnet device.

What it serves comes from the point map's Modbus device (for the emulated site,
:func:`plant_controller_map`): every sensor point as input registers (function 4), every
writable setpoint as a float32 holding register (functions 3, 6, 16). Modbus has no
priority array, so the hand-back is a value: a setpoint register holding NaN gives the
field to the site's own control; a finite value is TwinLoop's command. The device's rules:

- **heartbeat**: a holding register TwinLoop writes with a changing number every period;
  when it has not changed for ``heartbeat_timeout_s`` of the device's clock (plant
  seconds) every setpoint register is set back to NaN, and setpoint writes are answered
  with exception 0x06 (device busy) until a new beat;
- **supervisory enable**: an input register (read only over the network) the operator sets
  at the panel (:meth:`ModbusPlantDevice.set_supervisory_enable`); while it is 0 the
  setpoints are NaN and writes get exception 0x06;
- **envelope**: a value outside the plant's limits (narrowed by the map) gets exception
  0x03 (illegal data value), never clipped; a write that covers half of a 32-bit value, or
  an address no entry maps, exception 0x02 (illegal data address); an unknown unit id,
  0x04 from pymodbus.

The plant is stepped by the caller (:meth:`ModbusPlantDevice.step`) exactly as the BACnet
device steps it: the registers become a :class:`~physics.plant.site_control.SetpointCommand`.
A float32 sensor whose reading dropped out reads NaN. A plant shared with a BACnet device
(:mod:`connectors.mixed_emulator`) is stepped by that device, which asks this one for its
command first (:meth:`ModbusPlantDevice.command_before_step`) and lets it publish the step
after (:meth:`ModbusPlantDevice.after_step`); :meth:`ModbusPlantDevice.disconnect` takes the
device off the network while its rules go on, :meth:`ModbusPlantDevice.reconnect` back.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from connectors.bacnet_stack import LoopThread
from connectors.catalog import PointCatalog
from connectors.modbus_registers import NAN_WORDS_BIG, decode, encode
from connectors.pacing import pace
from connectors.point_map import (
    SETPOINT_UNITS,
    ModbusRef,
    PointEntry,
    PointMap,
    parse_point_map,
)
from physics.plant.plant import Plant
from physics.plant.site_control import SETPOINT_FIELDS, SetpointCommand
from twinloop.errors import TwinLoopError

logger = logging.getLogger(__name__)

REGISTERS = 1024
"""Holding and input registers 0-1023 are served (every map address must lie below)."""
DEFAULT_HEARTBEAT_TIMEOUT_S = 900.0
CALL_TIMEOUT_S = 30.0
HEARTBEAT_ADDRESS = 900
ENABLE_ADDRESS = 901
SETPOINT_BASE = 100
PLANT_CONTROLLER_POINTS: tuple[str, ...] = (
    "facility_power_kw",
    "ups_output_kw",
    "chw_supply_c",
    "chw_return_c",
    "chw_flow_kg_s",
    "chw_pump_power_kw",
    "chillers_on",
    "cw_supply_c",
    "cw_return_c",
    "tower_fan_power_kw",
)
"""What a power meter, the UPS and the chiller plant controller report (the chillers'
own power points are added per chiller)."""
PLANT_CONTROLLER_SETPOINTS: tuple[str, ...] = ("chw_supply_c", "cw_supply_c")

COUNTERS: tuple[str, ...] = (
    "steps",
    "reads",
    "writes",
    "relinquishes",
    "heartbeats",
    "refused_out_of_envelope",
    "refused_disabled",
    "refused_no_heartbeat",
    "refused_address",
    "released_heartbeat",
    "released_disabled",
)


class ModbusDeviceError(TwinLoopError, ValueError):
    """A point map the Modbus device cannot serve, or a port it cannot bind."""


def plant_controller_map(
    catalog: PointCatalog, *, address: str, unit_id: int = 1, site: str = "site1"
) -> PointMap:
    """The emulated site's Modbus device: the plant controller's and meters' points as
    float32 input registers (point ``k`` at ``2k``), the chilled- and condenser-water
    setpoints as float32 holding registers from :data:`SETPOINT_BASE`, the heartbeat as
    holding register 900 (uint16) and the enable as input register 901 (uint16)."""
    names = [p for p in PLANT_CONTROLLER_POINTS if p in catalog]
    names += [p for p in catalog.points if p.startswith("chiller_power_kw.")]
    return _device_map(
        catalog, names, PLANT_CONTROLLER_SETPOINTS, address=address, unit_id=unit_id, site=site
    )


def site_map(
    catalog: PointCatalog, *, address: str, unit_id: int = 1, site: str = "site1"
) -> PointMap:
    """The whole emulated site behind one Modbus TCP device (a site whose BMS gateway speaks
    Modbus only): every point of the catalog as float32 input registers (point ``k`` at
    ``2k``), all five setpoints as float32 holding registers from :data:`SETPOINT_BASE`
    (the economiser enable 0 or 1), heartbeat and enable as in :func:`plant_controller_map`."""
    return _device_map(
        catalog, list(catalog.points), SETPOINT_FIELDS, address=address, unit_id=unit_id, site=site
    )


def _device_map(
    catalog: PointCatalog,
    names: Sequence[str],
    setpoints: Sequence[str],
    *,
    address: str,
    unit_id: int,
    site: str,
) -> PointMap:
    # The map keeps one address space per device: setpoints start after the sensors (at
    # SETPOINT_BASE, or the next hundred above them), all below the heartbeat.
    base = max(SETPOINT_BASE, -(-2 * len(names) // 100) * 100)
    if base + 2 * len(setpoints) > HEARTBEAT_ADDRESS:
        raise ModbusDeviceError(
            f"{len(names)} points and {len(setpoints)} setpoints do not fit below the "
            f"heartbeat register {HEARTBEAT_ADDRESS}"
        )
    points: list[dict[str, Any]] = []
    for k, name in enumerate(names):
        rule = catalog.rule(name)
        assert rule is not None
        points.append(
            {
                "point": name,
                "device": "plant",
                "modbus": {"address": 2 * k, "function": 4, "type": "float32"},
                "unit": rule.unit,
            }
        )
    for k, field in enumerate(setpoints):
        points.append(
            {
                "setpoint": field,
                "device": "plant",
                "modbus": {"address": base + 2 * k, "function": 3, "type": "float32"},
                "unit": SETPOINT_UNITS[field],
                "writable": True,
            }
        )
    data = {
        "site": site,
        "devices": {
            "plant": {
                "protocol": "modbus",
                "address": address,
                "unit_id": unit_id,
                "heartbeat": {"address": HEARTBEAT_ADDRESS, "function": 3, "type": "uint16"},
                "supervisory_enable": {"address": ENABLE_ADDRESS, "function": 4},
            }
        },
        "points": points,
    }
    return parse_point_map(data, catalog, source="<plant controller>")


class ModbusPlantDevice:
    """The plant's Modbus TCP face (module docstring)."""

    def __init__(
        self,
        plant: Plant,
        point_map: PointMap,
        *,
        device: str = "plant",
        heartbeat_timeout_s: float = DEFAULT_HEARTBEAT_TIMEOUT_S,
        host: str | None = None,
        port: int | None = None,
        speed: float | None = None,
    ) -> None:
        spec = point_map.devices.get(device)
        if spec is None or spec.protocol != "modbus" or spec.unit_id is None:
            raise ModbusDeviceError(f"the point map has no Modbus device {device!r}")
        if speed is not None and not (math.isfinite(speed) and speed > 0):
            raise ModbusDeviceError("speed must be positive (plant seconds per wall second)")
        beat, enable = spec.heartbeat, spec.supervisory_enable
        if not isinstance(beat, ModbusRef) or not isinstance(enable, ModbusRef):
            raise ModbusDeviceError(f"device {device!r} needs a heartbeat and an enable register")
        if not (math.isfinite(heartbeat_timeout_s) and heartbeat_timeout_s > 0):
            raise ModbusDeviceError("heartbeat_timeout_s must be a positive number of seconds")
        self.plant = plant
        self.point_map = point_map
        self.host, self.port, self.unit_id = host or spec.host, port or spec.port, spec.unit_id
        self.speed = speed
        self.heartbeat_timeout_s = float(heartbeat_timeout_s)
        self._beat_ref, self._enable_ref = beat, enable
        self._holding = [0] * REGISTERS
        self._input = [0] * REGISTERS
        self._sensors: list[tuple[int, PointEntry]] = []
        self._setpoints: dict[str, PointEntry] = {}
        index = {name: i for i, name in enumerate(plant.point_names)}
        for entry in point_map.for_device(device):
            ref = entry.modbus
            assert ref is not None
            if ref.address + ref.words > REGISTERS:
                raise ModbusDeviceError(f"{entry.name}: register {ref.address} >= {REGISTERS}")
            if entry.point is not None:
                if entry.point not in index or ref.function != 4:
                    raise ModbusDeviceError(f"{entry.point}: not a plant point in input registers")
                self._sensors.append((index[entry.point], entry))
            elif entry.setpoint is not None and entry.writable:
                self._setpoints[entry.setpoint] = entry
                self._put(self._holding, ref, NAN_WORDS_BIG)
        self._owner: dict[int, tuple[str, ModbusRef]] = {}
        """Holding register -> (what, its ref): the writable ones."""
        for field, entry in self._setpoints.items():
            assert entry.modbus is not None
            for a in range(entry.modbus.address, entry.modbus.address + entry.modbus.words):
                self._owner[a] = (field, entry.modbus)
        for a in range(beat.address, beat.address + beat.words):
            self._owner[a] = ("heartbeat", beat)
        self._heartbeat_value: float | None = None
        self._heartbeat_at_s: float | None = None
        self.set_supervisory_enable(True, _local=True)
        self._counts: Counter[str] = Counter({name: 0 for name in COUNTERS})
        self._loop = LoopThread(f"modbus-device-{self.unit_id}")
        self._server: ModbusTcpServer | None = None
        self._pacer: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ registers
    @staticmethod
    def _put(image: list[int], ref: ModbusRef, words: Sequence[int]) -> None:
        ordered = list(words) if ref.word_order == "big" or ref.words == 1 else list(words)[::-1]
        image[ref.address : ref.address + ref.words] = ordered

    def _value(self, image: Sequence[int], ref: ModbusRef) -> float:
        return decode(image[ref.address : ref.address + ref.words], ref.type, ref.word_order)

    @property
    def now_s(self) -> float:
        return self.plant.time_s

    @property
    def supervisory_enabled(self) -> bool:
        return self._value(self._input, self._enable_ref) != 0

    @property
    def heartbeat_alive(self) -> bool:
        at = self._heartbeat_at_s
        return at is not None and self.now_s - at <= self.heartbeat_timeout_s

    def set_supervisory_enable(self, enabled: bool, *, _local: bool = False) -> None:
        """The operator's panel: allow TwinLoop's setpoints or not (released at once)."""
        self._input[self._enable_ref.address : self._enable_ref.address + 1] = [int(enabled)]
        if not _local:
            self._enforce()

    def setpoint(self, field: str) -> float:
        """The value in ``field``'s register (TwinLoop units; NaN: the site's control)."""
        entry = self._setpoints[field]
        assert entry.modbus is not None
        return self._value(self._holding, entry.modbus) * entry.scale

    def control_of(self, field: str) -> str:
        return "site" if math.isnan(self.setpoint(field)) else "twinloop"

    def counters(self) -> dict[str, int]:
        return dict(self._counts)

    # ------------------------------------------------------------------ the device's rules
    def _release(self, why: str) -> None:
        released = [f for f in self._setpoints if not math.isnan(self.setpoint(f))]
        for field in released:
            ref = self._setpoints[field].modbus
            assert ref is not None
            self._put(self._holding, ref, NAN_WORDS_BIG)
        if released:
            self._counts[f"released_{why}"] += 1
            logger.warning("modbus device %d: %s; released %s", self.unit_id, why, released)

    def _enforce(self) -> None:
        if not self.supervisory_enabled:
            self._release("disabled")
        elif not self.heartbeat_alive:
            self._release("heartbeat")

    def _write(self, address: int, values: Sequence[int]) -> ExcCodes | None:
        """Judge a write of ``values`` from ``address`` (module docstring); apply it."""
        end = address + len(values)
        touched: dict[str, ModbusRef] = {}
        for a in range(address, end):
            if a not in self._owner:
                self._counts["refused_address"] += 1
                return ExcCodes.ILLEGAL_ADDRESS
            what, ref = self._owner[a]
            touched[what] = ref
        for ref in touched.values():
            if ref.address < address or ref.address + ref.words > end:
                self._counts["refused_address"] += 1
                return ExcCodes.ILLEGAL_ADDRESS  # half a 32-bit value
        new = {
            what: decode(
                values[ref.address - address : ref.address - address + ref.words],
                ref.type,
                ref.word_order,
            )
            for what, ref in touched.items()
        }
        for what, raw in new.items():
            if what == "heartbeat" or math.isnan(raw):
                continue
            entry = self._setpoints[what]
            if not self.supervisory_enabled:
                self._counts["refused_disabled"] += 1
                return ExcCodes.DEVICE_BUSY
            if not self.heartbeat_alive and "heartbeat" not in new:
                self._counts["refused_no_heartbeat"] += 1
                return ExcCodes.DEVICE_BUSY
            low, high = (
                (0.0, 1.0)
                if what == "economiser_enable"
                else getattr(self.plant.config.limits, what)
            )
            assert entry.limits is not None
            low, high = max(low, entry.limits[0]), min(high, entry.limits[1])
            if not (math.isfinite(raw) and low <= raw * entry.scale <= high):
                self._counts["refused_out_of_envelope"] += 1
                return ExcCodes.ILLEGAL_VALUE
        for what, ref in touched.items():
            self._holding[ref.address : ref.address + ref.words] = list(
                values[ref.address - address : ref.address - address + ref.words]
            )
            if what == "heartbeat":
                if new[what] != self._heartbeat_value:
                    self._heartbeat_value = new[what]
                    self._heartbeat_at_s = self.now_s
                    self._counts["heartbeats"] += 1
            elif math.isnan(new[what]):
                self._counts["relinquishes"] += 1
            else:
                self._counts["writes"] += 1
        return None

    async def _action(
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        current_registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        """pymodbus's hook on every access: reads are served from the device's image,
        writes judged by :meth:`_write` (its exception code refuses them)."""
        if set_values is not None:
            if any(isinstance(v, bool) for v in set_values):
                return ExcCodes.ILLEGAL_FUNCTION  # coils are not served
            result = self._write(address, [int(v) for v in set_values])
            if result is not None:
                return result
        image = self._input if function_code == 4 else self._holding
        for k in range(count):
            current_registers[address - start_address + k] = image[address + k]
        if set_values is None:
            self._counts["reads"] += 1
        return None

    # ------------------------------------------------------------------ stepping
    def _command(self) -> SetpointCommand | None:
        values = {f: self.setpoint(f) for f in self._setpoints}
        given = {f: v for f, v in values.items() if not math.isnan(v)}
        if "economiser_enable" in given:
            given["economiser_enable"] = float(given["economiser_enable"] >= 0.5)
        if not given:
            return None
        return SetpointCommand(
            command_id=f"modbus-{self._counts['steps']}",
            expires_at_s=self.plant.time_s + 2 * self.plant.step_s,
            **given,
        )

    def _publish(self) -> None:
        frame = self.plant.last_frame
        assert frame is not None
        values, quality = frame.values[0], frame.quality[0]
        for i, entry in self._sensors:
            ref = entry.modbus
            assert ref is not None
            value = float(values[i])
            good = bool(quality[i]) and math.isfinite(value)
            if not good and ref.type != "float32":
                continue  # an integer register cannot say "no value": it keeps the last one
            raw = value / entry.scale if good else math.nan
            self._put(self._input, ref, encode(raw, ref.type, "big"))

    async def _before_step(self) -> SetpointCommand | None:
        self._enforce()
        return self._command()

    async def _after_step(self) -> None:
        self._counts["steps"] += 1
        self._publish()
        self._enforce()

    async def _step(self, n_steps: int) -> None:
        for _ in range(n_steps):
            if self.plant.done:
                raise RuntimeError("the plant's scenario has ended")
            self.plant.apply_command(await self._before_step())
            self.plant.step()
            await self._after_step()

    def step(self, n_steps: int = 1) -> None:
        """Advance the plant ``n_steps`` under the setpoint registers (unpaced device)."""
        self._loop.call(self._step(n_steps), CALL_TIMEOUT_S + n_steps)

    # A plant shared with another device (connectors.mixed_emulator): whoever steps it
    # asks this device for its command before each step and lets it read the step after.
    def command_before_step(self) -> SetpointCommand | None:
        """The device's rules applied now, then the command its registers give the plant."""
        result: SetpointCommand | None = self._loop.call(self._before_step(), CALL_TIMEOUT_S)
        return result

    def after_step(self) -> None:
        """The plant stepped (by another device): publish its readings, apply the rules."""
        self._loop.call(self._after_step(), CALL_TIMEOUT_S)

    async def _pace(self) -> None:
        assert self.speed is not None
        await pace(
            lambda: self._step(1),
            lambda: self.plant.done,
            self.plant.step_s / self.speed,
            f"modbus device {self.unit_id}",
        )

    # ------------------------------------------------------------------ lifecycle
    def _serve(self) -> None:
        """Bind the device's address and answer there (on the device's loop)."""
        blocks = [SimData(0, count=REGISTERS, values=0, datatype=DataType.REGISTERS)]
        bits = [SimData(0, values=False, datatype=DataType.BITS)]
        device = SimDevice(
            id=self.unit_id, simdata=(bits, bits, blocks, list(blocks)), action=self._action
        )

        async def serve() -> ModbusTcpServer:
            server = ModbusTcpServer(device, address=(self.host, self.port))
            await server.serve_forever(background=True)
            if server.transport is None:
                raise ModbusDeviceError(f"Modbus address {self.host}:{self.port}: not bound")
            return server

        try:
            self._server = self._loop.call(serve(), CALL_TIMEOUT_S)
        except OSError as exc:
            raise ModbusDeviceError(
                f"Modbus address {self.host}:{self.port}: {exc.strerror or exc}"
            ) from None
        logger.info("modbus device %d on %s:%d", self.unit_id, self.host, self.port)

    def start(self) -> ModbusPlantDevice:
        self._loop.start()
        try:
            self._serve()
        except ModbusDeviceError:
            self._loop.stop()
            raise
        if self.speed is not None:

            async def start_pacing() -> None:
                self._pacer = asyncio.get_running_loop().create_task(self._pace())

            self._loop.call(start_pacing(), CALL_TIMEOUT_S)
        return self

    def disconnect(self) -> None:
        """Stop answering on the network (the server shuts; connections are refused) while
        the device keeps its rules: a controller cut off from TwinLoop, whose heartbeat
        timeout still releases TwinLoop's setpoints. :meth:`stop` ends it all."""

        async def shut() -> None:
            if self._server is not None:
                await self._server.shutdown()  # type: ignore[no-untyped-call]
                self._server = None

        self._loop.call(shut(), CALL_TIMEOUT_S)
        logger.warning("modbus device %d: disconnected from the network", self.unit_id)

    def reconnect(self) -> None:
        """Answer on the network again after :meth:`disconnect` (the same address)."""
        if self._server is None:
            self._serve()

    def stop(self) -> None:
        async def close() -> None:
            if self._pacer is not None:
                self._pacer.cancel()
                self._pacer = None
            if self._server is not None:
                await self._server.shutdown()  # type: ignore[no-untyped-call]
                self._server = None

        try:
            self._loop.call(close(), CALL_TIMEOUT_S)
        finally:
            self._loop.stop()

    def __enter__(self) -> ModbusPlantDevice:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

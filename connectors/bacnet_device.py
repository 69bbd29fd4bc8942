"""The emulated site as a BACnet/IP device: the plant behind priority arrays (bacpypes3).

What the device serves comes from a :class:`~connectors.point_map.PointMap` (for the
emulated site, :func:`~connectors.point_map.reference_point_map`): every sensor point of the
plant as an analog-input (a bool as a binary-input) whose present value is the reading in
raw units (TwinLoop value / scale); a dropout keeps the last value and sets the fault
status flag (reliability ``unreliable-other``). Every setpoint is a commandable
analog-value (the economiser enable a binary-value) with a priority array:

- slot :data:`SITE_PRIORITY` (16) is the site's own schedule: the site's default setpoint,
  also the relinquish default. While no higher slot holds a value, the plant runs its own
  control for that field (its sequences, the economiser's enable among them);
- TwinLoop writes in its slot (the map's ``priority``, 10 by default);
- an operator at the BMS overrides in a higher slot (8, or any above TwinLoop's) and wins;
  the value of the highest non-empty slot goes to the plant.

The device keeps the last word, as a real supervisory-control deployment does, because a
BACnet write has no expiry:

- **heartbeat**: TwinLoop writes a changing number to the heartbeat analog-value every
  period; when it has not changed for ``heartbeat_timeout_s`` of the device's clock (plant
  seconds here, wall seconds on a real BMS) the device relinquishes TwinLoop's slot in
  every setpoint at once, and refuses writes in that slot until a new beat;
- **supervisory enable**: a binary-value the BMS operator commands; while it is inactive
  TwinLoop's slot is relinquished and writes in it are refused (``write-access-denied``).
  A write to it in TwinLoop's own slot is refused: TwinLoop cannot enable itself;
- **envelope**: a value outside the plant's actuator limits (``SetpointLimits``, narrowed
  by the map's ``limits``) or not finite is refused at any priority
  (``value-out-of-range``), never clipped; a network write into the site's slot 16 is
  refused (``write-access-denied``): it is the BMS's own.

Sensors answer SubscribeCOV (:mod:`connectors.bacnet_cov`): an analog input notifies
when it has moved by its ``covIncrement`` (about three times the emulated noise of its
unit), a binary input on any change, and any input when it goes to fault or back;
``cov=False`` (or setting :attr:`BacnetBmsDevice.cov` while it runs) refuses every
subscription and renewal (a device without COV, or one out of subscription slots).

BACnet/IP carries no authentication: the slots tell writers apart, not who they are (see
docs/bacnet.md for BACnet/SC). The plant's physics is :class:`physics.plant.plant.Plant`'s,
stepped here exactly as :class:`connectors.bms_emulator.BmsEmulator` steps it: the device
turns the priority arrays into a :class:`~physics.plant.site_control.SetpointCommand` each
step. Pacing: ``speed`` plant seconds per wall second on the device's loop, or the caller
drives :meth:`BacnetBmsDevice.step`.

**The device's clock is the plant's.** Given a ``calendar``
(:class:`~connectors.device_clock.PlantCalendar`), the device object's ``local-date`` and
``local-time`` are the plant's time (``epoch_s`` + plant seconds) on that calendar, as a BMS
controller's panel shows its own time; TwinLoop's client stamps each poll's readings with
it (:mod:`connectors.device_clock`). Without one they are this machine's wall clock.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from typing import Any

from bacpypes3.app import Application
from bacpypes3.basetypes import BinaryPV, PriorityValue
from bacpypes3.errors import PropertyError
from bacpypes3.local.analog import AnalogInputObject, AnalogValueObject, AnalogValueObjectCmd
from bacpypes3.local.binary import BinaryInputObject
from bacpypes3.local.cmd import Commandable
from bacpypes3.local.object import Object as LocalObject
from bacpypes3.object import BinaryValueObject
from bacpypes3.primitivedata import Null, Real

from connectors.bacnet_cov import cov_increment, serve_cov, set_reliability
from connectors.bacnet_stack import LoopThread, close_application, open_application
from connectors.device_clock import PlantCalendar
from connectors.pacing import pace
from connectors.point_map import BacnetRef, PointEntry, PointMap
from physics.plant.plant import Plant
from physics.plant.site import SiteDefaults
from physics.plant.site_control import SetpointCommand
from twinloop.errors import TwinLoopError

logger = logging.getLogger(__name__)

SITE_PRIORITY = 16
"""The site's own schedule's slot (BACnet's lowest)."""
OPERATOR_PRIORITY = 8
"""BACnet's manual-operator slot, above TwinLoop's default 10."""
DEFAULT_HEARTBEAT_TIMEOUT_S = 900.0
"""Three of the live loop's 300 s control periods, on the device's clock."""
CALL_TIMEOUT_S = 30.0

BACNET_UNITS: dict[str, str] = {
    "degC": "degreesCelsius",
    "kW": "kilowatts",
    "kg/s": "kilogramsPerSecond",
    "frac": "noUnits",
    "count": "noUnits",
}

COUNTERS: tuple[str, ...] = (
    "steps",
    "writes",
    "relinquishes",
    "heartbeats",
    "refused_out_of_envelope",
    "refused_disabled",
    "refused_no_heartbeat",
    "refused_site_slot",
    "refused_enable_by_twinloop",
    "released_heartbeat",
    "released_disabled",
    "cov_notifications",
    "cov_refused",
)

Guard = Callable[[str, Any, int], None]


class BacnetDeviceError(TwinLoopError, ValueError):
    """A point map the device cannot serve."""


def _attr_name(obj: Any, attr: int | str) -> str:
    if isinstance(attr, int):
        return str(obj._property_identifier_class(attr).attr)
    return attr


class _Guarded:
    """Mixin of the setpoint objects: the device's guard sees every present-value write
    (with its priority) before the priority array changes."""

    _guard: Guard | None = None
    _field: str = ""

    async def write_property(
        self,
        attr: int | str,
        value: Any,
        index: int | None = None,
        priority: int | None = None,
    ) -> None:
        if self._guard is not None and _attr_name(self, attr) == "presentValue":
            self._guard(self._field, value, SITE_PRIORITY if priority is None else priority)
        await super().write_property(attr, value, index, priority)  # type: ignore[misc]


class SetpointAnalogValue(_Guarded, AnalogValueObjectCmd):  # type: ignore[misc]
    """A commandable analog setpoint behind the device's guard."""


class SetpointBinaryValue(_Guarded, Commandable, LocalObject, BinaryValueObject):  # type: ignore[misc]
    """A commandable binary setpoint (or the supervisory enable) behind the guard. Built
    like bacpypes3's local binary output: its ``BinaryValueObjectCmd`` (0.0.110) lacks the
    local object mixin and answers ``unknown-property`` for its status flags."""

    _required = ("priorityArray",)


class HeartbeatValue(AnalogValueObject):  # type: ignore[misc]
    """The heartbeat TwinLoop writes; the device hears every change."""

    _on_beat: Callable[[Any], None] | None = None

    async def write_property(
        self,
        attr: int | str,
        value: Any,
        index: int | None = None,
        priority: int | None = None,
    ) -> None:
        is_value = _attr_name(self, attr) == "presentValue"
        if is_value and not (isinstance(value, float) and math.isfinite(value)):
            raise PropertyError("valueOutOfRange")
        await super().write_property(attr, value, index, priority)
        if is_value and self._on_beat is not None:
            self._on_beat(value)


def _is_null(value: Any) -> bool:
    return isinstance(value, Null)


class BacnetBmsDevice:
    """The plant served as a BACnet/IP device (module docstring)."""

    def __init__(
        self,
        plant: Plant,
        point_map: PointMap,
        *,
        device: str = "bms",
        host: str | None = None,
        port: int | None = None,
        speed: float | None = None,
        heartbeat_timeout_s: float = DEFAULT_HEARTBEAT_TIMEOUT_S,
        supervisory_enabled: bool = True,
        site_defaults: SiteDefaults | None = None,
        cov: bool = True,
        epoch_s: float = 0.0,
        calendar: PlantCalendar | None = None,
    ) -> None:
        spec = point_map.devices.get(device)
        if spec is None or spec.protocol != "bacnet" or spec.device_instance is None:
            raise BacnetDeviceError(f"the point map has no BACnet device {device!r}")
        if not (math.isfinite(heartbeat_timeout_s) and heartbeat_timeout_s > 0):
            raise BacnetDeviceError("heartbeat_timeout_s must be a positive number of seconds")
        if speed is not None and not speed > 0:
            raise BacnetDeviceError("speed must be positive (plant seconds per wall second)")
        if not isinstance(spec.heartbeat, BacnetRef) or not isinstance(
            spec.supervisory_enable, BacnetRef
        ):
            raise BacnetDeviceError(f"device {device!r} needs a heartbeat and an enable object")
        self.plant = plant
        self.point_map = point_map
        self.spec = spec
        self.host = host or spec.host
        self.port = port or spec.port
        self.device_instance = spec.device_instance
        self.twinloop_priority = spec.priority
        self.speed = speed
        self.heartbeat_timeout_s = float(heartbeat_timeout_s)
        if not (math.isfinite(epoch_s) and epoch_s >= 0):
            raise BacnetDeviceError("epoch_s must be a finite, non-negative plant time")
        self.epoch_s = float(epoch_s)
        self.calendar = calendar
        self._defaults = site_defaults or plant.config.defaults
        self._counts: Counter[str] = Counter({name: 0 for name in COUNTERS})
        self._entries = point_map.for_device(device)
        self._sensors: list[tuple[int, PointEntry, Any]] = []
        self._setpoints: dict[str, tuple[PointEntry, Any]] = {}
        self._heartbeat_at_s: float | None = None
        self._heartbeat_value: float | None = None
        self._loop = LoopThread(f"bacnet-device-{self.device_instance}")
        self._app: Application | None = None
        self._pacer: asyncio.Task[None] | None = None
        self._objects = self._build_objects(spec.heartbeat, spec.supervisory_enable)
        self._supervisory_enabled_default = supervisory_enabled
        self.cov = cov
        """Whether the device takes COV subscriptions (and renewals) now (bacnet_cov)."""

    # ------------------------------------------------------------------ objects
    def _build_objects(self, heartbeat: BacnetRef, enable: BacnetRef) -> list[Any]:
        index = {name: i for i, name in enumerate(self.plant.point_names)}
        objects: list[Any] = []
        for entry in self._entries:
            ref = entry.bacnet
            assert ref is not None
            ident = (ref.object, ref.instance)
            if entry.point is not None:
                if entry.point not in index:
                    raise BacnetDeviceError(f"the plant has no point {entry.point!r}")
                if ref.object == "binary-input":
                    obj = BinaryInputObject(
                        objectIdentifier=ident, objectName=entry.point, presentValue="inactive"
                    )
                elif ref.object == "analog-input":
                    obj = AnalogInputObject(
                        objectIdentifier=ident,
                        objectName=entry.point,
                        presentValue=0.0,
                        units=BACNET_UNITS[entry.unit],
                        covIncrement=cov_increment(entry.unit, entry.scale),
                    )
                else:
                    raise BacnetDeviceError(f"{entry.point}: sensors are served as inputs")
                obj.reliability = "noFaultDetected"
                self._sensors.append((index[entry.point], entry, obj))
                objects.append(obj)
                continue
            assert entry.setpoint is not None
            default = float(getattr(self._defaults, entry.setpoint, 0.0))
            if entry.setpoint == "economiser_enable":
                obj = SetpointBinaryValue(
                    objectIdentifier=ident,
                    objectName=entry.name,
                    presentValue="inactive",
                    relinquishDefault="inactive",
                )
            elif ref.object == "analog-value":
                raw = default / entry.scale
                obj = SetpointAnalogValue(
                    objectIdentifier=ident,
                    objectName=entry.name,
                    presentValue=raw,
                    relinquishDefault=raw,
                    units=BACNET_UNITS[entry.unit],
                    covIncrement=0.1,
                )
            else:
                raise BacnetDeviceError(f"{entry.name}: setpoints are served as values")
            # The site's schedule holds its slot (bacpypes3 leaves the array empty at init).
            obj.priorityArray[SITE_PRIORITY - 1] = PriorityValue(obj.relinquishDefault)
            obj._guard = self._guard
            obj._field = entry.setpoint
            self._setpoints[entry.setpoint] = (entry, obj)
            objects.append(obj)
        beat = HeartbeatValue(
            objectIdentifier=(heartbeat.object, heartbeat.instance),
            objectName="twinloop_heartbeat",
            presentValue=0.0,
            units="noUnits",
            covIncrement=1.0,
        )
        beat._on_beat = self._beat
        self._enable = SetpointBinaryValue(
            objectIdentifier=(enable.object, enable.instance),
            objectName="twinloop_supervisory_enable",
            presentValue="active",
            relinquishDefault="active",
        )
        self._enable._guard = self._guard
        self._enable._field = "supervisory_enable"
        return [*objects, beat, self._enable]

    # ------------------------------------------------------------------ the device's rules
    @property
    def now_s(self) -> float:
        """The device's clock: plant seconds since the start of the run."""
        return self.plant.time_s

    @property
    def plant_epoch_s(self) -> float:
        """The plant's time as its readings are stamped: ``epoch_s`` + plant seconds."""
        return self.epoch_s + self.plant.time_s

    def local_time(self) -> datetime:
        """The device's date and time: the plant's on its calendar (module docstring)."""
        assert self.calendar is not None
        return self.calendar.local(self.plant_epoch_s)

    @property
    def supervisory_enabled(self) -> bool:
        return int(self._enable.presentValue) == 1

    @property
    def heartbeat_alive(self) -> bool:
        at = self._heartbeat_at_s
        return at is not None and self.now_s - at <= self.heartbeat_timeout_s

    def _beat(self, value: Any) -> None:
        if value != self._heartbeat_value:
            self._heartbeat_value = float(value)
            self._heartbeat_at_s = self.now_s
            self._counts["heartbeats"] += 1

    def _guard(self, field: str, value: Any, priority: int) -> None:
        """Refuse a present-value write the device does not take (module docstring)."""
        twinloop = priority == self.twinloop_priority
        if field == "supervisory_enable":
            if twinloop:
                self._counts["refused_enable_by_twinloop"] += 1
                raise PropertyError("writeAccessDenied")
            return
        if priority == SITE_PRIORITY:
            self._counts["refused_site_slot"] += 1
            raise PropertyError("writeAccessDenied")
        if _is_null(value):
            self._counts["relinquishes"] += 1
            return
        if twinloop and not self.supervisory_enabled:
            self._counts["refused_disabled"] += 1
            raise PropertyError("writeAccessDenied")
        if twinloop and not self.heartbeat_alive:
            self._counts["refused_no_heartbeat"] += 1
            raise PropertyError("writeAccessDenied")
        if field != "economiser_enable":
            entry = self._setpoints[field][0]
            low, high = self._envelope(entry)
            number = float(value) * entry.scale
            if not (math.isfinite(number) and low <= number <= high):
                self._counts["refused_out_of_envelope"] += 1
                raise PropertyError("valueOutOfRange")
        self._counts["writes"] += 1

    def _envelope(self, entry: PointEntry) -> tuple[float, float]:
        """The plant's actuator limits of a setpoint, narrowed by the device's map."""
        assert entry.setpoint is not None and entry.limits is not None
        low, high = getattr(self.plant.config.limits, entry.setpoint)
        return max(float(low), entry.limits[0]), min(float(high), entry.limits[1])

    def _release_twinloop(self, why: str) -> None:
        """Relinquish TwinLoop's slot in every setpoint (the device's last word)."""
        slot = self.twinloop_priority - 1
        released = []
        for field, (_, obj) in self._setpoints.items():
            if obj.priorityArray[slot].null is None:
                obj.priorityArray[slot] = PriorityValue(null=())
                released.append(field)
        if released:
            self._counts[f"released_{why}"] += 1
            logger.warning(
                "bacnet device %d: %s; TwinLoop's priority %d relinquished in %s",
                self.device_instance,
                "heartbeat lost" if why == "heartbeat" else "supervisory control disabled",
                self.twinloop_priority,
                ", ".join(released),
            )

    def _enforce(self) -> None:
        if not self.supervisory_enabled:
            self._release_twinloop("disabled")
        elif not self.heartbeat_alive:
            self._release_twinloop("heartbeat")

    def _command(self) -> SetpointCommand | None:
        """The plant's command: each field whose winning slot is above the site's."""
        values: dict[str, float] = {}
        for field, (entry, obj) in self._setpoints.items():
            winner = self._winning_priority(obj)
            if winner is None or winner >= SITE_PRIORITY:
                continue
            raw = obj.presentValue
            values[field] = float(int(raw)) if field == "economiser_enable" else float(raw)
            values[field] *= entry.scale if field != "economiser_enable" else 1.0
        if not values:
            return None
        return SetpointCommand(
            command_id=f"bacnet-{self._counts['steps']}",
            expires_at_s=self.plant.time_s + 2 * self.plant.step_s,
            **values,
        )

    @staticmethod
    def _winning_priority(obj: Any) -> int | None:
        for i in range(16):
            if obj.priorityArray[i].null is None:
                return i + 1
        return None

    def _publish(self) -> None:
        frame = self.plant.last_frame
        assert frame is not None
        values, quality = frame.values[0], frame.quality[0]
        for i, entry, obj in self._sensors:
            value = float(values[i])
            if not (bool(quality[i]) and math.isfinite(value)):
                set_reliability(obj, "unreliableOther")
                continue
            set_reliability(obj, "noFaultDetected")
            if entry.unit == "bool":
                obj.presentValue = "active" if value >= 0.5 else "inactive"
            else:
                obj.presentValue = value / entry.scale

    async def _step(self, n_steps: int) -> None:
        for _ in range(n_steps):
            if self.plant.done:
                raise RuntimeError("the plant's scenario has ended")
            self._enforce()
            self.plant.apply_command(self._command())
            self.plant.step()
            self._counts["steps"] += 1
            self._publish()
            self._enforce()

    async def _pace(self) -> None:
        assert self.speed is not None
        await pace(
            lambda: self._step(1),
            lambda: self.plant.done,
            self.plant.step_s / self.speed,
            f"bacnet device {self.device_instance}",
        )

    # ------------------------------------------------------------------ the caller's API
    def step(self, n_steps: int = 1) -> None:
        """Advance the plant ``n_steps`` under the priority arrays (unpaced device)."""
        self._loop.call(self._step(n_steps), CALL_TIMEOUT_S + n_steps)

    def operator_write(
        self, field: str, value: float | None, priority: int = OPERATOR_PRIORITY
    ) -> None:
        """The BMS's own panel: command ``field`` (or ``supervisory_enable``) at
        ``priority``, or relinquish it with None. The device's rules apply."""
        obj = self._enable if field == "supervisory_enable" else self._setpoints[field][1]
        binary = field in ("supervisory_enable", "economiser_enable")
        raw: Any = Null(()) if value is None else BinaryPV("active" if value else "inactive")
        if value is not None and not binary:
            raw = Real(float(value) / self._setpoints[field][0].scale)

        async def write() -> None:
            await obj.write_property("presentValue", raw, priority=priority)
            self._enforce()

        self._loop.call(write(), CALL_TIMEOUT_S)

    def priority_array(self, field: str) -> list[float | None]:
        """The 16 slots of ``field`` (TwinLoop units; None where empty)."""
        entry, obj = self._setpoints[field]

        async def read() -> list[float | None]:
            out: list[float | None] = []
            for pv in obj.priorityArray:
                if pv.null is not None:
                    out.append(None)
                    continue
                raw = getattr(pv, pv._choice)
                out.append(float(int(raw)) if field == "economiser_enable" else float(raw))
            return out

        slots = self._loop.call(read(), CALL_TIMEOUT_S)
        if field != "economiser_enable":
            slots = [None if v is None else v * entry.scale for v in slots]
        return slots

    def control_of(self, field: str) -> str:
        """Who holds ``field`` now: "site", "twinloop", "operator" (a slot above
        TwinLoop's) or "priority N" (one between TwinLoop's and the site's)."""
        obj = self._setpoints[field][1]

        async def winner() -> int | None:
            return self._winning_priority(obj)

        p = self._loop.call(winner(), CALL_TIMEOUT_S)
        if p is None or p >= SITE_PRIORITY:
            return "site"
        if p == self.twinloop_priority:
            return "twinloop"
        return "operator" if p < self.twinloop_priority else f"priority {p}"

    def counters(self) -> dict[str, int]:
        """The counts of :data:`COUNTERS`: steps, writes taken, relinquishes, heartbeats,
        refusals by reason and the slot releases by the heartbeat and the enable."""
        return dict(self._counts)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> BacnetBmsDevice:
        """Bind the device's address and serve; with ``speed``, also step the plant."""
        self._loop.start()
        self._app = self._loop.call(
            open_application(
                self.host,
                self.port,
                device_instance=self.device_instance,
                name=f"twinloop-bms-{self.point_map.site}",
                objects=self._objects,
                clock=None if self.calendar is None else self.local_time,
            ),
            CALL_TIMEOUT_S,
        )
        serve_cov(self._app, self._counts, lambda: self.cov)
        if not self._supervisory_enabled_default:
            self.operator_write("supervisory_enable", 0.0)
        if self.speed is not None:

            async def pace() -> None:
                self._pacer = asyncio.get_running_loop().create_task(self._pace())

            self._loop.call(pace(), CALL_TIMEOUT_S)
        return self

    def stop(self) -> None:
        """Stop pacing, close the socket and the loop."""

        async def close() -> None:
            if self._pacer is not None:
                self._pacer.cancel()
                self._pacer = None
            if self._app is not None:
                await close_application(self._app)
                self._app = None
            await asyncio.sleep(0)

        try:
            self._loop.call(close(), CALL_TIMEOUT_S)
        finally:
            self._loop.stop()

    def __enter__(self) -> BacnetBmsDevice:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

"""A site's point map: which BACnet object or Modbus register carries which TwinLoop point.

The map is YAML, validated with pydantic (unknown keys refused); a bad file stops with one
line naming the field, e.g. ``point map site.yaml: points[3].bacnet.instance: Input should
be less than or equal to 4194302``. It lists the site's field devices (the allow-list: a
connector talks to no other address, and checks each device's instance) and its points::

    site: hall1
    devices:
      bms:
        protocol: bacnet
        address: 10.0.4.20:47808
        device_instance: 1001
        priority: 10                 # TwinLoop's slot in every priority array
        heartbeat: {object: analog-value, instance: 900}
        supervisory_enable: {object: binary-value, instance: 901}
    points:
      - point: supply_air_c          # a sensor point of the site's catalog (read only)
        device: bms
        bacnet: {object: analog-input, instance: 103}
        unit: degC
        brick: Supply_Air_Temperature_Sensor
      - setpoint: chw_supply_c       # a setpoint TwinLoop writes
        device: bms
        bacnet: {object: analog-value, instance: 3}
        unit: degC
        limits: [5.5, 16.0]
        writable: true
      - point: facility_power_kw
        device: meter
        modbus: {address: 3000, function: 4, type: float32, word_order: big}
        unit: kW
        scale: 1.0                   # TwinLoop value = raw value x scale

Every entry names exactly one of ``point`` (a point of the site's
:class:`~connectors.catalog.PointCatalog`, in its unit) or ``setpoint`` (one of
:data:`~physics.plant.site_control.SETPOINT_FIELDS`). ``limits`` (TwinLoop units) default
to the catalog's bounds for a point and the plant's envelope for a setpoint, and may only
narrow them. A writable entry must be a commandable BACnet object (analog/binary value or
output) or a Modbus float32 holding register (function 3; NaN is its hand-back), and its
device must have the heartbeat and supervisory-enable pair: without it a BACnet write would
hold forever after TwinLoop died (docs/bacnet.md).

:func:`reference_point_map` drafts the map of an emulated site from its catalog (what the
BACnet device of :mod:`connectors.bacnet_device` serves).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from connectors.catalog import PointCatalog
from physics.plant.site import SetpointLimits
from physics.plant.site_control import SETPOINT_FIELDS
from twinloop.errors import TwinLoopError

logger = logging.getLogger(__name__)

MAX_MAP_BYTES = 4 * 1024 * 1024
"""A point map is a few hundred entries; a bigger file is refused before parsing."""
MAX_INSTANCE = 4_194_302
"""The largest BACnet object instance (2^22 - 2; 2^22 - 1 is 'uninitialised')."""
RESERVED_PRIORITY = 6
"""BACnet's minimum on/off priority, never a supervisory controller's."""

BacnetObjectType = Literal[
    "analog-input",
    "analog-output",
    "analog-value",
    "binary-input",
    "binary-output",
    "binary-value",
]
COMMANDABLE: frozenset[str] = frozenset(
    {"analog-output", "analog-value", "binary-output", "binary-value"}
)
"""Object types with a priority array (a writable entry must be one of them)."""
BINARY: frozenset[str] = frozenset({"binary-input", "binary-output", "binary-value"})

SETPOINT_UNITS: dict[str, str] = {
    "supply_air_c": "degC",
    "fan_speed_frac": "frac",
    "chw_supply_c": "degC",
    "cw_supply_c": "degC",
    "economiser_enable": "bool",
}
"""The unit of each writable setpoint."""

ModbusType = Literal["int16", "uint16", "int32", "uint32", "float32"]
REGISTER_WORDS: dict[str, int] = {
    "int16": 1,
    "uint16": 1,
    "int32": 2,
    "uint32": 2,
    "float32": 2,
}

_BRICK = re.compile(r"^[A-Z][A-Za-z0-9_]{0,99}$")
_HOST = re.compile(r"^[A-Za-z0-9.\-]{1,253}$")


class PointMapError(TwinLoopError, ValueError):
    """A point map that cannot be used; one line naming the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BacnetRef(_Strict):
    """One BACnet object of a device."""

    object: BacnetObjectType
    instance: Annotated[int, Field(ge=0, le=MAX_INSTANCE, strict=True)]

    @property
    def key(self) -> str:
        return f"{self.object},{self.instance}"


class ModbusRef(_Strict):
    """One Modbus value: its first register, read function, type and word order."""

    address: Annotated[int, Field(ge=0, le=65535, strict=True)]
    function: Literal[3, 4]
    """3: holding register (read 3, written 6 or 16); 4: input register (read only)."""
    type: ModbusType = "uint16"
    word_order: Literal["big", "little"] = "big"
    """Of a 32-bit value: "big" puts the high word in the first register."""

    @property
    def words(self) -> int:
        return REGISTER_WORDS[self.type]

    @model_validator(mode="after")
    def _fits(self) -> ModbusRef:
        if self.address + self.words - 1 > 65535:
            raise ValueError(f"a {self.type} at {self.address} runs past register 65535")
        return self


class DeviceSpec(_Strict):
    """A field device on the allow-list."""

    protocol: Literal["bacnet", "modbus"]
    address: str
    """``host:port``; a BACnet device is addressed directly (Who-Is goes to 47808 only)."""
    device_instance: Annotated[int, Field(ge=0, le=MAX_INSTANCE, strict=True)] | None = None
    """BACnet: the device object's instance the device must answer with."""
    unit_id: Annotated[int, Field(ge=0, le=247, strict=True)] | None = None
    """Modbus: the unit (slave) id."""
    priority: Annotated[int, Field(ge=1, le=16, strict=True)] = 10
    """BACnet: TwinLoop's slot in the priority arrays (1 is the highest)."""
    heartbeat: BacnetRef | ModbusRef | None = None
    supervisory_enable: BacnetRef | ModbusRef | None = None

    @property
    def host(self) -> str:
        return self.address.rsplit(":", 1)[0]

    @property
    def port(self) -> int:
        return int(self.address.rsplit(":", 1)[1])

    @model_validator(mode="after")
    def _check(self) -> DeviceSpec:
        host, sep, port = self.address.rpartition(":")
        if not sep or not _HOST.match(host) or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"address {self.address[:60]!r} must be host:port (port 1-65535)")
        if self.protocol == "bacnet":
            if self.device_instance is None:
                raise ValueError("a BACnet device needs its device_instance (the allow-list)")
            if self.priority == RESERVED_PRIORITY:
                raise ValueError("priority 6 is reserved for minimum on/off")
            refs = (self.heartbeat, self.supervisory_enable)
            if any(r is not None and not isinstance(r, BacnetRef) for r in refs):
                raise ValueError("a BACnet device's heartbeat and enable are BACnet objects")
            if isinstance(self.heartbeat, BacnetRef) and self.heartbeat.object not in (
                "analog-value",
                "analog-output",
            ):
                raise ValueError("the heartbeat must be an analog value or output")
        else:
            if self.unit_id is None:
                raise ValueError("a Modbus device needs its unit_id")
            refs = (self.heartbeat, self.supervisory_enable)
            if any(r is not None and not isinstance(r, ModbusRef) for r in refs):
                raise ValueError("a Modbus device's heartbeat and enable are registers")
            if isinstance(self.heartbeat, ModbusRef) and self.heartbeat.function != 3:
                raise ValueError("the heartbeat must be a holding register (function 3)")
        return self


class PointEntry(_Strict):
    """One mapped point (module docstring)."""

    point: str | None = None
    setpoint: str | None = None
    device: str
    bacnet: BacnetRef | None = None
    modbus: ModbusRef | None = None
    unit: str
    scale: float = 1.0
    """TwinLoop value = raw value x scale."""
    limits: tuple[float, float] | None = None
    writable: bool = False
    brick: str | None = None

    @property
    def name(self) -> str:
        """The TwinLoop name: the point, or ``setpoint.<field>``."""
        return self.point if self.point is not None else f"setpoint.{self.setpoint}"

    @model_validator(mode="after")
    def _check(self) -> PointEntry:
        if (self.point is None) == (self.setpoint is None):
            raise ValueError("an entry names exactly one of 'point' and 'setpoint'")
        if (self.bacnet is None) == (self.modbus is None):
            raise ValueError("an entry has exactly one of 'bacnet' and 'modbus'")
        if not math.isfinite(self.scale) or self.scale == 0:
            raise ValueError(f"scale {self.scale} must be finite and non-zero")
        if self.limits is not None:
            low, high = self.limits
            if not (math.isfinite(low) and math.isfinite(high) and low < high):
                raise ValueError(f"limits {list(self.limits)} must be finite with low < high")
        if self.brick is not None and not _BRICK.match(self.brick):
            raise ValueError(f"brick {self.brick[:40]!r} is not a Brick class name")
        if self.point is not None and self.writable:
            raise ValueError("a sensor point is never writable (write a 'setpoint')")
        if self.writable and self.bacnet is not None and self.bacnet.object not in COMMANDABLE:
            raise ValueError(f"a writable {self.bacnet.object} has no priority array")
        if self.writable and self.modbus is not None and self.modbus.function != 3:
            raise ValueError("a writable register must be a holding register (function 3)")
        if self.writable and self.modbus is not None and self.modbus.type != "float32":
            raise ValueError("a writable register must be a float32 (NaN is the hand-back)")
        if self.bacnet is not None and self.bacnet.object in BINARY and self.unit != "bool":
            raise ValueError(f"a {self.bacnet.object} carries unit bool, not {self.unit!r}")
        return self


class PointMap(_Strict):
    """A validated point map; use :func:`load_point_map` or :func:`parse_point_map`."""

    site: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")]
    devices: Annotated[dict[str, DeviceSpec], Field(min_length=1)]
    points: Annotated[list[PointEntry], Field(min_length=1)]

    def bounds(self, entry: PointEntry) -> tuple[float, float]:
        """The values TwinLoop accepts for ``entry`` (its limits, TwinLoop units)."""
        assert entry.limits is not None  # filled in by parse_point_map
        return entry.limits

    def for_device(self, device: str) -> list[PointEntry]:
        return [e for e in self.points if e.device == device]

    def entry(self, name: str) -> PointEntry:
        for e in self.points:
            if e.name == name:
                return e
        raise KeyError(name)

    def to_yaml(self) -> str:
        return yaml.safe_dump(
            self.model_dump(mode="json", exclude_none=True), sort_keys=False, width=100
        )


def _where(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "file"


def _setpoint_envelope(field: str) -> tuple[float, float]:
    if field == "economiser_enable":
        return (0.0, 1.0)
    low, high = getattr(SetpointLimits(), field)
    return (float(low), float(high))


def _cross_check(pm: PointMap, catalog: PointCatalog) -> list[PointEntry]:
    """Catalog, units, devices and uniqueness; returns the entries with their limits filled.
    Raises ValueError with ``where: message``."""
    seen_names: set[str] = set()
    seen_refs: set[tuple[str, str]] = set()
    out: list[PointEntry] = []
    for i, e in enumerate(pm.points):
        where = f"points[{i}]"
        if e.name in seen_names:
            raise ValueError(f"{where}: {e.name!r} is mapped twice")
        seen_names.add(e.name)
        device = pm.devices.get(e.device)
        if device is None:
            raise ValueError(f"{where}.device: unknown device {e.device[:40]!r}")
        if (device.protocol == "bacnet") != (e.bacnet is not None):
            raise ValueError(f"{where}: device {e.device!r} speaks {device.protocol}")
        ref = e.bacnet.key if e.bacnet is not None else f"reg{e.modbus.address}"  # type: ignore[union-attr]
        if (e.device, ref) in seen_refs:
            raise ValueError(f"{where}: {ref} of {e.device!r} is mapped twice")
        seen_refs.add((e.device, ref))
        if e.point is not None:
            rule = catalog.rule(e.point)
            if rule is None:
                raise ValueError(f"{where}.point: {e.point[:60]!r} is not in the site's catalog")
            unit, (low, high) = rule.unit, (rule.low, rule.high)
        else:
            assert e.setpoint is not None
            if e.setpoint not in SETPOINT_UNITS:
                raise ValueError(
                    f"{where}.setpoint: unknown setpoint {e.setpoint[:40]!r} "
                    f"(known: {', '.join(SETPOINT_FIELDS)})"
                )
            unit, (low, high) = SETPOINT_UNITS[e.setpoint], _setpoint_envelope(e.setpoint)
        if e.unit != unit:
            raise ValueError(f"{where}.unit: {e.unit[:20]!r}, the point's unit is {unit!r}")
        if e.limits is not None:
            if e.limits[0] < low or e.limits[1] > high:
                raise ValueError(
                    f"{where}.limits: {list(e.limits)} wider than the allowed [{low:g}, {high:g}]"
                )
            low, high = e.limits
        if e.writable and (device.heartbeat is None or device.supervisory_enable is None):
            raise ValueError(
                f"devices.{e.device}: a device with writable points needs 'heartbeat' and "
                "'supervisory_enable'"
            )
        out.append(e.model_copy(update={"limits": (float(low), float(high))}))
    return out


def parse_point_map(data: Any, catalog: PointCatalog, *, source: str = "<map>") -> PointMap:
    """Validate ``data`` (the parsed YAML) against the schema and ``catalog``."""
    try:
        pm = PointMap.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        message = str(first["msg"]).removeprefix("Value error, ")
        raise PointMapError(f"point map {source}: {_where(first['loc'])}: {message}") from None
    try:
        points = _cross_check(pm, catalog)
    except ValueError as exc:
        raise PointMapError(f"point map {source}: {exc}") from None
    return pm.model_copy(update={"points": points})


def load_point_map(path: Path, catalog: PointCatalog) -> PointMap:
    """Read and validate the map at ``path`` (module docstring)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise PointMapError(f"point map {path}: cannot read it ({exc.strerror})") from None
    if len(raw) > MAX_MAP_BYTES:
        raise PointMapError(f"point map {path}: {len(raw)} bytes, more than {MAX_MAP_BYTES}")
    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise PointMapError(f"point map {path}: {line}{problem}") from None
    if not isinstance(data, Mapping):
        raise PointMapError(f"point map {path}: file: must be a mapping (site, devices, points)")
    return parse_point_map(dict(data), catalog, source=str(path))


# ---------------------------------------------------------------------- the emulated site
BRICK_CLASSES: dict[str, str] = {
    "rack_inlet_c": "Air_Temperature_Sensor",
    "hot_aisle_c": "Air_Temperature_Sensor",
    "supply_air_c": "Supply_Air_Temperature_Sensor",
    "return_air_c": "Return_Air_Temperature_Sensor",
    "chw_supply_c": "Chilled_Water_Supply_Temperature_Sensor",
    "chw_return_c": "Chilled_Water_Return_Temperature_Sensor",
    "cw_supply_c": "Condenser_Water_Supply_Temperature_Sensor",
    "cw_return_c": "Condenser_Water_Return_Temperature_Sensor",
    "outdoor_dry_bulb_c": "Outside_Air_Temperature_Sensor",
    "outdoor_wet_bulb_c": "Outside_Air_Wet_Bulb_Temperature_Sensor",
    "outdoor_rel_hum_frac": "Outside_Air_Humidity_Sensor",
    "crah_fan_speed_frac": "Speed_Sensor",
    "chw_flow_kg_s": "Chilled_Water_Flow_Sensor",
    "crah_running": "Run_Status",
    "chiller_running": "Run_Status",
    "chiller_alarm": "Alarm",
    "tower_fan_alarm": "Alarm",
    "setpoint.supply_air_c": "Supply_Air_Temperature_Setpoint",
    "setpoint.fan_speed_frac": "Speed_Setpoint",
    "setpoint.chw_supply_c": "Chilled_Water_Supply_Temperature_Setpoint",
    "setpoint.cw_supply_c": "Condenser_Water_Supply_Temperature_Setpoint",
    "setpoint.economiser_enable": "Enable_Command",
}
"""Brick classes of the emulated site's points (by name before the first '.'; power points
are Electric_Power_Sensor)."""

SETPOINT_INSTANCES: dict[str, int] = {
    "supply_air_c": 1,
    "fan_speed_frac": 2,
    "chw_supply_c": 3,
    "cw_supply_c": 4,
    "economiser_enable": 1,
}
"""Object instances of the emulated device's setpoints (analog values 1-4, binary value 1)."""
HEARTBEAT_INSTANCE = 900
ENABLE_INSTANCE = 901


def _brick(name: str, unit: str) -> str | None:
    if name.startswith("setpoint."):
        return BRICK_CLASSES.get(name)
    base = name.split(".", 1)[0]
    if base in BRICK_CLASSES:
        return BRICK_CLASSES[base]
    return "Electric_Power_Sensor" if unit == "kW" else None


def reference_point_map(
    catalog: PointCatalog,
    *,
    address: str,
    device_instance: int,
    site: str = "site1",
    priority: int = 10,
) -> PointMap:
    """The map of the emulated site's BACnet device: sensor ``i`` of ``catalog`` as
    analog-input ``i`` (binary-input ``i`` for a bool), the five setpoints as analog values
    1-4 and binary value 1, the heartbeat as analog value 900 and the supervisory enable as
    binary value 901."""
    points: list[dict[str, Any]] = []
    for i, name in enumerate(catalog.points):
        rule = catalog.rule(name)
        assert rule is not None
        kind = "binary-input" if rule.unit == "bool" else "analog-input"
        entry: dict[str, Any] = {
            "point": name,
            "device": "bms",
            "bacnet": {"object": kind, "instance": i},
            "unit": rule.unit,
        }
        brick = _brick(name, rule.unit)
        if brick is not None:
            entry["brick"] = brick
        points.append(entry)
    for field in SETPOINT_FIELDS:
        kind = "binary-value" if field == "economiser_enable" else "analog-value"
        points.append(
            {
                "setpoint": field,
                "device": "bms",
                "bacnet": {"object": kind, "instance": SETPOINT_INSTANCES[field]},
                "unit": SETPOINT_UNITS[field],
                "writable": True,
                "brick": BRICK_CLASSES[f"setpoint.{field}"],
            }
        )
    data = {
        "site": site,
        "devices": {
            "bms": {
                "protocol": "bacnet",
                "address": address,
                "device_instance": device_instance,
                "priority": priority,
                "heartbeat": {"object": "analog-value", "instance": HEARTBEAT_INSTANCE},
                "supervisory_enable": {"object": "binary-value", "instance": ENABLE_INSTANCE},
            }
        },
        "points": points,
    }
    return parse_point_map(data, catalog, source="<reference>")

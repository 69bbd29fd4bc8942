"""What a BACnet/IP device serves, read directly from it, and a point map drafted from that.

:func:`discover` addresses one device at ``host:port`` (no Who-Is: broadcasts go to 47808
only, and TwinLoop talks only to devices it is told about). It reads the device object's
identifier through the wildcard instance 4194303 (every device answers for itself) unless
the instance is given, then its ``object-list`` (whole, or element by element when the
device cannot send it in one answer), then each object's name and, for analog objects,
units, with ReadPropertyMultiple. Everything the device says is checked before it is
believed: an object list that is not a list of object identifiers, more than
:data:`MAX_OBJECTS` objects, a name that is not a short printable string: each is named
and the object skipped or the discovery refused, never a crash.

:func:`draft_point_map` turns the inventory into a point map for the site's catalog: an
input object named as a catalog point is that point; a value or output object named as a
setpoint field (``supply_air_c`` or ``setpoint.supply_air_c``) is that setpoint, writable
when the device also serves a heartbeat analog value and a supervisory-enable binary value
(found by name); the rest is listed as unmapped. The draft is validated like any map: the
operator reviews it (limits, scale, priority) before ``serve`` uses it.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bacpypes3.apdu import ErrorRejectAbortNack
from bacpypes3.pdu import Address
from bacpypes3.primitivedata import ObjectIdentifier
from bacpypes3.vendor import get_vendor_info

from connectors.bacnet_client import CLIENT_INSTANCE, _error_name
from connectors.bacnet_stack import LoopThread, open_application
from connectors.catalog import PointCatalog
from connectors.point_map import (
    BINARY,
    COMMANDABLE,
    MAX_INSTANCE,
    SETPOINT_UNITS,
    PointMap,
    parse_point_map,
)
from physics.plant.site_control import SETPOINT_FIELDS
from twinloop.errors import TwinLoopError

logger = logging.getLogger(__name__)

WILDCARD_INSTANCE = 4_194_303
"""A device object instance every device answers for itself (ASHRAE 135, 15.5)."""
MAX_OBJECTS = 10_000
OBJECTS_PER_REQUEST = 25
MAPPABLE = frozenset(
    {"analog-input", "analog-output", "analog-value", "binary-input", "binary-output"}
    | {"binary-value"}
)
_NAME = re.compile(r"^[\x20-\x7e]{1,200}$")


class BacnetDiscoveryError(TwinLoopError, ValueError):
    """A device that could not be discovered (no answer, an unusable object list...)."""


@dataclass(frozen=True)
class DiscoveredObject:
    """One object of the device's object list."""

    object: str
    instance: int
    name: str | None
    units: str | None = None
    """The device's engineering units as bacpypes3 names them (analog objects)."""
    problem: str = ""
    """Why the name or units could not be believed (``wrong_type``, an error...)."""


@dataclass(frozen=True)
class DeviceInventory:
    """What :func:`discover` found at ``address``."""

    address: str
    device_instance: int
    device_name: str | None
    objects: list[DiscoveredObject] = field(default_factory=list)


def _name_of(value: Any) -> tuple[str | None, str]:
    if isinstance(value, ErrorRejectAbortNack) or hasattr(value, "errorClass"):
        return None, _error_name(value)
    if not isinstance(value, str):
        return None, "wrong_type"
    if not _NAME.match(value):
        return None, "bad_name"
    return str(value), ""


class _Reader:
    """The reads of one discovery, on the application's loop."""

    def __init__(self, app: Any, address: Address, timeout_s: float) -> None:
        self.app = app
        self.address = address
        self.timeout_s = timeout_s
        self.vendor = get_vendor_info(0)

    async def read(self, objid: tuple[str, int], prop: str, index: int | None = None) -> Any:
        """One ReadProperty: the value or the device's error (no answer raises)."""
        try:
            return await asyncio.wait_for(
                self.app.read_property(self.address, ObjectIdentifier(objid), prop, index),
                self.timeout_s,
            )
        except TimeoutError:
            raise BacnetDiscoveryError(
                f"{self.address}: no answer to {prop} of {objid[0]},{objid[1]} "
                f"in {self.timeout_s:g} s"
            ) from None
        except ErrorRejectAbortNack as exc:
            return exc

    async def identify(self) -> int:
        """The device's instance, asked through the wildcard instance."""
        ident = await self.read(("device", WILDCARD_INSTANCE), "object-identifier")
        if isinstance(ident, ErrorRejectAbortNack):
            raise BacnetDiscoveryError(
                f"{self.address}: the device does not answer for the wildcard instance "
                f"({_error_name(ident)}): give its device instance"
            )
        try:
            kind, number = str(ident[0]), int(ident[1])
        except (TypeError, ValueError, IndexError):
            raise BacnetDiscoveryError(
                f"{self.address}: no device identifier in the answer"
            ) from None
        if kind != "device" or not 0 <= number <= MAX_INSTANCE:
            raise BacnetDiscoveryError(f"{self.address}: answered as {kind},{number}, not a device")
        return number

    async def object_list(self, device: tuple[str, int]) -> list[tuple[str, int]]:
        """The mappable objects of the device's object list."""
        listing = await self.read(device, "object-list")
        if not isinstance(listing, list):
            # Too long for one unsegmented answer (or refused whole): element by element.
            count = await self.read(device, "object-list", 0)
            if isinstance(count, bool) or not isinstance(count, int):
                detail = _error_name(listing) if isinstance(listing, ErrorRejectAbortNack) else ""
                raise BacnetDiscoveryError(
                    f"{self.address}: cannot read the object list {detail}".strip()
                )
            if not 0 <= count <= MAX_OBJECTS:
                raise BacnetDiscoveryError(
                    f"{self.address}: {count} objects, more than {MAX_OBJECTS}"
                )
            listing = [await self.read(device, "object-list", i) for i in range(1, count + 1)]
        if len(listing) > MAX_OBJECTS:
            raise BacnetDiscoveryError(
                f"{self.address}: {len(listing)} objects, more than {MAX_OBJECTS}"
            )
        wanted: list[tuple[str, int]] = []
        for item in listing:
            try:
                kind, number = str(item[0]), int(item[1])
            except (TypeError, ValueError, IndexError):
                raise BacnetDiscoveryError(
                    f"{self.address}: the object list holds {item!r:.40}"
                ) from None
            if kind in MAPPABLE and 0 <= number <= MAX_INSTANCE:
                wanted.append((kind, number))
        return wanted

    async def describe(self, chunk: list[tuple[str, int]]) -> list[DiscoveredObject]:
        """Name and units of up to :data:`OBJECTS_PER_REQUEST` objects, in one request."""
        args: list[Any] = []
        for kind, number in chunk:
            props = ["object-name"] if kind in BINARY else ["object-name", "units"]
            args += [ObjectIdentifier((kind, number)), props]
        try:
            answer = await asyncio.wait_for(
                self.app.read_property_multiple(self.address, args, vendor_info=self.vendor),
                self.timeout_s,
            )
        except TimeoutError:
            raise BacnetDiscoveryError(
                f"{self.address}: no answer to the names in {self.timeout_s:g} s"
            ) from None
        except ErrorRejectAbortNack as exc:
            return [DiscoveredObject(k, n, None, None, _error_name(exc)) for k, n in chunk]
        except Exception as exc:  # bacpypes3 cannot decode the device's answer
            logger.warning("bacnet discovery: unreadable answer from %s: %r", self.address, exc)
            return [DiscoveredObject(k, n, None, None, "decode_error") for k, n in chunk]
        found: dict[tuple[str, int], dict[str, Any]] = {}
        for item in answer if isinstance(answer, list) else []:
            try:
                objid, prop, _index, value = item
                found.setdefault((str(objid[0]), int(objid[1])), {})[str(prop)] = value
            except (TypeError, ValueError, IndexError):
                continue
        out = []
        for key in chunk:
            values = found.get(key, {})
            name, problem = _name_of(values.get("object-name"))
            raw = values.get("units")
            units = None if raw is None or hasattr(raw, "errorClass") else str(raw)[:60]
            out.append(DiscoveredObject(key[0], key[1], name, units, problem))
        return out


async def _inventory(
    app: Any, address: Address, device_instance: int | None, timeout_s: float
) -> DeviceInventory:
    reader = _Reader(app, address, timeout_s)
    if device_instance is None:
        device_instance = await reader.identify()
    device = ("device", device_instance)
    device_name, _ = _name_of(await reader.read(device, "object-name"))
    wanted = await reader.object_list(device)
    objects: list[DiscoveredObject] = []
    for start in range(0, len(wanted), OBJECTS_PER_REQUEST):
        objects += await reader.describe(wanted[start : start + OBJECTS_PER_REQUEST])
    return DeviceInventory(str(address), device_instance, device_name, objects)


def discover(
    address: str,
    *,
    device_instance: int | None = None,
    local_host: str = "0.0.0.0",
    local_port: int = 47808,
    timeout_s: float = 3.0,
) -> DeviceInventory:
    """The objects of the device at ``address`` (``host:port``; module docstring)."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise BacnetDiscoveryError(f"address {address!r} must be HOST:PORT")
    loop = LoopThread("bacnet-discovery")
    loop.start()
    app = None
    try:
        app = loop.call(
            open_application(
                local_host, local_port, device_instance=CLIENT_INSTANCE, name="twinloop-discovery"
            ),
            timeout_s + 10.0,
        )
        budget = timeout_s * (MAX_OBJECTS // OBJECTS_PER_REQUEST + 10)
        return loop.call(_inventory(app, Address(address), device_instance, timeout_s), budget)
    finally:

        async def close() -> None:
            if app is not None:
                app.close()
            await asyncio.sleep(0)

        loop.call(close(), 10.0)
        loop.stop()


def _setpoint_field(name: str) -> str | None:
    bare = name.removeprefix("setpoint.")
    return bare if bare in SETPOINT_FIELDS else None


def draft_point_map(
    inventory: DeviceInventory,
    catalog: PointCatalog,
    *,
    site: str = "site1",
    priority: int = 10,
) -> tuple[PointMap, list[DiscoveredObject]]:
    """The device's objects as a point map of ``catalog``, and the objects left unmapped
    (module docstring)."""
    heartbeat = next(
        (
            o
            for o in inventory.objects
            if o.object == "analog-value" and "heartbeat" in (o.name or "")
        ),
        None,
    )
    enable = next(
        (
            o
            for o in inventory.objects
            if o.object == "binary-value"
            and "enable" in (o.name or "")
            and "supervis" in (o.name or "")
        ),
        None,
    )
    device: dict[str, Any] = {
        "protocol": "bacnet",
        "address": inventory.address,
        "device_instance": inventory.device_instance,
        "priority": priority,
    }
    if heartbeat is not None and enable is not None:
        device["heartbeat"] = {"object": heartbeat.object, "instance": heartbeat.instance}
        device["supervisory_enable"] = {"object": enable.object, "instance": enable.instance}
    points: list[dict[str, Any]] = []
    unmapped: list[DiscoveredObject] = []
    seen: set[str] = set()
    for obj in inventory.objects:
        ref = {"object": obj.object, "instance": obj.instance}
        name = obj.name or ""
        field_name = _setpoint_field(name)
        rule = catalog.rule(name) if name else None
        if obj in (heartbeat, enable):
            continue
        if (
            obj.object.endswith("-input")
            and rule is not None
            and name not in seen
            and (rule.unit == "bool") == (obj.object in BINARY)
        ):
            points.append({"point": name, "device": "bms", "bacnet": ref, "unit": rule.unit})
            seen.add(name)
            continue
        if obj.object in COMMANDABLE and field_name is not None and f"sp:{field_name}" not in seen:
            unit = SETPOINT_UNITS[field_name]
            if (unit == "bool") == (obj.object in BINARY):
                points.append(
                    {
                        "setpoint": field_name,
                        "device": "bms",
                        "bacnet": ref,
                        "unit": unit,
                        "writable": "heartbeat" in device,
                    }
                )
                seen.add(f"sp:{field_name}")
                continue
        unmapped.append(obj)
    data = {"site": site, "devices": {"bms": device}, "points": points}
    return parse_point_map(data, catalog, source=f"<draft of {inventory.address}>"), unmapped


def inventory_table(inventory: DeviceInventory) -> Sequence[str]:
    """The inventory as lines of text: one object a line."""
    lines = [
        f"device {inventory.device_instance} at {inventory.address}"
        f" ({inventory.device_name or 'no name'}): {len(inventory.objects)} objects"
    ]
    for o in inventory.objects:
        what = o.name if o.name is not None else f"<{o.problem}>"
        units = f"  [{o.units}]" if o.units else ""
        lines.append(f"  {o.object},{o.instance}  {what}{units}")
    return lines

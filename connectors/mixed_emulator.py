"""One emulated plant served as a mixed site: a BACnet/IP BMS and a Modbus TCP plant
controller at once, as a real data center's BMS sits beside its meters, UPS and chiller
plant controller.

:func:`mixed_point_map` drafts the map: the power meters', the UPS's and the chiller plant
controller's points and the chilled- and condenser-water setpoints on the Modbus device
``plant`` (:func:`~connectors.modbus_device.plant_controller_map`), every other point and
the air-side setpoints (supply air, fan speed, economiser) on the BACnet device ``bms``
(:func:`~connectors.point_map.reference_point_map`). Each device keeps its own
heartbeat/enable pair: a field is released by its own device.

:class:`MixedPlantEmulator` serves one :class:`~physics.plant.plant.Plant` through both
devices. The plant is stepped once per step, by the BACnet device (paced by ``speed``, or by
the caller's :meth:`MixedPlantEmulator.step`): before each step the Modbus device applies
its rules (heartbeat, enable) and gives its command, which is merged with the BACnet
device's (each field has one owner); after it, the Modbus device publishes the new readings
into its registers. The device clock is the BACnet device's (``local-date``/``local-time``
on ``calendar``); Modbus has none. :meth:`MixedPlantEmulator.disconnect_modbus` cuts the
Modbus device off the network while its rules go on (a plant controller whose link died:
its heartbeat timeout releases TwinLoop's setpoints); :meth:`~MixedPlantEmulator.reconnect_modbus`
brings it back.
"""

from __future__ import annotations

import logging
from typing import Any, cast

from connectors.bacnet_device import DEFAULT_HEARTBEAT_TIMEOUT_S, BacnetBmsDevice
from connectors.catalog import PointCatalog
from connectors.device_clock import PlantCalendar
from connectors.modbus_device import ModbusPlantDevice, plant_controller_map
from connectors.point_map import PointMap, parse_point_map, reference_point_map
from physics.plant.plant import Plant
from physics.plant.site_control import SETPOINT_FIELDS, SetpointCommand
from twinloop.errors import TwinLoopError

logger = logging.getLogger(__name__)

BACNET_DEVICE = "bms"
MODBUS_DEVICE = "plant"


class MixedEmulatorError(TwinLoopError, ValueError):
    """A point map the mixed emulator cannot serve."""


def mixed_point_map(
    catalog: PointCatalog,
    *,
    bacnet_address: str,
    modbus_address: str,
    device_instance: int = 1001,
    unit_id: int = 1,
    site: str = "site1",
    priority: int = 10,
) -> PointMap:
    """The emulated site's mixed map (module docstring): devices ``bms`` (BACnet) and
    ``plant`` (Modbus), every point and setpoint on exactly one of them."""
    bms = reference_point_map(
        catalog,
        address=bacnet_address,
        device_instance=device_instance,
        site=site,
        priority=priority,
    ).model_dump(mode="json", exclude_none=True)
    plant = plant_controller_map(
        catalog, address=modbus_address, unit_id=unit_id, site=site
    ).model_dump(mode="json", exclude_none=True)
    on_modbus = {_name(e) for e in plant["points"]}
    points = [e for e in bms["points"] if _name(e) not in on_modbus] + plant["points"]
    data = {
        "site": site,
        "devices": {
            BACNET_DEVICE: bms["devices"]["bms"],
            MODBUS_DEVICE: plant["devices"]["plant"],
        },
        "points": points,
    }
    return parse_point_map(data, catalog, source="<mixed>")


def _name(entry: dict[str, Any]) -> str:
    return str(entry["point"]) if "point" in entry else f"setpoint.{entry['setpoint']}"


def merge_commands(
    first: SetpointCommand | None, second: SetpointCommand | None
) -> SetpointCommand | None:
    """One command of two devices' (disjoint fields): the fields of both, the earlier
    expiry; None when neither commands anything."""
    if first is None or second is None:
        return first or second
    values: dict[str, Any] = {}
    for field in SETPOINT_FIELDS:
        a, b = getattr(first, field), getattr(second, field)
        if a is not None and b is not None:
            raise MixedEmulatorError(f"setpoint {field} is commanded by two devices")
        if a is not None or b is not None:
            values[field] = a if a is not None else b
    return SetpointCommand(
        command_id=f"{first.command_id}+{second.command_id}",
        expires_at_s=min(first.expires_at_s, second.expires_at_s),
        **values,
    )


class _SharedPlant:
    """The plant as the BACnet device sees it: stepping it also runs the Modbus device's
    part (its command merged in before, its registers refreshed after); everything else is
    the plant's own."""

    def __init__(self, plant: Plant, emulator: MixedPlantEmulator) -> None:
        self._plant = plant
        self._emulator = emulator

    def __getattr__(self, name: str) -> Any:
        return getattr(self._plant, name)

    def apply_command(self, command: SetpointCommand | None) -> None:
        other = self._emulator.modbus_command()
        self._plant.apply_command(merge_commands(command, other))

    def step(self) -> Any:
        frame = self._plant.step()
        self._emulator.modbus_after_step()
        return frame


class MixedPlantEmulator:
    """One plant behind a BACnet device and a Modbus device at once (module docstring)."""

    def __init__(
        self,
        plant: Plant,
        point_map: PointMap,
        *,
        bacnet_device: str = BACNET_DEVICE,
        modbus_device: str = MODBUS_DEVICE,
        speed: float | None = None,
        heartbeat_timeout_s: float = DEFAULT_HEARTBEAT_TIMEOUT_S,
        epoch_s: float = 0.0,
        calendar: PlantCalendar | None = None,
        cov: bool = True,
    ) -> None:
        for name, protocol in ((bacnet_device, "bacnet"), (modbus_device, "modbus")):
            spec = point_map.devices.get(name)
            if spec is None or spec.protocol != protocol:
                raise MixedEmulatorError(f"the point map has no {protocol} device {name!r}")
        served = {bacnet_device, modbus_device}
        others = sorted({e.device for e in point_map.points} - served)
        if others:
            raise MixedEmulatorError(
                f"device {others[0]!r} of the point map is not served (the emulator serves "
                f"{bacnet_device!r} and {modbus_device!r})"
            )
        self.plant = plant
        self.point_map = point_map
        self.modbus_device = modbus_device
        self.modbus = ModbusPlantDevice(
            plant, point_map, device=modbus_device, heartbeat_timeout_s=heartbeat_timeout_s
        )
        self.bacnet = BacnetBmsDevice(
            cast(Plant, _SharedPlant(plant, self)),  # duck-typed: the plant, stepped shared
            point_map,
            device=bacnet_device,
            speed=speed,
            heartbeat_timeout_s=heartbeat_timeout_s,
            epoch_s=epoch_s,
            calendar=calendar,
            cov=cov,
        )
        self._modbus_running = False

    # ------------------------------------------------------------------ the shared step
    def modbus_command(self) -> SetpointCommand | None:
        """The Modbus device's command for the next step (None once it is stopped)."""
        return self.modbus.command_before_step() if self._modbus_running else None

    def modbus_after_step(self) -> None:
        if self._modbus_running:
            self.modbus.after_step()

    def step(self, n_steps: int = 1) -> None:
        """Advance the plant ``n_steps`` under both devices' setpoints (unpaced)."""
        self.bacnet.step(n_steps)

    @property
    def now_s(self) -> float:
        """Plant seconds (the devices' clock, less the BACnet device's epoch)."""
        return float(self.plant.time_s)

    def control_of(self, field: str) -> str:
        """Who holds ``field`` at the device that serves it: "site", "twinloop"..."""
        entry = self.point_map.entry(f"setpoint.{field}")
        if entry.device == self.modbus_device:
            return self.modbus.control_of(field)
        return self.bacnet.control_of(field)

    def disconnect_modbus(self) -> None:
        """Cut the Modbus device off the network; its rules and the plant go on."""
        self.modbus.disconnect()

    def reconnect_modbus(self) -> None:
        """The Modbus device answers on the network again (the same address)."""
        self.modbus.reconnect()

    def counters(self) -> dict[str, int]:
        """Each device's counters, prefixed ``bacnet.`` and ``modbus.``."""
        return {
            **{f"bacnet.{k}": v for k, v in self.bacnet.counters().items()},
            **{f"modbus.{k}": v for k, v in self.modbus.counters().items()},
        }

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> MixedPlantEmulator:
        """Serve both devices (the Modbus first: the BACnet device's pacing steps it)."""
        self.modbus.start()
        self._modbus_running = True
        try:
            self.bacnet.start()
        except BaseException:
            self.stop()  # the BACnet device's loop thread, and the Modbus device
            raise
        return self

    def stop(self) -> None:
        """Stop the BACnet device (and the pacing) first, then the Modbus device."""
        try:
            self.bacnet.stop()
        finally:
            if self._modbus_running:
                self._modbus_running = False
                self.modbus.stop()

    def __enter__(self) -> MixedPlantEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

"""The interface ingestion and the setpoint writer will use to reach a site over a field
protocol (BACnet/IP now, Modbus TCP next), whatever the protocol.

A :class:`FieldLink` polls every mapped point in one call (:meth:`FieldLink.poll`), writes
setpoints in TwinLoop's slot (:meth:`FieldLink.write`), hands them back
(:meth:`FieldLink.relinquish`) and beats the device's heartbeat
(:meth:`FieldLink.heartbeat`). Nothing here raises for what the network or the device
says: every refusal, error response, wrong type or out-of-range value comes back named in
the results and counted in :meth:`FieldLink.counters`.

A site whose points live on several devices (a BACnet BMS beside Modbus meters and the
chiller plant controller) is one :class:`~connectors.multi_link.MultiLink` over one link per
device: its :class:`PollResult` says, in :attr:`PollResult.devices`, which devices answered,
so a poll that missed one device is never taken for a whole one.

Names are TwinLoop's: a sensor point of the site's catalog, or ``setpoint.<field>`` for the
value a setpoint has at the device; writes take the setpoint fields of
:data:`physics.plant.site_control.SETPOINT_FIELDS`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol

Quality = Literal["good", "bad"]
WriteStatus = Literal["applied", "relinquished", "refused", "withheld", "error"]
""""applied"/"relinquished": the device acknowledged; "refused": the device (or the point
map, before sending) said no; "withheld": not sent because a higher priority holds the
field or supervisory control is off; "error": no answer or an unreadable one."""


@dataclass(frozen=True)
class PointReading:
    """One point as read from the device, in TwinLoop units."""

    point: str
    value: float
    """NaN when the device flagged the point (fault, out of service)."""
    unit: str
    quality: Quality
    read_at: float
    """Wall-clock seconds (Unix) when the poll that read it was answered."""


@dataclass(frozen=True)
class DeviceHealth:
    """One device's part of a composite poll (:class:`~connectors.multi_link.MultiLink`)."""

    ok: bool
    """The device answered as its allow-listed identity."""
    reason: str
    """Why it did not ("" when it did): ``timeout``, ``identity_mismatch``..."""
    points: tuple[str, ...]
    """The device's points (TwinLoop names): stale together when it stops answering."""


@dataclass(frozen=True)
class PollResult:
    """One poll of a device: what was read, what could not be and why."""

    readings: dict[str, PointReading]
    errors: dict[str, str]
    """Point -> named reason (e.g. ``timeout``, ``wrong_type``, ``out_of_range``,
    ``bacnet:object/unknown-object``)."""
    device_ok: bool
    """The device answered as the allow-listed identity."""
    supervisory_enabled: bool | None
    """The device's supervisory enable (None when it could not be read)."""
    overrides: dict[str, int] = field(default_factory=dict)
    """Setpoint field -> the priority above TwinLoop's that holds it."""
    duration_s: float = 0.0
    device_time_s: float | None = None
    """The device's own clock at the poll (:mod:`connectors.device_clock`), where the link
    reads one; None when it does not, or the device gave none it could read."""
    devices: dict[str, DeviceHealth] = field(default_factory=dict)
    """A composite link's devices, answered or not (empty for a single device's link). With
    ``device_ok`` true and a device here not ok, the poll is partial (:attr:`partial`)."""

    @property
    def partial(self) -> bool:
        """Some devices answered and some did not: the poll is not a whole one."""
        return self.device_ok and any(not d.ok for d in self.devices.values())


@dataclass(frozen=True)
class WriteOutcome:
    """What became of one field of a write or relinquish."""

    field: str
    value: float | None
    """None for a relinquish."""
    status: WriteStatus
    detail: str = ""
    """The protocol's own result when refused (``property/value-out-of-range``) or why
    withheld (``override at priority 8``)."""


class FieldLink(Protocol):
    """A site's devices over one field protocol (module docstring)."""

    def poll(self) -> PollResult: ...

    def write(self, fields: Mapping[str, float]) -> dict[str, WriteOutcome]: ...

    def relinquish(self, fields: Iterable[str] | None = None) -> dict[str, WriteOutcome]: ...

    def heartbeat(self) -> bool: ...

    def counters(self) -> dict[str, int]: ...

"""A mixed-protocol site as one :class:`~connectors.field_link.FieldLink`: a BACnet BMS
beside Modbus TCP power meters, UPS and chiller plant controller, all in one point map.

A :class:`MultiLink` holds one link per device of the map (a
:class:`~connectors.bacnet_client.BacnetClient` or a
:class:`~connectors.modbus_client.ModbusClient`; several of each allowed) and is what
ingestion and the setpoint sink drive, as they drive a single device's link:

- :meth:`MultiLink.poll` polls every device at once (one thread each, so a silent device
  costs its own timeout, not the others'), and merges the readings. Each device's health
  is in :attr:`PollResult.devices`; the points of a device that did not answer are in
  ``errors`` with its reason, so ingestion makes only those points stale
  (:class:`~connectors.field_ingestion.FieldIngestor`). The poll answered when any device
  answered; a poll that missed a device is :attr:`~PollResult.partial`, never a whole one.
  A device-level error key of one link (``device``, ``supervisory_enable``) is renamed
  ``<device>:<key>``;
- the supervisory enable is the writable devices' together: off when any is off (the
  controller backs off everywhere: its commands are for the whole plant), unknown when any
  could not be read and none is off. Overrides are merged (a field has one owner);
- the device time (:attr:`PollResult.device_time_s`) is the ``clock_device``'s, a BACnet
  device's ``local-date``/``local-time`` (Modbus carries no clock), or None;
- :meth:`MultiLink.write` sends each field to the device whose map entry owns it (fields
  no device owns are refused ``not_writable``); :meth:`MultiLink.relinquish` likewise, or
  every writable device for all fields; :meth:`MultiLink.heartbeat` beats every writable
  device and is true when all took it;
- :meth:`MultiLink.counters` are each device's, prefixed ``<device>.``; ``poll_errors``
  counts a link that raised instead of answering (a bug or a stuck loop: that device is
  then a failed one, ``error:<exception>``).
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol, TypeVar

from connectors.field_link import (
    DeviceHealth,
    FieldLink,
    PointReading,
    PollResult,
    WriteOutcome,
)
from connectors.point_map import PointMap
from twinloop.errors import TwinLoopError

logger = logging.getLogger(__name__)

_T = TypeVar("_T")


class MultiLinkError(TwinLoopError, ValueError):
    """A composite link the point map and the links given cannot make."""


class DeviceLink(FieldLink, Protocol):
    """One device's link, with its lifecycle (both clients have it)."""

    def start(self) -> object: ...

    def stop(self) -> None: ...


class MultiLink:
    """Every device of a point map, each through its own link (module docstring)."""

    def __init__(
        self,
        point_map: PointMap,
        links: Mapping[str, DeviceLink],
        *,
        clock_device: str | None = None,
    ) -> None:
        if not links:
            raise MultiLinkError("a mixed site needs at least one device")
        unknown = sorted(set(links) - set(point_map.devices))
        if unknown:
            raise MultiLinkError(f"device {unknown[0]!r} is not in the point map")
        missing = sorted(
            {e.device for e in point_map.points} - set(links),
        )
        if missing:
            raise MultiLinkError(f"the point map's device {missing[0]!r} has no link")
        if clock_device is not None:
            spec = point_map.devices.get(clock_device)
            if spec is None or clock_device not in links:
                raise MultiLinkError(f"clock_device {clock_device!r} is not a device of the map")
            if spec.protocol != "bacnet":
                raise MultiLinkError(
                    f"clock_device {clock_device!r} speaks {spec.protocol}: only a BACnet "
                    "device has a clock (local-date/local-time)"
                )
        self.point_map = point_map
        self.links: dict[str, DeviceLink] = dict(links)
        self.clock_device = clock_device
        self.points: dict[str, tuple[str, ...]] = {
            name: tuple(e.name for e in point_map.for_device(name)) for name in self.links
        }
        self.owner: dict[str, str] = {
            e.setpoint: e.device for e in point_map.points if e.setpoint and e.writable
        }
        """Setpoint field -> the device that owns it."""
        self.writable_devices: tuple[str, ...] = tuple(
            name for name in self.links if name in set(self.owner.values())
        )
        self.protocols: dict[str, str] = {
            name: point_map.devices[name].protocol for name in self.links
        }
        self._pool = ThreadPoolExecutor(
            max_workers=len(self.links), thread_name_prefix="multi-link"
        )
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._started: list[str] = []

    def label(self, field: str) -> str:
        """The protocol and device of ``field``'s owner (``modbus plant``), for the audit."""
        device = self.owner.get(field)
        return "field" if device is None else f"{self.protocols[device]} {device}"

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> MultiLink:
        """Start every device's link; one that cannot start stops those already started."""
        try:
            for name, link in self.links.items():
                link.start()
                self._started.append(name)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop every started link (each failure logged, the rest still stopped)."""
        while self._started:
            name = self._started.pop()
            try:
                self.links[name].stop()
            except Exception:
                logger.exception("multi link: stopping %s failed", name)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> MultiLink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _each(
        self, names: Iterable[str], call: Callable[[str], _T]
    ) -> dict[str, _T | BaseException]:
        """``call(name)`` for every device in ``names`` at once; its result or exception."""
        futures = {name: self._pool.submit(call, name) for name in names}
        out: dict[str, _T | BaseException] = {}
        for name, future in futures.items():
            try:
                out[name] = future.result()
            except Exception as exc:  # the link's own bug, or its loop stuck: that device's
                logger.exception("multi link: %s failed", name)
                with self._lock:
                    self._counts[f"{name}.poll_errors"] += 1
                out[name] = exc
        return out

    # ------------------------------------------------------------------ reading
    def poll(self) -> PollResult:
        """Poll every device at once and merge (module docstring)."""
        answers = self._each(self.links, lambda name: self.links[name].poll())
        merged_readings: dict[str, PointReading] = {}
        errors: dict[str, str] = {}
        overrides: dict[str, int] = {}
        devices: dict[str, DeviceHealth] = {}
        enables: list[bool | None] = []
        duration_s = 0.0
        device_time_s: float | None = None
        for name, answer in answers.items():
            points = self.points[name]
            if isinstance(answer, BaseException):
                reason = f"error:{type(answer).__name__}"
                devices[name] = DeviceHealth(False, reason, points)
                errors.update({p: reason for p in points})
                if name in self.writable_devices:
                    enables.append(None)
                continue
            mine = set(points)
            for key, why in answer.errors.items():
                errors[key if key in mine else f"{name}:{key}"] = why
            if answer.device_ok:
                devices[name] = DeviceHealth(True, "", points)
                merged_readings.update({k: v for k, v in answer.readings.items() if k in mine})
                overrides.update(answer.overrides)
            else:
                reason = answer.errors.get("device") or _commonest(answer.errors)
                devices[name] = DeviceHealth(False, reason, points)
                for p in points:
                    errors.setdefault(p, reason)
            if name in self.writable_devices:
                enables.append(answer.supervisory_enabled if answer.device_ok else None)
            duration_s = max(duration_s, answer.duration_s)
            if name == self.clock_device and answer.device_ok:
                device_time_s = answer.device_time_s
        answered = [n for n, d in devices.items() if d.ok]
        down = [n for n, d in devices.items() if not d.ok]
        if not answered:
            errors["device"] = "; ".join(f"{n}: {devices[n].reason}" for n in down)
        enabled: bool | None
        if any(e is False for e in enables):
            enabled = False
        elif any(e is None for e in enables):
            enabled = None
        else:
            enabled = True if enables else None
        with self._lock:
            self._counts["polls"] += 1
            self._counts["partial_polls" if answered and down else "whole_polls"] += bool(answered)
            self._counts["failed_polls"] += not answered
        if answered and down:
            logger.warning(
                "multi link: partial poll: %s not answering (%s)",
                ", ".join(down),
                ", ".join(devices[n].reason for n in down),
            )
        return PollResult(
            readings=merged_readings,
            errors=errors,
            device_ok=bool(answered),
            supervisory_enabled=enabled,
            overrides=overrides,
            duration_s=duration_s,
            device_time_s=device_time_s,
            devices=devices,
        )

    # ------------------------------------------------------------------ writing
    def _by_owner(self, fields: Iterable[str]) -> tuple[dict[str, list[str]], list[str]]:
        groups: dict[str, list[str]] = {}
        orphans: list[str] = []
        for f in fields:
            device = self.owner.get(f)
            if device is None:
                orphans.append(f)
            else:
                groups.setdefault(device, []).append(f)
        return groups, orphans

    def write(self, fields: Mapping[str, float]) -> dict[str, WriteOutcome]:
        """Each field to the device that owns it (module docstring); one outcome each."""
        groups, orphans = self._by_owner(fields)
        outcomes = {f: WriteOutcome(f, fields[f], "refused", "not_writable") for f in orphans}
        sent = self._each(
            groups, lambda name: self.links[name].write({f: fields[f] for f in groups[name]})
        )
        for name, answer in sent.items():
            for f in groups[name]:
                if isinstance(answer, BaseException):
                    detail = f"error:{type(answer).__name__}"
                    outcomes[f] = WriteOutcome(f, fields[f], "error", detail)
                else:
                    outcomes[f] = answer.get(f) or WriteOutcome(f, fields[f], "error", "no outcome")
        return outcomes

    def relinquish(self, fields: Iterable[str] | None = None) -> dict[str, WriteOutcome]:
        """Hand ``fields`` back at their owners (default: every writable device's all)."""
        if fields is None:
            groups: dict[str, list[str]] = {
                name: [f for f, d in self.owner.items() if d == name]
                for name in self.writable_devices
            }
            orphans: list[str] = []
        else:
            groups, orphans = self._by_owner(fields)
        outcomes = {f: WriteOutcome(f, None, "refused", "not_writable") for f in orphans}
        sent = self._each(groups, lambda name: self.links[name].relinquish(groups[name]))
        for name, answer in sent.items():
            for f in groups[name]:
                if isinstance(answer, BaseException):
                    outcomes[f] = WriteOutcome(f, None, "error", f"error:{type(answer).__name__}")
                else:
                    outcomes[f] = answer.get(f) or WriteOutcome(f, None, "error", "no outcome")
        return outcomes

    def heartbeat(self) -> bool:
        """Beat every device with writable points; true when every one took it."""
        beats = self._each(self.writable_devices, lambda name: self.links[name].heartbeat())
        return bool(beats) and all(b is True for b in beats.values())

    def counters(self) -> dict[str, int]:
        """Each device's counters as ``<device>.<counter>``, and the merged polls'."""
        out: dict[str, int] = {}
        for name, link in self.links.items():
            out.update({f"{name}.{k}": v for k, v in link.counters().items()})
        with self._lock:
            out.update(self._counts)
        return out


def _commonest(errors: Mapping[str, str]) -> str:
    """The reason most of a failed device's points give ("no_answer" when none)."""
    if not errors:
        return "no_answer"
    return Counter(errors.values()).most_common(1)[0][0]

"""TwinLoop's BACnet/IP client: polls a device's mapped points, writes in TwinLoop's slot,
hands back by relinquishing, and never fights an operator (a :class:`FieldLink`).

**Allow-list.** BACnet/IP has no authentication. The client talks to one device, the
point map's (``address`` and ``device_instance``): it sends nothing anywhere else (no
Who-Is; devices off 47808 are addressed directly), and every poll asks the device object
for its identifier, so a different device answering at that address is refused
(``identity_mismatch``): its readings are dropped and no write is sent until the right
device answers again. This stops a misconfiguration or a swapped controller, not an
attacker on the BMS network who can forge UDP; that needs BACnet/SC (docs/bacnet.md).

**Polling.** :meth:`BacnetClient.poll` reads every mapped object with ReadPropertyMultiple
(present value and status flags; for setpoints also the current command priority, for the
device its enable), ``objects_per_request`` objects per request, all requests in flight
at once. Each answer is checked before it is believed: the object and property must be
one asked for, the value of the object's type (a number for an analog object, a BinaryPV
for a binary one), finite and, scaled to TwinLoop units, inside the entry's limits. An
answer bacpypes3 cannot decode (one value of the wrong type spoils the whole answer) is
asked again object by object, so a bad object costs only its own reading. A fault or
out-of-service status flag gives a bad-quality reading. Every failure is named in
:attr:`PollResult.errors` and counted: ``timeout``, ``identity_mismatch``, ``wrong_type``,
``non_finite``, ``out_of_range``, ``missing``, ``unexpected_result``, the device's
BACnet error as ``bacnet:<class>/<code>``, ``reject:<reason>``, ``abort:<reason>``.

**COV.** With ``reads`` ``cov`` or ``auto`` the sensor objects are read by COV subscription
instead (:mod:`connectors.bacnet_cov`: lifetimes, renewals, fallback to polling, hostile
notifications); the poll then asks only for the device's identity and ``system-status``
(its health, every period), the enable, the setpoints and the objects still polled, and
reports each subscribed point's latest notified value as a reading of that poll.
The health read also asks for the device object's ``time-of-device-restart`` (and its
``local-date`` and ``local-time``, to check it against): a changed stamp is a restart,
every COV point made stale and subscribed anew in that poll
(:mod:`connectors.bacnet_restart`). A device that does not serve it, answering the
property or the whole request with an error, is asked without it from then on
(``restart_time:unserved``, logged): its restarts are noticed as before, at the next
renewal.

**The device's clock.** Given ``device_clock`` (a device's local date and time to
seconds), every poll also reads the device object's ``local-date`` and ``local-time`` in the
same request as its identity and gives the time in :attr:`PollResult.device_time_s`; a date
or time that is not one (a wildcard, a wrong type, a day off the calendar) gives None and
is counted (``error:clock_unreadable``). Whether to believe it is the ingestor's
(:class:`~connectors.device_clock.DeviceClockGuard`).

**Writes and hand-back.** :meth:`BacnetClient.write` first beats the heartbeat, reads the
fields' current command priority and withholds (never sends) a field a higher priority
holds or any field while the device's supervisory enable is off; the rest are written at
TwinLoop's priority. A value outside the entry's limits is refused before sending. The
device's answer is the outcome: acknowledged, or refused with its BACnet error class and
code. :meth:`BacnetClient.relinquish` writes NULL at TwinLoop's priority: the hand-back.

**Operator override.** Whenever a poll or a write sees a field held above TwinLoop's
priority, the client records the override (``overrides_detected``, a warning naming the
field and priority), relinquishes its own slot in that field at once (``backed_off``) so
the site's control resumes when the operator lets go, and withholds writes to it until
the override is gone (``withheld_override``; ``override_cleared`` when it is).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from bacpypes3.apdu import ErrorRejectAbortNack
from bacpypes3.app import Application
from bacpypes3.pdu import Address
from bacpypes3.primitivedata import Null, ObjectIdentifier, Real
from bacpypes3.vendor import get_vendor_info

from connectors.bacnet_cov import DEFAULT_LIFETIME_S, CovReader, ReadMode
from connectors.bacnet_restart import RESTART_PROPERTY, RestartWatch
from connectors.bacnet_stack import LoopThread, close_application, open_application
from connectors.field_link import PointReading, PollResult, WriteOutcome
from connectors.point_map import BINARY, BacnetRef, DeviceSpec, PointEntry, PointMap
from twinloop.errors import TwinLoopError

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 3.0
DEFAULT_OBJECTS_PER_REQUEST = 25
"""Objects per ReadPropertyMultiple: 25 sensors' answers fit one 1476-byte BACnet/IP APDU
unsegmented, so devices that do not segment answer too."""
CLIENT_INSTANCE = 4_194_301
DECODE_ERROR = "decode_error"
_WALL_GUARD_S = 5.0
"""Added to the per-request timeout for a whole call from another thread."""

COUNTERS: tuple[str, ...] = (
    "polls",
    "read_requests",
    "readings",
    "bad_quality",
    "writes_sent",
    "writes_applied",
    "writes_refused",
    "relinquished",
    "withheld_override",
    "withheld_disabled",
    "refused_out_of_range",
    "heartbeats",
    "heartbeat_errors",
    "overrides_detected",
    "override_cleared",
    "backed_off",
)


class BacnetClientError(TwinLoopError, ValueError):
    """A client the point map cannot make (no such BACnet device...)."""


def _error_name(exc: BaseException) -> str:
    """The protocol's own name of an error, reject or abort answer."""
    error_class = getattr(exc, "errorClass", None)
    error_code = getattr(exc, "errorCode", None)
    if error_class is not None and error_code is not None:
        return f"bacnet:{error_class}/{error_code}"
    reason = getattr(exc, "apduAbortRejectReason", None)
    kind = "reject" if type(exc).__name__.startswith("Reject") else "abort"
    return f"{kind}:{reason}"


class BacnetClient:
    """One allow-listed BACnet device of a point map (module docstring)."""

    def __init__(
        self,
        point_map: PointMap,
        *,
        device: str = "bms",
        local_host: str = "127.0.0.1",
        local_port: int = 47808,
        local_instance: int = CLIENT_INSTANCE,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        objects_per_request: int = DEFAULT_OBJECTS_PER_REQUEST,
        reads: ReadMode = "poll",
        cov_lifetime_s: int = DEFAULT_LIFETIME_S,
        cov_confirmed: bool = False,
        device_clock: Callable[[datetime], float] | None = None,
    ) -> None:
        spec = point_map.devices.get(device)
        if spec is None or spec.protocol != "bacnet" or spec.device_instance is None:
            raise BacnetClientError(f"the point map has no BACnet device {device!r}")
        if not (timeout_s > 0 and 1 <= objects_per_request <= 200):
            raise BacnetClientError("timeout_s must be > 0, objects_per_request in [1, 200]")
        self.point_map = point_map
        self.spec: DeviceSpec = spec
        self.device_instance: int = spec.device_instance
        self.priority = spec.priority
        self.address = Address(f"{spec.host}:{spec.port}")
        self.local_host, self.local_port, self.local_instance = (
            local_host,
            local_port,
            local_instance,
        )
        self.timeout_s = float(timeout_s)
        self.objects_per_request = objects_per_request
        self._entries = point_map.for_device(device)
        self._by_object: dict[tuple[str, int], PointEntry] = {}
        for e in self._entries:
            assert e.bacnet is not None
            self._by_object[(e.bacnet.object, e.bacnet.instance)] = e
        self._setpoints = {e.setpoint: e for e in self._entries if e.setpoint and e.writable}
        assert isinstance(spec.heartbeat, BacnetRef)
        assert isinstance(spec.supervisory_enable, BacnetRef)
        self._heartbeat_ref: BacnetRef = spec.heartbeat
        self._enable_ref: BacnetRef = spec.supervisory_enable
        self._vendor = get_vendor_info(0)
        self._loop = LoopThread(f"bacnet-client-{self.device_instance}")
        self._app: Application | None = None
        self._counts: Counter[str] = Counter({name: 0 for name in COUNTERS})
        self._errors: Counter[str] = Counter()
        self._beat = 0
        self.overrides: dict[str, int] = {}
        """Fields held above TwinLoop's priority now, with the priority."""
        self.supervisory_enabled: bool | None = None
        self.identity_ok = False
        self.device_clock = device_clock
        """The device's local date and time to seconds (module docstring), or None."""
        self.reads = reads
        self._cov = (
            None
            if reads == "poll"
            else CovReader(
                self._entries,
                address=self.address,
                device_instance=self.device_instance,
                mode=reads,
                lifetime_s=cov_lifetime_s,
                confirmed=cov_confirmed,
                timeout_s=self.timeout_s,
            )
        )
        """Sensor reads by COV subscription (:mod:`connectors.bacnet_cov`), unless polling."""
        self._restart = RestartWatch()
        self._ask_restart = self._cov is not None
        """Whether the health read asks for the device's restart stamp (module docstring)."""
        self._restart_served = False
        """Whether the device has answered with its restart stamp once."""

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> BacnetClient:
        self._loop.start()
        self._app = self._loop.call(
            open_application(
                self.local_host,
                self.local_port,
                device_instance=self.local_instance,
                name="twinloop-client",
            ),
            self.timeout_s + _WALL_GUARD_S,
        )
        if self._cov is not None:
            self._call(self._cov.start(self._app))
        return self

    def stop(self) -> None:
        async def close() -> None:
            if self._cov is not None:
                await self._cov.close()
            if self._app is not None:
                await close_application(self._app)
                self._app = None
            await asyncio.sleep(0)

        try:
            self._loop.call(close(), self.timeout_s + _WALL_GUARD_S)
        finally:
            self._loop.stop()

    def __enter__(self) -> BacnetClient:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _call(self, coro: Any) -> Any:
        return self._loop.call(coro, 2 * self.timeout_s + _WALL_GUARD_S)

    @property
    def app(self) -> Application:
        if self._app is None:
            raise BacnetClientError("the BACnet client is not started")
        return self._app

    # ------------------------------------------------------------------ reading
    def _health(self, restart: bool) -> list[str]:
        """The device object's properties read every poll (module docstring)."""
        health = ["object-identifier"] + (["system-status"] if self._cov is not None else [])
        if self.device_clock is not None or restart:
            health += ["local-date", "local-time"]
        return health + ([RESTART_PROPERTY] if restart else [])

    def _optional(self) -> frozenset[str]:
        """The health properties asked only for the restart stamp: a device may lack them."""
        if not self._ask_restart:
            return frozenset()
        return frozenset(self._health(True)) - frozenset(self._health(False))

    def _specs(self) -> list[list[tuple[tuple[str, int], list[str]]]]:
        """The poll's requests: objects and properties, ``objects_per_request`` a chunk;
        the device's identity and its enable first."""
        health = self._health(self._ask_restart)
        items: list[tuple[tuple[str, int], list[str]]] = [
            (("device", self.device_instance), health),
            ((self._enable_ref.object, self._enable_ref.instance), ["present-value"]),
        ]
        for (kind, instance), e in self._by_object.items():
            if self._cov is not None and self._cov.serves((kind, instance)):
                continue
            props = ["present-value", "status-flags"]
            if e.writable:
                props.append("current-command-priority")
            items.append(((kind, instance), props))
        n = self.objects_per_request
        return [items[i : i + n] for i in range(0, len(items), n)]

    async def _rpm(
        self, chunk: Sequence[tuple[tuple[str, int], list[str]]]
    ) -> list[tuple[Any, Any, Any, Any]] | str:
        """One ReadPropertyMultiple; the results, or the name of why there are none."""
        args: list[Any] = []
        for (kind, instance), props in chunk:
            args += [ObjectIdentifier((kind, instance)), props]
        self._counts["read_requests"] += 1
        try:
            result = await asyncio.wait_for(
                self.app.read_property_multiple(self.address, args, vendor_info=self._vendor),
                self.timeout_s,
            )
        except TimeoutError:
            return "timeout"
        except ErrorRejectAbortNack as exc:
            return _error_name(exc)
        except Exception as exc:  # bacpypes3 decoding an answer it cannot read
            # (InvalidTag, DecodingError, ...): the device's bytes, never a reason to stop.
            logger.warning("bacnet client: unreadable answer from %s: %r", self.address, exc)
            return f"{DECODE_ERROR}:{type(exc).__name__}"
        if not isinstance(result, list):
            return "no_answer" if result is None else _error_name(result)
        return result

    async def _poll(self) -> tuple[list[Any], list[tuple[Any, str]]]:
        chunks = self._specs()
        answers = await asyncio.gather(*(self._rpm(c) for c in chunks))
        first = answers[0]
        refusal = ("bacnet:", DECODE_ERROR)
        if (
            self._ask_restart
            and isinstance(first, str)
            and first.startswith(refusal)
            and (not self._restart_served or first.startswith(DECODE_ERROR))
        ):
            # Some devices (bacpypes3's without the property set) refuse a whole request
            # for one property they lack, and one unreadable stamp spoils the whole answer:
            # is it the restart stamp (or its clock)?
            device = ("device", self.device_instance)
            with_stamp = await self._rpm([(device, self._health(True))])
            if not isinstance(with_stamp, str):
                self._restart_served = True
            elif with_stamp.startswith(refusal):
                without = await self._rpm([(device, self._health(False))])
                if not isinstance(without, str):
                    self._unserved(with_stamp)
                    return await self._poll()
        results: list[Any] = []
        failed: list[tuple[Any, str]] = []
        for chunk, answer in zip(chunks, answers, strict=True):
            if isinstance(answer, str) and answer.startswith(DECODE_ERROR) and len(chunk) > 1:
                # One unreadable value spoils its whole answer: ask object by object.
                alone = await asyncio.gather(*(self._rpm([item]) for item in chunk))
                for item, single in zip(chunk, alone, strict=True):
                    if isinstance(single, str):
                        reason = "wrong_type" if single.startswith(DECODE_ERROR) else single
                        failed.append((item[0], reason))
                    else:
                        results += single
            elif isinstance(answer, str):
                failed += [
                    (objid, "wrong_type" if answer.startswith(DECODE_ERROR) else answer)
                    for objid, _ in chunk
                ]
            else:
                results += answer
        return results, failed

    def _unserved(self, why: str) -> None:
        self._ask_restart = False
        unreadable = why.startswith(DECODE_ERROR)
        self._restart.counts[f"restart_time:{'wrong_type' if unreadable else 'unserved'}"] += 1
        logger.warning(
            "bacnet client: device %d does not serve %s (%s): its restarts are noticed at "
            "the next COV renewal only",
            self.device_instance,
            RESTART_PROPERTY,
            why,
        )

    def _restarted(self, health: Mapping[str, Any]) -> bool:
        """Whether the device restarted since the last poll (module docstring)."""
        if not self._ask_restart:
            return False
        value = health.get(RESTART_PROPERTY)
        if value is None:
            self._unserved("no value")
            return False
        self._restart_served = True
        try:
            now: datetime | None = _local_datetime(
                health.get("local-date"), health.get("local-time")
            )
        except (TypeError, ValueError, OverflowError):
            now = None
        return self._restart.see(value, now)

    def poll(self) -> PollResult:
        """Read every mapped point of the device once (module docstring)."""
        started = time.perf_counter()
        results, failed = self._call(self._poll())
        read_at = time.time()
        errors: dict[str, str] = {}
        for objid, reason in failed:
            errors[self._name_of(objid)] = reason
        values = self._collect(results, errors)
        health = values.pop(("device", self.device_instance), {})
        device_ok = health.get("object-identifier") == ("device", self.device_instance)
        if not device_ok and "device" not in errors:
            errors["device"] = "identity_mismatch"
        self.identity_ok = device_ok
        device_time_s = self._device_time(health) if device_ok else None
        enable = values.pop((self._enable_ref.object, self._enable_ref.instance), {})
        enabled = enable.get("present-value")
        self.supervisory_enabled = None if not isinstance(enabled, int) else bool(enabled)
        if self._cov is not None:
            status = health.get("system-status")
            restarted = device_ok and self._restarted(health)
            cov_values, cov_errors = self._call(
                self._cov.refresh(device_ok, None if status is None else str(status), restarted)
            )
            values.update(cov_values)
            errors.update(cov_errors)
        readings: dict[str, PointReading] = {}
        ccp: dict[str, int | None] = {}
        if device_ok:
            for key, entry in self._by_object.items():
                props = values.get(key)
                if props is None:
                    errors.setdefault(entry.name, "missing")
                    continue
                reading = self._reading(entry, props, read_at, errors)
                if reading is not None:
                    readings[entry.name] = reading
                if entry.writable and entry.setpoint is not None:
                    ccp[entry.setpoint] = _priority_of(props.get("current-command-priority"))
        self._note_overrides(ccp)
        for reason in errors.values():
            self._errors[reason] += 1
        self._counts["polls"] += 1
        self._counts["readings"] += len(readings)
        self._counts["bad_quality"] += sum(r.quality == "bad" for r in readings.values())
        return PollResult(
            readings=readings,
            errors=errors,
            device_ok=device_ok,
            supervisory_enabled=self.supervisory_enabled,
            overrides=dict(self.overrides),
            duration_s=time.perf_counter() - started,
            device_time_s=device_time_s,
        )

    def _device_time(self, health: Mapping[str, Any]) -> float | None:
        """The device's local date and time in seconds (module docstring), or None."""
        if self.device_clock is None:
            return None
        try:
            local = _local_datetime(health.get("local-date"), health.get("local-time"))
            return float(self.device_clock(local))
        except (TypeError, ValueError, OverflowError) as exc:
            self._errors["clock_unreadable"] += 1
            logger.debug("bacnet client: unreadable device clock: %s", exc)
            return None

    def _name_of(self, objid: Any) -> str:
        kind, instance = str(objid[0]), int(objid[1])
        if kind == "device":
            return "device"
        if (kind, instance) == (self._enable_ref.object, self._enable_ref.instance):
            return "supervisory_enable"
        entry = self._by_object.get((kind, instance))
        return entry.name if entry is not None else f"{kind},{instance}"

    def _collect(
        self, results: list[Any], errors: dict[str, str]
    ) -> dict[tuple[str, int], dict[str, Any]]:
        """The answers by object and property; unasked or failed ones named in ``errors``."""
        asked = {objid: set(props) for chunk in self._specs() for objid, props in chunk}
        optional = self._optional()
        values: dict[tuple[str, int], dict[str, Any]] = {}
        for item in results:
            try:
                objid, prop, _index, value = item
                key = (str(objid[0]), int(objid[1]))
                prop_name = str(prop)
            except (TypeError, ValueError, IndexError):
                self._errors["unexpected_result"] += 1
                continue
            if key not in asked or prop_name not in asked[key]:
                self._errors["unexpected_result"] += 1
                continue
            if isinstance(value, ErrorRejectAbortNack) or (
                value is not None and hasattr(value, "errorClass")
            ):
                if key[0] == "device" and prop_name in optional:
                    continue  # unserved: no stamp (or no clock to check it by)
                errors[self._name_of(key)] = _error_name(value)
                continue
            if prop_name == "object-identifier":
                try:
                    value = (str(value[0]), int(value[1]))
                except (TypeError, ValueError, IndexError):
                    value = None
            elif prop_name == "present-value" and key[0] in BINARY | {"binary-value"}:
                value = int(value) if isinstance(value, int) and value in (0, 1) else value
            values.setdefault(key, {})[prop_name] = value
        return values

    def _reading(
        self, entry: PointEntry, props: dict[str, Any], read_at: float, errors: dict[str, str]
    ) -> PointReading | None:
        raw = props.get("present-value")
        assert entry.bacnet is not None and entry.limits is not None
        if entry.bacnet.object in BINARY:
            if isinstance(raw, bool) or not isinstance(raw, int) or raw not in (0, 1):
                errors[entry.name] = "wrong_type"
                return None
            value = float(raw)
        else:
            if isinstance(raw, bool) or not isinstance(raw, float | int):
                errors[entry.name] = "wrong_type" if raw is not None else "missing"
                return None
            value = float(raw) * entry.scale
            if not math.isfinite(value):
                errors[entry.name] = "non_finite"
                return None
        low, high = entry.limits
        flags = props.get("status-flags")
        bad = False
        try:
            bad = flags is not None and (bool(flags[1]) or bool(flags[3]))  # fault, out of service
        except (TypeError, IndexError):
            errors[entry.name] = "wrong_type"
            return None
        if bad:
            return PointReading(entry.name, math.nan, entry.unit, "bad", read_at)
        if not low <= value <= high:
            errors[entry.name] = "out_of_range"
            return None
        return PointReading(entry.name, value, entry.unit, "good", read_at)

    # ------------------------------------------------------------------ overrides
    def _note_overrides(self, ccp: Mapping[str, int | None]) -> list[str]:
        """Record the fields held above TwinLoop's priority; back off from new ones.
        Returns the newly overridden fields (their slot is relinquished here)."""
        fresh: list[str] = []
        for field, priority in ccp.items():
            held = priority is not None and priority < self.priority
            if held and field not in self.overrides:
                assert priority is not None
                self.overrides[field] = priority
                self._counts["overrides_detected"] += 1
                fresh.append(field)
                logger.warning(
                    "bacnet: %s overridden at priority %d (TwinLoop's is %d); backing off",
                    field,
                    priority,
                    self.priority,
                )
            elif not held and field in self.overrides:
                del self.overrides[field]
                self._counts["override_cleared"] += 1
                logger.warning("bacnet: the override of %s is gone", field)
        if fresh:
            outcomes = self._call(self._write_all({f: None for f in fresh}))
            self._counts["backed_off"] += sum(o.status == "relinquished" for o in outcomes.values())
        return fresh

    async def _read_priorities(self, fields: Iterable[str]) -> dict[str, int | None] | str:
        chunk = []
        for f in fields:
            ref = self._setpoints[f].bacnet
            assert ref is not None
            chunk.append(((ref.object, ref.instance), ["current-command-priority"]))
        answer = await self._rpm(chunk)
        if isinstance(answer, str):
            return answer
        out: dict[str, int | None] = {}
        for objid, _prop, _index, value in answer:
            entry = self._by_object.get((str(objid[0]), int(objid[1])))
            if entry is not None and entry.setpoint is not None:
                out[entry.setpoint] = _priority_of(value)
        return out

    # ------------------------------------------------------------------ writing
    async def _write_one(self, field: str, value: float | None) -> WriteOutcome:
        entry = self._setpoints[field]
        ref = entry.bacnet
        assert ref is not None
        if value is None:
            raw: Any = Null(())
        elif ref.object in BINARY:
            raw = "active" if value >= 0.5 else "inactive"
        else:
            raw = Real(value / entry.scale)
        self._counts["writes_sent"] += 1
        try:
            answer = await asyncio.wait_for(
                self.app.write_property(
                    self.address,
                    ObjectIdentifier((ref.object, ref.instance)),
                    "present-value",
                    raw,
                    priority=self.priority,
                ),
                self.timeout_s,
            )
        except TimeoutError:
            return WriteOutcome(field, value, "error", "timeout")
        except ErrorRejectAbortNack as exc:
            return WriteOutcome(field, value, "refused", _error_name(exc))
        if answer is not None:
            return WriteOutcome(field, value, "error", f"unexpected answer {str(answer)[:60]}")
        return WriteOutcome(field, value, "relinquished" if value is None else "applied")

    async def _write_all(self, fields: Mapping[str, float | None]) -> dict[str, WriteOutcome]:
        names = list(fields)
        done = await asyncio.gather(*(self._write_one(f, fields[f]) for f in names))
        return dict(zip(names, done, strict=True))

    def heartbeat(self) -> bool:
        """Write the next heartbeat value; True when the device took it."""
        self._beat = (self._beat + 1) % 65536
        ref = self._heartbeat_ref

        async def beat() -> str | None:
            try:
                await asyncio.wait_for(
                    self.app.write_property(
                        self.address,
                        ObjectIdentifier((ref.object, ref.instance)),
                        "present-value",
                        Real(float(self._beat)),
                    ),
                    self.timeout_s,
                )
            except TimeoutError:
                return "timeout"
            except ErrorRejectAbortNack as exc:
                return _error_name(exc)
            return None

        error = self._call(beat())
        if error is not None:
            self._counts["heartbeat_errors"] += 1
            self._errors[error] += 1
            logger.warning("bacnet: heartbeat to %s not taken: %s", self.address, error)
            return False
        self._counts["heartbeats"] += 1
        return True

    def write(self, fields: Mapping[str, float]) -> dict[str, WriteOutcome]:
        """Write ``fields`` at TwinLoop's priority (module docstring); one outcome each."""
        outcomes: dict[str, WriteOutcome] = {}
        to_send: dict[str, float] = {}
        for field, value in fields.items():
            entry = self._setpoints.get(field)
            if entry is None:
                outcomes[field] = WriteOutcome(field, value, "refused", "not_writable")
                continue
            assert entry.limits is not None
            low, high = entry.limits
            if not (math.isfinite(value) and low <= value <= high):
                self._counts["refused_out_of_range"] += 1
                outcomes[field] = WriteOutcome(
                    field, value, "refused", f"out_of_range: {value:g} not in [{low:g}, {high:g}]"
                )
                continue
            to_send[field] = value
        if to_send and not self.identity_ok:
            self.poll()  # the identity is checked before any first write
        if to_send and not self.identity_ok:
            for field, value in to_send.items():
                outcomes[field] = WriteOutcome(field, value, "refused", "identity_mismatch")
            return outcomes
        if to_send:
            self.heartbeat()
            priorities = self._call(self._read_priorities(to_send))
            if isinstance(priorities, dict):
                self._note_overrides(priorities)
        for field in list(to_send):
            value = to_send[field]
            if field in self.overrides:
                self._counts["withheld_override"] += 1
                detail = f"override at priority {self.overrides[field]}"
                outcomes[field] = WriteOutcome(field, value, "withheld", detail)
                del to_send[field]
            elif self.supervisory_enabled is False:
                self._counts["withheld_disabled"] += 1
                outcomes[field] = WriteOutcome(field, value, "withheld", "supervisory disabled")
                del to_send[field]
        if to_send:
            sent = self._call(self._write_all(to_send))
            for outcome in sent.values():
                if outcome.status == "applied":
                    self._counts["writes_applied"] += 1
                else:
                    self._counts["writes_refused"] += 1
                    self._errors[outcome.detail] += 1
            outcomes.update(sent)
        return outcomes

    def relinquish(self, fields: Iterable[str] | None = None) -> dict[str, WriteOutcome]:
        """Write NULL at TwinLoop's priority to ``fields`` (default: every writable one)."""
        names = list(self._setpoints) if fields is None else list(fields)
        unknown = [f for f in names if f not in self._setpoints]
        outcomes = {f: WriteOutcome(f, None, "refused", "not_writable") for f in unknown}
        sent = self._call(self._write_all({f: None for f in names if f in self._setpoints}))
        self._counts["relinquished"] += sum(o.status == "relinquished" for o in sent.values())
        outcomes.update(sent)
        return outcomes

    def counters(self) -> dict[str, int]:
        """The counts of :data:`COUNTERS` and every named error seen (``timeout``,
        ``bacnet:property/value-out-of-range``...)."""
        cov = self._cov.counters() if self._cov is not None else {}
        return {
            **self._counts,
            **cov,
            **self._restart.counts,
            **{f"error:{k}": v for k, v in self._errors.items()},
        }


def _local_datetime(date: Any, time_of_day: Any) -> datetime:
    """A BACnet Date (year - 1900, month, day, weekday) and Time (hour, minute, second,
    hundredths) as one datetime; ValueError for a wildcard (255) or no date at all."""
    if date is None or time_of_day is None:
        raise ValueError("no local date and time")
    year, month, day, _weekday = (int(v) for v in date)
    hour, minute, second, hundredths = (int(v) for v in time_of_day)
    if 255 in (year, month, day, hour, minute, second, hundredths) or hundredths > 99:
        raise ValueError("a wildcard or unspecified date or time")
    return datetime(1900 + year, month, day, hour, minute, second, hundredths * 10_000)


def _priority_of(value: Any) -> int | None:
    """A current-command-priority answer: an OptionalUnsigned (null or a number)."""
    if value is None:
        return None
    if getattr(value, "null", None) is not None:
        return None
    number = getattr(value, "unsigned", value)
    if isinstance(number, bool) or not isinstance(number, int) or not 1 <= number <= 16:
        return None
    return int(number)

"""TwinLoop's Modbus TCP client (pymodbus 3.x): a :class:`~connectors.field_link.FieldLink`
over a point map's Modbus device (meters, UPS, chiller plant controller).

The device is the map's ``address`` and ``unit_id`` (the allow-list; Modbus TCP has no
authentication and no device identity beyond the unit id, see docs/bacnet.md). A poll
reads the mapped registers in as few requests as contiguous addresses allow (function 3
for holding, 4 for input registers, at most 125 registers a request, every request in
flight at once) and the supervisory-enable register. Every value is decoded with its
entry's type and word order, scaled and checked against the entry's limits; a float32 NaN
is a bad-quality reading. Failures are named and counted, never raised: ``timeout``
(no answer, or no connection), ``modbus:<exception>`` for an exception response (e.g.
``modbus:illegal_address``), ``wrong_type`` (words that are not a value of the type),
``non_finite`` and ``out_of_range``.

Writes: a float32 setpoint with function 16 (two registers), after a heartbeat (function 6
on the heartbeat register); a value outside the entry's limits is not sent; while the
device's enable reads 0 writes are withheld. The device's exception response is the
outcome (``modbus:illegal_value`` outside its envelope, ``modbus:device_busy`` without a
heartbeat or while disabled). :meth:`ModbusClient.relinquish` writes NaN, the hand-back.
Modbus has no priority array: an operator takes a setpoint back with the enable.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.constants import ExcCodes
from pymodbus.exceptions import ModbusException

from connectors.bacnet_stack import LoopThread
from connectors.field_link import PointReading, PollResult, WriteOutcome
from connectors.modbus_registers import RegisterError, decode, encode
from connectors.point_map import ModbusRef, PointEntry, PointMap
from twinloop.errors import TwinLoopError

logger = logging.getLogger(__name__)

MAX_REGISTERS = 125
"""The most registers one read may ask for (Modbus application protocol, function 3/4)."""
DEFAULT_TIMEOUT_S = 3.0
_WALL_GUARD_S = 5.0

COUNTERS: tuple[str, ...] = (
    "polls",
    "readings",
    "bad_quality",
    "requests",
    "writes_sent",
    "writes_applied",
    "writes_refused",
    "relinquished",
    "withheld_disabled",
    "refused_out_of_range",
    "heartbeats",
    "heartbeat_errors",
)

Block = tuple[int, int, int, list[tuple[str, ModbusRef]]]
"""(function, first address, register count, [(name, ref)]) of one read request."""


class ModbusClientError(TwinLoopError, ValueError):
    """A client the point map cannot make."""


def _exception_name(code: int) -> str:
    try:
        return f"modbus:{ExcCodes(code).name.lower()}"
    except ValueError:
        return f"modbus:exception_{code}"


def read_blocks(refs: Iterable[tuple[str, ModbusRef]]) -> list[Block]:
    """Group ``refs`` into read requests of contiguous registers of one function."""
    blocks: list[Block] = []
    for name, ref in sorted(refs, key=lambda r: (r[1].function, r[1].address)):
        if blocks:
            fn, first, count, members = blocks[-1]
            if (
                fn == ref.function
                and ref.address <= first + count
                and ref.address + ref.words - first <= MAX_REGISTERS
            ):
                new_count = max(count, ref.address + ref.words - first)
                blocks[-1] = (fn, first, new_count, [*members, (name, ref)])
                continue
        blocks.append((ref.function, ref.address, ref.words, [(name, ref)]))
    return blocks


class ModbusClient:
    """One allow-listed Modbus TCP device of a point map (module docstring)."""

    def __init__(
        self,
        point_map: PointMap,
        *,
        device: str = "plant",
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        spec = point_map.devices.get(device)
        if spec is None or spec.protocol != "modbus" or spec.unit_id is None:
            raise ModbusClientError(f"the point map has no Modbus device {device!r}")
        if not timeout_s > 0:
            raise ModbusClientError("timeout_s must be positive")
        self.point_map = point_map
        self.host, self.port, self.unit_id = spec.host, spec.port, spec.unit_id
        self.timeout_s = float(timeout_s)
        self._entries: dict[str, PointEntry] = {e.name: e for e in point_map.for_device(device)}
        self._setpoints = {
            e.setpoint: e for e in self._entries.values() if e.setpoint and e.writable
        }
        self._beat_ref = spec.heartbeat if isinstance(spec.heartbeat, ModbusRef) else None
        self._enable_ref = (
            spec.supervisory_enable if isinstance(spec.supervisory_enable, ModbusRef) else None
        )
        refs: list[tuple[str, ModbusRef]] = []
        for name, e in self._entries.items():
            assert e.modbus is not None
            refs.append((name, e.modbus))
        if self._enable_ref is not None:
            refs.append(("supervisory_enable", self._enable_ref))
        self._blocks = read_blocks(refs)
        self._loop = LoopThread(f"modbus-client-{self.unit_id}")
        self._client: AsyncModbusTcpClient | None = None
        self._counts: Counter[str] = Counter({name: 0 for name in COUNTERS})
        self._errors: Counter[str] = Counter()
        self._beat = 0
        self.supervisory_enabled: bool | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> ModbusClient:
        self._loop.start()

        async def make() -> AsyncModbusTcpClient:
            return AsyncModbusTcpClient(
                self.host,
                port=self.port,
                timeout=self.timeout_s,
                retries=0,
                reconnect_delay=0,
            )

        self._client = self._loop.call(make(), self.timeout_s + _WALL_GUARD_S)
        return self

    def stop(self) -> None:
        async def close() -> None:
            if self._client is not None:
                self._client.close()
                self._client = None
            await asyncio.sleep(0)

        try:
            self._loop.call(close(), self.timeout_s + _WALL_GUARD_S)
        finally:
            self._loop.stop()

    def __enter__(self) -> ModbusClient:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _call(self, coro: Any) -> Any:
        return self._loop.call(coro, 4 * self.timeout_s + _WALL_GUARD_S)

    async def _connected(self) -> AsyncModbusTcpClient | str:
        client = self._client
        if client is None:
            raise ModbusClientError("the Modbus client is not started")
        if not client.connected:
            try:
                ok = await asyncio.wait_for(client.connect(), self.timeout_s)
            except (TimeoutError, OSError, ModbusException):
                ok = False
            if not ok:
                return "timeout"
        return client

    async def _request(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """One request; its response, or the name of why there is none."""
        client = await self._connected()
        if isinstance(client, str):
            return client
        self._counts["requests"] += 1
        try:
            response = await asyncio.wait_for(
                getattr(client, method)(*args, device_id=self.unit_id, **kwargs),
                self.timeout_s + 1.0,
            )
        except (TimeoutError, ModbusException, OSError) as exc:
            logger.debug("modbus %s to %s:%d failed: %r", method, self.host, self.port, exc)
            return "timeout"
        if response.isError():
            return _exception_name(int(getattr(response, "exception_code", 0)))
        return response

    # ------------------------------------------------------------------ reading
    async def _poll(self) -> list[tuple[Block, Any]]:
        async def read(block: Block) -> Any:
            fn, first, count, _ = block
            method = "read_holding_registers" if fn == 3 else "read_input_registers"
            return await self._request(method, first, count=count)

        answers = await asyncio.gather(*(read(b) for b in self._blocks))
        return list(zip(self._blocks, answers, strict=True))

    def poll(self) -> PollResult:
        """Read every mapped register of the device once (module docstring)."""
        started = time.perf_counter()
        answers = self._call(self._poll())
        read_at = time.time()
        readings: dict[str, PointReading] = {}
        errors: dict[str, str] = {}
        answered = False
        enabled: bool | None = None
        for (_fn, first, count, members), answer in answers:
            if isinstance(answer, str):
                for name, _ in members:
                    errors[name] = answer
                continue
            answered = True
            words = getattr(answer, "registers", None)
            if not isinstance(words, list) or len(words) != count:
                for name, _ in members:
                    errors[name] = "wrong_type"
                continue
            for name, ref in members:
                part = words[ref.address - first : ref.address - first + ref.words]
                try:
                    raw = decode(part, ref.type, ref.word_order)
                except RegisterError:
                    errors[name] = "wrong_type"
                    continue
                if name == "supervisory_enable":
                    enabled = raw != 0 if math.isfinite(raw) else None
                    continue
                reading = self._reading(self._entries[name], raw, read_at, errors)
                if reading is not None:
                    readings[name] = reading
        self.supervisory_enabled = enabled
        for reason in errors.values():
            self._errors[reason] += 1
        self._counts["polls"] += 1
        self._counts["readings"] += len(readings)
        self._counts["bad_quality"] += sum(r.quality == "bad" for r in readings.values())
        return PollResult(
            readings=readings,
            errors=errors,
            device_ok=answered,
            supervisory_enabled=enabled,
            duration_s=time.perf_counter() - started,
        )

    @staticmethod
    def _reading(
        entry: PointEntry, raw: float, read_at: float, errors: dict[str, str]
    ) -> PointReading | None:
        if math.isnan(raw):
            return PointReading(entry.name, math.nan, entry.unit, "bad", read_at)
        value = raw * entry.scale
        if not math.isfinite(value):
            errors[entry.name] = "non_finite"
            return None
        assert entry.limits is not None
        low, high = entry.limits
        if not low <= value <= high:
            errors[entry.name] = "out_of_range"
            return None
        return PointReading(entry.name, value, entry.unit, "good", read_at)

    # ------------------------------------------------------------------ writing
    async def _write_one(self, field: str, value: float | None) -> WriteOutcome:
        entry = self._setpoints[field]
        ref = entry.modbus
        assert ref is not None
        raw = math.nan if value is None else value / entry.scale
        words = encode(raw, ref.type, ref.word_order)
        self._counts["writes_sent"] += 1
        answer = await self._request("write_registers", ref.address, words)
        if isinstance(answer, str):
            status = "error" if answer == "timeout" else "refused"
            return WriteOutcome(field, value, status, answer)  # type: ignore[arg-type]
        return WriteOutcome(field, value, "relinquished" if value is None else "applied")

    async def _write_all(self, fields: Mapping[str, float | None]) -> dict[str, WriteOutcome]:
        names = list(fields)
        done = await asyncio.gather(*(self._write_one(f, fields[f]) for f in names))
        return dict(zip(names, done, strict=True))

    def heartbeat(self) -> bool:
        """Write the next heartbeat value (function 6); True when the device took it."""
        if self._beat_ref is None:
            return False
        self._beat = (self._beat + 1) % 65536
        ref = self._beat_ref
        words = encode(float(self._beat), ref.type, ref.word_order)
        method, args = (
            ("write_register", (ref.address, words[0]))
            if len(words) == 1
            else ("write_registers", (ref.address, words))
        )
        answer = self._call(self._request(method, *args))
        if isinstance(answer, str):
            self._counts["heartbeat_errors"] += 1
            self._errors[answer] += 1
            logger.warning("modbus: heartbeat to %s:%d not taken: %s", self.host, self.port, answer)
            return False
        self._counts["heartbeats"] += 1
        return True

    def write(self, fields: Mapping[str, float]) -> dict[str, WriteOutcome]:
        """Write ``fields`` (module docstring); one outcome each."""
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
        if not to_send:
            return outcomes
        self.heartbeat()
        if self.supervisory_enabled is False:
            for field, value in to_send.items():
                self._counts["withheld_disabled"] += 1
                outcomes[field] = WriteOutcome(field, value, "withheld", "supervisory disabled")
            return outcomes
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
        """Write NaN to ``fields`` (default: every writable one): the hand-back."""
        names = list(self._setpoints) if fields is None else list(fields)
        outcomes = {
            f: WriteOutcome(f, None, "refused", "not_writable")
            for f in names
            if f not in self._setpoints
        }
        sent = self._call(self._write_all({f: None for f in names if f in self._setpoints}))
        self._counts["relinquished"] += sum(o.status == "relinquished" for o in sent.values())
        outcomes.update(sent)
        return outcomes

    def counters(self) -> dict[str, int]:
        """The counts of :data:`COUNTERS` and every named error seen."""
        return {**self._counts, **{f"error:{k}": v for k, v in self._errors.items()}}

"""The live controller's setpoint sink over a field protocol (BACnet/IP, Modbus TCP), and
the operator's override as the field device reports it.

:class:`FieldSetpointSink` is a :class:`control.live.SetpointSink` over a
:class:`~connectors.field_link.FieldLink`:

- :meth:`FieldSetpointSink.write` writes a command's fields in TwinLoop's slot (the link
  beats the device's heartbeat first, so a TwinLoop that writes every period beats every
  period); a field TwinLoop held but the command leaves out is relinquished;
- a field protocol has no expiry, so the hand-back is explicit:
  :meth:`FieldSetpointSink.period_done` relinquishes every field TwinLoop may hold at the
  end of a period in which the controller wrote nothing (a watchdog trip, a rollback, an
  override, the end of a rollback's ramp, a failed write): the site's own control has the
  point back within that period. Should TwinLoop die instead, the device's heartbeat
  timeout releases the slot;
- every field sent, withheld or relinquished is appended to the historian's audit log with
  the protocol's own result in the detail (``bacnet: refused
  bacnet:property/value-out-of-range``, ``modbus: refused modbus:device_busy``; on a mixed
  site the owning device too, ``modbus plant: applied``, from ``labels``); a relinquish is
  an ``applied`` row with no value;
- ``write`` raises :class:`FieldWriteError` when the device refused or did not confirm a
  field (the controller records a write error and stops writing: the next
  :meth:`period_done` hands back). A field withheld because an operator holds it is not an
  error: it is respected and recorded.

:class:`FieldOverride` is the controller's ``override`` source: active while the device's
last poll saw a field held above TwinLoop's priority (the client backed off from it at
once) or the device's supervisory enable off. An override that comes between a poll and a
write is caught by the write (the field is withheld, never sent) and by the next poll.
Each field taken or given back is an ``override`` event (source ``bms``) naming it and the
priority. An override the device could not be asked
about (no answer) is not assumed: a dead device is the watchdog's (stale data), which trips
and hands back.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping

from connectors.field_link import FieldLink, PollResult, WriteOutcome
from connectors.historian import AuditRecord, Event, HistorianStore
from twinloop.errors import TwinLoopError

logger = logging.getLogger(__name__)

OVERRIDE_SOURCE = "bms"
SINK_SOURCE = "field_sink"


class FieldWriteError(TwinLoopError, RuntimeError):
    """A command the field device refused or did not confirm (the message names the fields
    and the protocol's answers)."""


def _audit_outcome(outcome: WriteOutcome) -> str:
    if outcome.status in ("applied", "relinquished"):
        return "applied"
    return "error" if outcome.status == "error" else "refused"


class FieldSetpointSink:
    """Commands to a field device, with the hand-back and the audit (module docstring)."""

    def __init__(
        self,
        link: FieldLink,
        historian: HistorianStore | None,
        *,
        protocol: str,
        actor: str = "controller",
        clock: Callable[[], float] = time.time,
        labels: Callable[[str], str] | None = None,
    ) -> None:
        self.link = link
        self.historian = historian
        self.protocol = protocol
        self.labels = labels
        """Field -> what its audit rows name (a mixed site's ``modbus plant``); else
        ``protocol``."""
        self.actor = actor
        self.clock = clock
        self._lock = threading.Lock()
        self._held: set[str] = set()
        """Fields TwinLoop's slot may hold (applied, or sent without a confirmation)."""
        self.withheld_overrides: dict[str, str] = {}
        """Fields the last write withheld for an operator (field -> why)."""
        self._counts: Counter[str] = Counter()

    @property
    def held(self) -> frozenset[str]:
        with self._lock:
            return frozenset(self._held)

    def write(
        self,
        command_fields: Mapping[str, float],
        expires_at_s: float,
        *,
        issued_at_s: float,
        command_id: str,
    ) -> None:
        fields = {name: float(value) for name, value in command_fields.items()}
        with self._lock:
            dropped = sorted(self._held - set(fields))
        if dropped:
            self.hand_back(issued_at_s, "not in the new command", dropped)
        with self._lock:
            # Held from before the request goes out: a stop (Ctrl-C) that interrupts the
            # write must still hand back what the device may already have applied.
            before = set(self._held)
            self._held.update(fields)
        outcomes = self.link.write(fields)
        failed: list[str] = []
        withheld: dict[str, str] = {}
        with self._lock:
            for name in fields:
                outcome = outcomes.get(name) or WriteOutcome(
                    name, fields[name], "error", "no outcome"
                )
                self._audit(outcome, f"{command_id}.{name}", issued_at_s, expires_at_s)
                self._counts[outcome.status] += 1
                if outcome.status == "applied":
                    self._held.add(name)
                elif outcome.status == "error":
                    self._held.add(name)  # may have been applied: hand it back later
                    failed.append(f"{name}: {outcome.detail or 'error'}")
                elif outcome.status == "withheld":
                    self._held.discard(name)  # the client backed off from an override
                    withheld[name] = outcome.detail
                else:
                    if name not in before:  # refused: the device did not take it
                        self._held.discard(name)
                    failed.append(f"{name}: {outcome.detail or outcome.status}")
            self.withheld_overrides = withheld
        if withheld:
            shown = ", ".join(f"{k} ({v})" for k, v in withheld.items())
            logger.warning("field sink: %s not written: %s", command_id, shown)
        if failed:
            raise FieldWriteError(f"{self.protocol}: {command_id}: " + "; ".join(failed))

    def hand_back(
        self, now_s: float, why: str, fields: Iterable[str] | None = None
    ) -> dict[str, WriteOutcome]:
        """Relinquish ``fields`` (default: every field TwinLoop may hold) and audit it."""
        with self._lock:
            names = sorted(self._held if fields is None else set(fields))
        if not names:
            return {}
        outcomes = self.link.relinquish(names)
        command_id = f"handback-{uuid.uuid4().hex[:12]}"
        with self._lock:
            for name in names:
                outcome = outcomes.get(name) or WriteOutcome(name, None, "error", "no outcome")
                self._audit(outcome, f"{command_id}.{name}", now_s, now_s, why=why)
                if outcome.status == "relinquished":
                    self._held.discard(name)
                    self._counts["relinquished"] += 1
                else:
                    self._counts["relinquish_failed"] += 1
        done = [n for n in names if outcomes.get(n) and outcomes[n].status == "relinquished"]
        left = [n for n in names if n not in done]
        logger.info("field sink: hand-back (%s): relinquished %s", why, ", ".join(done) or "none")
        if left:
            logger.warning("field sink: hand-back (%s) not confirmed for %s", why, ", ".join(left))
        self._event(
            now_s,
            "hand_back",
            f"{why}: relinquished {', '.join(done) or 'none'}"
            + (f"; not confirmed: {', '.join(left)}" if left else ""),
        )
        return outcomes

    def period_done(self, now_s: float, written: Mapping[str, float]) -> None:
        """The controller's period ended; without a write, hand every held field back."""
        if not written and self.held:
            self.hand_back(now_s, "no command this period")

    def counters(self) -> dict[str, int]:
        return dict(self._counts)

    def _audit(
        self,
        outcome: WriteOutcome,
        command_id: str,
        time_s: float,
        expires_at_s: float,
        *,
        why: str = "",
    ) -> None:
        label = self.protocol if self.labels is None else self.labels(outcome.field)
        detail = f"{label}: {outcome.status}"
        if outcome.detail:
            detail += f" {outcome.detail}"
        if outcome.status == "withheld":
            detail += " (not sent)"
        if why:
            detail += f" ({why})"
        if self.historian is None:
            return
        value = math.nan if outcome.value is None else float(outcome.value)
        try:
            self.historian.add_audit(
                AuditRecord(
                    time_s=time_s,
                    command_id=command_id,
                    field=outcome.field,
                    value=value,
                    expires_at_s=expires_at_s,
                    actor=self.actor,
                    outcome=_audit_outcome(outcome),
                    detail=detail,
                )
            )
        except Exception:
            logger.exception("field sink: could not audit %s", command_id)
            raise

    def _event(self, now_s: float, kind: str, message: str) -> None:
        if self.historian is None:
            return
        try:
            self.historian.add_event(Event(now_s, SINK_SOURCE, kind, message))
        except Exception:
            logger.exception("field sink: could not record event %s", kind)


class FieldOverride:
    """The controller's override source over a field device (module docstring)."""

    def __init__(
        self,
        last_poll: Callable[[], PollResult | None],
        historian: HistorianStore | None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._last_poll = last_poll
        self._historian = historian
        self._clock = clock
        self._seen: dict[str, str] = {}

    def holders(self) -> dict[str, str]:
        """Field (or ``supervisory_enable``) -> who holds it, as last seen."""
        held: dict[str, str] = {}
        poll = self._last_poll()
        if poll is not None and poll.device_ok:
            held.update({f: f"priority {p}" for f, p in poll.overrides.items()})
            if poll.supervisory_enabled is False:
                held["supervisory_enable"] = "off"
        return held

    def __call__(self) -> bool:
        held = self.holders()
        if held != self._seen:
            now_s = self._clock()
            for name in sorted(set(held) | set(self._seen)):
                if held.get(name) == self._seen.get(name):
                    continue
                text = (
                    f"{name} held by the BMS ({held[name]}): TwinLoop backs off"
                    if name in held
                    else f"{name} given back by the BMS"
                )
                logger.warning("override: %s", text)
                if self._historian is not None:
                    try:
                        self._historian.add_event(Event(now_s, OVERRIDE_SOURCE, "override", text))
                    except Exception:
                        logger.exception("field override: could not record %s", text)
            self._seen = held
        return bool(held)

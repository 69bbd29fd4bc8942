"""Setpoint write-back: publish a command, check the broker's PUBACK, hear the BMS's echo.

paho-mqtt reports a QoS 1 publish as "published" once the PUBACK arrives, even when the
broker refused it: Mosquitto 2 answers an MQTT 5 publish that the ACL denies with PUBACK
reason code 0x87 (not authorized) and drops the message. :class:`SetpointWriter` therefore
records the reason code from ``on_publish`` (callback API v2) for every message id and
treats any failure code as a refusal: :meth:`SetpointWriter.write` raises
:class:`SetpointRefusedError`, never returns success.

A PUBACK only says the broker took the message (in issue 17 one reached an impostor). The
BMS echoes every command id on ``{prefix}/{site}/acks`` with the value it applied or why it
refused it (:class:`~connectors.payloads.CommandAck`). The writer waits up to
``echo_timeout_s`` for the echo ("applied"; a BMS refusal raises
:class:`SetpointRefusedError`). A command still without an echo is "published": the writer
re-sends it, same id, every ``resend_s`` until its echo arrives or it expires (the BMS
applies an id once and echoes it again), and audits the echo when it comes.

Every attempt and every late echo is appended to the historian's audit log
(:class:`connectors.historian.AuditRecord`; the table refuses UPDATE and DELETE): outcome
"applied", "refused" (the detail says by whom and why), "published" (PUBACK, no echo yet)
or "error" (not confirmed, or no echo before it expired).

After every reconnect the writer also re-publishes, with the same ids, the commands it has
published that may still be in force (``expires_at`` after the newest ``issued_at``). The
BMS never applies an id twice and refuses a command older than the one in force, so a
replay can only fill a gap, never repeat or undo a command. With both, a setpoint's
durability does not rest on the broker saving its queue before a crash.

Echoes are network input: one that does not decode, names no command this writer is waiting
for, or names another field, is counted (``bad_echoes``) and ignored. The connection is a
:class:`connectors.mqtt_service.MqttService`, which guards every callback (an exception
never kills paho's network thread), hands each PUBACK's reason code to the writer and counts
sessions taken over (:meth:`SetpointWriter.counters`).
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt

from connectors.broker import BrokerAddress
from connectors.historian import AuditRecord, HistorianStore
from connectors.mqtt_client import DEFAULT_SESSION_EXPIRY_S
from connectors.mqtt_service import MqttService
from connectors.payloads import CommandAck, PayloadError, SetpointMessage, decode_ack
from connectors.topics import Topics
from twinloop.errors import TwinLoopError

logger = logging.getLogger(__name__)


class SetpointError(RuntimeError, TwinLoopError):
    """A setpoint write that did not succeed (not connected, no PUBACK in time...)."""

    def __init__(self, message: str, result: WriteResult | None = None) -> None:
        super().__init__(message)
        self.result = result


class SetpointRefusedError(SetpointError):
    """The broker answered the publish with a failure reason code (e.g. 0x87), or the BMS
    echoed a refusal (outside its envelope, expired, superseded, override...)."""


@dataclass(frozen=True)
class WriteResult:
    command_id: str
    field: str
    value: float
    expires_at: float
    issued_at: float
    outcome: str
    """"applied" | "published" | "refused" | "error", as in the audit log."""
    reason_code: int | None
    detail: str = ""
    echo: CommandAck | None = None
    """The BMS's echo, when it came in time."""


@dataclass
class _Pending:
    """A command the broker acknowledged and the BMS has not echoed yet."""

    field: str
    topic: str
    message: SetpointMessage
    sent_mono: float
    waited: bool = True
    """A write() is waiting for its echo (it audits it); else the re-send thread does."""
    resends: int = 0


class SetpointWriter:
    """Publishes setpoint commands for one site with QoS 1, checked PUBACKs and the BMS's
    echoes (module docstring)."""

    def __init__(
        self,
        address: BrokerAddress,
        topics: Topics,
        historian: HistorianStore | None,
        *,
        actor: str | None = None,
        client_id: str | None = None,
        timeout_s: float = 5.0,
        echo_timeout_s: float = 0.0,
        resend_s: float = 1.0,
        session_expiry_s: int = DEFAULT_SESSION_EXPIRY_S,
        replay_on_reconnect: bool = True,
        reconnect_min_s: int = 1,
        reconnect_max_s: int = 4,
    ) -> None:
        if echo_timeout_s < 0 or resend_s <= 0:
            raise ValueError("echo_timeout_s must be >= 0 and resend_s positive")
        self.address = address
        self.topics = topics
        self.historian = historian
        self.actor = actor or address.username or "anonymous"
        self.timeout_s = timeout_s
        self.echo_timeout_s = echo_timeout_s
        """How long a write waits for the BMS's echo (0: it returns at the PUBACK and the
        echo is audited when it comes)."""
        self.resend_s = resend_s
        self.session_expiry_s = session_expiry_s
        self.replay_on_reconnect = replay_on_reconnect
        self.client_id = client_id or f"twinloop-setpoints-{topics.site}"
        self._acks: dict[int, Any] = {}
        self._abandoned: set[int] = set()
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._resender: threading.Thread | None = None
        self._mqtt = MqttService(
            address,
            self.client_id,
            name="setpoint writer",
            subscriptions=[(topics.acks, 1)],
            on_message=self._on_message,
            on_ready=self._on_ready,
            on_puback=self._on_puback,
            require_subscriptions=False,  # without the echoes, writes rest on PUBACKs
            session_expiry_s=session_expiry_s,
            reconnect_min_s=reconnect_min_s,
            reconnect_max_s=reconnect_max_s,
        )
        self._write_lock = threading.Lock()
        self._recent: dict[str, tuple[str, bytes, float]] = {}
        """Published commands that may still be in force: id -> (topic, payload, expires)."""
        self._pending: dict[str, _Pending] = {}
        self._echoes: dict[str, CommandAck] = {}
        """Echoes of pending commands not yet taken by their writer."""
        self._heard: OrderedDict[str, CommandAck] = OrderedDict()
        """The latest echoes heard (bounded), for :meth:`echo`."""
        self._newest_issued_s = -math.inf
        self._bms_now_s = -math.inf
        """The BMS's clock in its newest echo: a command expired by it is not re-sent."""
        self._ever_connected = False
        self.replayed = 0
        self.resent = 0
        self.bad_echoes = 0
        self.acks_refused = False
        """The broker refused the subscription to the echoes (writes then rest on PUBACKs)."""

    # ------------------------------------------------------------------ network thread
    def _on_ready(self, client: mqtt.Client, refused: list[Any]) -> None:
        """Subscribed to the echoes (or refused them): after a reconnect, re-publish what may
        still be in force, then count as connected."""
        self.acks_refused = bool(refused)
        if refused:
            logger.error(
                "setpoint writer: broker refused the subscription to %s (%s): writes are "
                "confirmed by PUBACK only",
                self.topics.acks,
                refused,
            )
        if self._ever_connected and self.replay_on_reconnect:
            self._replay(client)
        self._ever_connected = True

    def _replay(self, client: mqtt.Client) -> None:
        with self._cond:
            pending = [
                (cid, topic, payload)
                for cid, (topic, payload, expires) in self._recent.items()
                if expires > self._newest_issued_s
            ]
        for _, topic, payload in pending:
            self._mqtt.publish(topic, payload, qos=1)
        self.replayed += len(pending)
        if pending:
            logger.warning(
                "setpoint writer: re-published %d command(s) that may still be in force after "
                "a reconnect",
                len(pending),
            )

    def _on_puback(self, mid: int, reason_code: Any) -> None:
        with self._cond:
            if mid in self._abandoned:  # a PUBACK after write() gave up on it
                self._abandoned.discard(mid)
                return
            self._acks[mid] = reason_code
            self._cond.notify_all()

    def _on_message(self, message: mqtt.MQTTMessage) -> None:
        # Network input, on paho's network thread: checked before it is believed.
        try:
            if message.topic != self.topics.acks:
                return
            echo = decode_ack(bytes(message.payload))
            with self._cond:
                pending = self._pending.get(echo.id)
                if pending is None or pending.field != echo.field:
                    if echo.id not in self._heard:  # an echo repeated for a re-send is news
                        self.bad_echoes += 1  # to nobody; any other is counted
                    return
                self._echoes[echo.id] = echo
                self._heard[echo.id] = echo
                while len(self._heard) > 10_000:
                    self._heard.popitem(last=False)
                self._cond.notify_all()
        except PayloadError as exc:
            self.bad_echoes += 1
            logger.warning("setpoint writer: unreadable echo: %s", exc)
        except Exception:
            self.bad_echoes += 1
            logger.exception("setpoint writer: failed on an echo")

    # ------------------------------------------------------------------ lifecycle
    def start(self, *, wait_s: float = 10.0) -> SetpointWriter:
        self._stop.clear()
        self._mqtt.start(wait_s=wait_s)
        if self._resender is None:
            self._resender = threading.Thread(
                target=self._resend_loop, name=f"setpoints-{self.topics.site}", daemon=True
            )
            self._resender.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._resender is not None:
            self._resender.join(timeout=10.0)
            self._resender = None
        self._mqtt.stop()

    def __enter__(self) -> SetpointWriter:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def connected(self) -> bool:
        return self._mqtt.connected

    def wait_connected(self, timeout_s: float) -> bool:
        return self._mqtt.wait_connected(timeout_s)

    def counters(self) -> dict[str, int]:
        """The connection's counters (:data:`connectors.mqtt_service.COUNTERS`: connects,
        sessions taken over, publishes refused...) with ``replayed``, ``resent`` and
        ``bad_echoes``."""
        return {
            **self._mqtt.counters(),
            "replayed": self.replayed,
            "resent": self.resent,
            "bad_echoes": self.bad_echoes,
        }

    def pending(self) -> list[str]:
        """Ids of the commands published and not yet echoed by the BMS."""
        with self._cond:
            return list(self._pending)

    def echo(self, command_id: str) -> CommandAck | None:
        """The BMS's echo of ``command_id``, if heard (the latest 10,000 are kept)."""
        with self._cond:
            return self._heard.get(command_id)

    # ------------------------------------------------------------------ writing
    def _message(
        self, field: str, value: float, expires_at: float, issued_at: float, command_id: str | None
    ) -> tuple[str, SetpointMessage]:
        topic = self.topics.setpoint(field)  # ValueError for a field that is not writable
        if not (math.isfinite(value) and math.isfinite(expires_at) and math.isfinite(issued_at)):
            raise ValueError("setpoint value, expires_at and issued_at must be finite")
        if expires_at <= issued_at:
            raise ValueError("a setpoint must expire after it is issued")
        message = SetpointMessage(
            id=command_id or uuid.uuid4().hex,
            value=float(value),
            expires_at=expires_at,
            issued_at=issued_at,
        )
        return topic, message

    @staticmethod
    def _raise_for(result: WriteResult) -> None:
        what = f"{result.field}={result.value}"
        if result.outcome == "refused":
            raise SetpointRefusedError(f"{what} {result.detail}", result)
        if result.outcome not in ("published", "applied"):
            raise SetpointError(f"setpoint {what} not confirmed: {result.detail}", result)

    def write(
        self,
        field: str,
        value: float,
        *,
        expires_at: float,
        issued_at: float,
        command_id: str | None = None,
    ) -> WriteResult:
        """Publish one command, wait for its PUBACK and (up to ``echo_timeout_s``) the BMS's
        echo; audit the outcome.

        Returns the result when the BMS applied it ("applied") or the broker accepted it and
        the echo is still to come ("published", re-sent until it comes); raises
        :class:`SetpointRefusedError` when the broker or the BMS refused it and
        :class:`SetpointError` when it could not be confirmed.
        """
        message = self._message(field, float(value), expires_at, issued_at, command_id)
        return self._write_all([(field, *message)])[0]

    def write_many(
        self,
        values: Mapping[str, float],
        *,
        expires_at: float,
        issued_at: float,
        command_id: str | None = None,
    ) -> list[WriteResult]:
        """Publish one command per field, then wait for all their PUBACKs at once (one round
        trip instead of one per field); audit every outcome. Ids are ``<command_id>.<field>``
        (random without ``command_id``). Raises as :meth:`write` does for the first field that
        was not confirmed, after every outcome is audited."""
        return self._write_all(
            [
                (
                    field,
                    *self._message(
                        field,
                        float(value),
                        expires_at,
                        issued_at,
                        f"{command_id}.{field}" if command_id else None,
                    ),
                )
                for field, value in values.items()
            ]
        )

    def _write_all(self, messages: list[tuple[str, str, SetpointMessage]]) -> list[WriteResult]:
        with self._write_lock:
            sent = [(field, topic, m, self._send(field, topic, m)) for field, topic, m in messages]
            results = [self._confirm(field, topic, m, info) for field, topic, m, info in sent]
        results = self._await_echoes(results)
        for result in results:
            self._audit(result)
        for result in results:
            self._raise_for(result)
        return results

    @staticmethod
    def _result(
        field: str,
        message: SetpointMessage,
        outcome: str,
        code: int | None,
        detail: str,
        echo: CommandAck | None = None,
    ) -> WriteResult:
        return WriteResult(
            message.id,
            field,
            message.value,
            message.expires_at,
            message.issued_at,
            outcome,
            code,
            detail,
            echo,
        )

    @classmethod
    def _echoed(cls, result: WriteResult, echo: CommandAck) -> WriteResult:
        """``result`` as the BMS's ``echo`` settles it."""
        message = SetpointMessage(
            result.command_id, result.value, result.expires_at, result.issued_at
        )
        if echo.outcome == "applied":
            detail = f"applied {echo.value:g} until {echo.expires_at:.0f} (BMS time {echo.ts:.0f})"
            return cls._result(result.field, message, "applied", result.reason_code, detail, echo)
        detail = f"refused by the BMS: {echo.reason}"
        return cls._result(result.field, message, "refused", result.reason_code, detail, echo)

    def _send(self, field: str, topic: str, message: SetpointMessage) -> mqtt.MQTTMessageInfo | str:
        """The publish in flight, or why it could not be sent. The command is pending from
        before the publish, so an echo that beats the PUBACK is not lost."""
        if not self._mqtt.connected:
            return f"not connected to {self.address}"
        with self._cond:
            self._pending[message.id] = _Pending(field, topic, message, time.monotonic())
        info = self._mqtt.publish(topic, message.encode(), qos=1)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            self._forget(message.id)
            return f"publish failed: {mqtt.error_string(info.rc)}"
        return info

    def _forget(self, command_id: str) -> None:
        with self._cond:
            self._pending.pop(command_id, None)
            self._echoes.pop(command_id, None)

    def _await_echoes(self, results: list[WriteResult]) -> list[WriteResult]:
        """Wait up to ``echo_timeout_s`` for the echoes of the published results; those that
        came settle their result, the others are left to the re-send thread."""
        ids = [r.command_id for r in results if r.outcome == "published"]
        if not ids:
            return results
        with self._cond:
            if self.echo_timeout_s > 0:
                self._cond.wait_for(
                    lambda: all(i in self._echoes for i in ids), timeout=self.echo_timeout_s
                )
            echoes = {}
            for cid in ids:
                echo = self._echoes.pop(cid, None) if self.echo_timeout_s > 0 else None
                if echo is not None:
                    self._pending.pop(cid, None)
                    echoes[cid] = echo
                elif cid in self._pending:
                    self._pending[cid].waited = False
        return [
            self._echoed(r, echoes[r.command_id]) if r.command_id in echoes else r for r in results
        ]

    # ------------------------------------------------------------------ re-sending
    def _resend_loop(self) -> None:
        """Audit late echoes and lapsed commands; re-send what is still unechoed."""
        while not self._stop.is_set():
            try:
                self._resend_once()
            except Exception:  # the loop must outlive one bad round
                logger.exception("setpoint writer: re-send round failed")
                self._stop.wait(self.resend_s)

    def _resend_once(self) -> None:
        with self._cond:
            self._cond.wait(timeout=min(self.resend_s, 0.25))
            free = {cid: p for cid, p in self._pending.items() if not p.waited}
            echoed = [
                (free[cid], self._echoes.pop(cid)) for cid in list(self._echoes) if cid in free
            ]
            for p, echo in echoed:
                del self._pending[p.message.id]
                self._bms_now_s = max(self._bms_now_s, echo.ts)
            now_s = max(self._newest_issued_s, self._bms_now_s)
            lapsed = [
                p
                for p in free.values()
                if p.message.id in self._pending and p.message.expires_at <= now_s
            ]
            for p in lapsed:
                del self._pending[p.message.id]
            mono = time.monotonic()
            due = [
                p
                for p in free.values()
                if p.message.id in self._pending and mono - p.sent_mono >= self.resend_s
            ]
            for p in due:
                p.sent_mono, p.resends = mono, p.resends + 1
        for p, echo in echoed:
            self._audit(self._echoed(self._result(p.field, p.message, "published", None, ""), echo))
        for p in lapsed:
            self._audit(
                self._result(
                    p.field, p.message, "error", None, "no echo from the BMS before it expired"
                )
            )
        if due and self._mqtt.connected:
            for p in due:
                self._mqtt.publish(p.topic, p.message.encode(), qos=1)
            self.resent += len(due)

    def _confirm(
        self, field: str, topic: str, message: SetpointMessage, info: mqtt.MQTTMessageInfo | str
    ) -> WriteResult:
        if isinstance(info, str):
            self._forget(message.id)
            return self._result(field, message, "error", None, info)
        with self._cond:
            got = self._cond.wait_for(lambda: info.mid in self._acks, timeout=self.timeout_s)
            reason = self._acks.pop(info.mid, None)
            if not got:
                self._abandoned.add(info.mid)
        if not got or reason is None or reason.is_failure:
            self._forget(message.id)
        if not got or reason is None:
            return self._result(
                field,
                message,
                "error",
                None,
                f"no PUBACK within {self.timeout_s:.1f} s (it may still be delivered before "
                "it expires)",
            )
        code = int(reason.value)
        if reason.is_failure:
            return self._result(
                field,
                message,
                "refused",
                code,
                f"refused by the broker: PUBACK reason 0x{code:02X} {reason.getName()}",
            )
        # 0x10 "no matching subscribers" is a success: the broker accepted the message.
        self._remember(topic, message)
        return self._result(field, message, "published", code, reason.getName())

    def _remember(self, topic: str, message: SetpointMessage) -> None:
        with self._cond:
            self._newest_issued_s = max(self._newest_issued_s, message.issued_at)
            self._recent[message.id] = (topic, message.encode(), message.expires_at)
            for cid in [c for c, v in self._recent.items() if v[2] <= self._newest_issued_s]:
                del self._recent[cid]

    def _audit(self, r: WriteResult) -> None:
        if self.historian is None:
            return
        try:
            self.historian.add_audit(
                AuditRecord(
                    time_s=r.issued_at,
                    command_id=r.command_id,
                    field=r.field,
                    value=r.value,
                    expires_at_s=r.expires_at,
                    actor=self.actor,
                    outcome=r.outcome,
                    detail=r.detail,
                )
            )
        except Exception:
            # The write itself happened (or not) regardless; a lost audit row is an error to
            # surface loudly, not to swallow.
            logger.exception("setpoint writer: could not audit command %s", r.command_id)
            raise

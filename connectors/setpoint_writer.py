"""Setpoint write-back: publish a command, wait for the broker's PUBACK, check its reason code.

paho-mqtt reports a QoS 1 publish as "published" once the PUBACK arrives, even when the
broker refused it: Mosquitto 2 answers an MQTT 5 publish that the ACL denies with PUBACK
reason code 0x87 (not authorized) and drops the message. :class:`SetpointWriter` therefore
records the reason code from ``on_publish`` (callback API v2) for every message id and
treats any failure code as a refusal: :meth:`SetpointWriter.write` raises
:class:`SetpointRefusedError`, never returns success.

Every attempt (published, refused or error) is appended to the historian's audit log
(:class:`connectors.historian.AuditRecord`; the table refuses UPDATE and DELETE).

Mosquitto sends the PUBACK before its next save of the persistence database, so a broker
killed in that instant forgets a message it acknowledged. The writer closes this window at
the application level: after every reconnect it re-publishes, with the same ids, the
commands it has published that may still be in force (``expires_at`` after the newest
``issued_at``). The emulator never applies an id twice and ignores a command older than the
one in force, so a replay can only fill a gap, never repeat or undo a command.
"""

from __future__ import annotations

import logging
import math
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt

from connectors.broker import BrokerAddress, BrokerError
from connectors.historian import AuditRecord, HistorianStore
from connectors.mqtt_client import DEFAULT_SESSION_EXPIRY_S, make_client, start_client, stop_client
from connectors.payloads import SetpointMessage
from connectors.topics import Topics

logger = logging.getLogger(__name__)


class SetpointError(RuntimeError):
    """A setpoint write that did not succeed (not connected, no PUBACK in time...)."""

    def __init__(self, message: str, result: WriteResult | None = None) -> None:
        super().__init__(message)
        self.result = result


class SetpointRefusedError(SetpointError):
    """The broker answered the publish with a failure reason code (e.g. 0x87)."""


@dataclass(frozen=True)
class WriteResult:
    command_id: str
    field: str
    value: float
    expires_at: float
    issued_at: float
    outcome: str
    """"published" | "refused" | "error", as in the audit log."""
    reason_code: int | None
    detail: str = ""


class SetpointWriter:
    """Publishes setpoint commands for one site with QoS 1 and checked PUBACKs."""

    def __init__(
        self,
        address: BrokerAddress,
        topics: Topics,
        historian: HistorianStore | None,
        *,
        actor: str | None = None,
        client_id: str | None = None,
        timeout_s: float = 5.0,
        session_expiry_s: int = DEFAULT_SESSION_EXPIRY_S,
        replay_on_reconnect: bool = True,
        reconnect_min_s: int = 1,
        reconnect_max_s: int = 4,
    ) -> None:
        self.address = address
        self.topics = topics
        self.historian = historian
        self.actor = actor or address.username or "anonymous"
        self.timeout_s = timeout_s
        self.session_expiry_s = session_expiry_s
        self.replay_on_reconnect = replay_on_reconnect
        self.client_id = client_id or f"twinloop-setpoints-{topics.site}"
        self._acks: dict[int, Any] = {}
        self._abandoned: set[int] = set()
        self._cond = threading.Condition()
        self._connected = threading.Event()
        self._client = make_client(
            address,
            self.client_id,
            reconnect_min_s=reconnect_min_s,
            reconnect_max_s=reconnect_max_s,
        )
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_publish = self._on_publish
        self._write_lock = threading.Lock()
        self._recent: dict[str, tuple[str, bytes, float]] = {}
        """Published commands that may still be in force: id -> (topic, payload, expires)."""
        self._newest_issued_s = -math.inf
        self._ever_connected = False
        self.replayed = 0

    # ------------------------------------------------------------------ paho callbacks
    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, props: Any
    ) -> None:
        try:
            if reason_code.is_failure:
                logger.error("setpoint writer: broker refused connection: %s", reason_code)
                return
            if self._ever_connected and self.replay_on_reconnect:
                self._replay(client)
            self._ever_connected = True
            self._connected.set()
        except Exception:
            logger.exception("setpoint writer: on_connect failed")

    def _replay(self, client: mqtt.Client) -> None:
        with self._cond:
            pending = [
                (cid, topic, payload)
                for cid, (topic, payload, expires) in self._recent.items()
                if expires > self._newest_issued_s
            ]
        for _, topic, payload in pending:
            client.publish(topic, payload, qos=1)
        self.replayed += len(pending)
        if pending:
            logger.warning(
                "setpoint writer: re-published %d command(s) that may still be in force after "
                "a reconnect",
                len(pending),
            )

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, props: Any
    ) -> None:
        self._connected.clear()

    def _on_publish(
        self, client: mqtt.Client, userdata: Any, mid: int, reason_code: Any, props: Any
    ) -> None:
        with self._cond:
            if mid in self._abandoned:  # a PUBACK after write() gave up on it
                self._abandoned.discard(mid)
                return
            self._acks[mid] = reason_code
            self._cond.notify_all()

    # ------------------------------------------------------------------ lifecycle
    def start(self, *, wait_s: float = 10.0) -> SetpointWriter:
        start_client(self._client, self.address, session_expiry_s=self.session_expiry_s)
        if not self._connected.wait(wait_s):
            stop_client(self._client)
            raise BrokerError(f"setpoint writer could not connect to {self.address} in {wait_s} s")
        return self

    def stop(self) -> None:
        stop_client(self._client)
        self._connected.clear()

    def __enter__(self) -> SetpointWriter:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout_s: float) -> bool:
        return self._connected.wait(timeout_s)

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
            raise SetpointRefusedError(f"broker refused {what}: {result.detail}", result)
        if result.outcome != "published":
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
        """Publish one command and wait for its PUBACK; audit the outcome.

        Returns the result when the broker accepted it; raises :class:`SetpointRefusedError` when
        the broker refused it and :class:`SetpointError` when it could not be confirmed.
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
            sent = [(field, topic, m, self._send(topic, m)) for field, topic, m in messages]
            results = [self._confirm(field, topic, m, info) for field, topic, m, info in sent]
        for result in results:
            self._audit(result)
        for result in results:
            self._raise_for(result)
        return results

    @staticmethod
    def _result(
        field: str, message: SetpointMessage, outcome: str, code: int | None, detail: str
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
        )

    def _send(self, topic: str, message: SetpointMessage) -> mqtt.MQTTMessageInfo | str:
        """The publish in flight, or why it could not be sent."""
        if not self._connected.is_set():
            return f"not connected to {self.address}"
        info = self._client.publish(topic, message.encode(), qos=1)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            return f"publish failed: {mqtt.error_string(info.rc)}"
        return info

    def _confirm(
        self, field: str, topic: str, message: SetpointMessage, info: mqtt.MQTTMessageInfo | str
    ) -> WriteResult:
        if isinstance(info, str):
            return self._result(field, message, "error", None, info)
        with self._cond:
            got = self._cond.wait_for(lambda: info.mid in self._acks, timeout=self.timeout_s)
            reason = self._acks.pop(info.mid, None)
            if not got:
                self._abandoned.add(info.mid)
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
                field, message, "refused", code, f"PUBACK reason 0x{code:02X} {reason.getName()}"
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

"""The MQTT service base: one paho client, its callbacks, connection state and acknowledgements.

Ingestion (:mod:`connectors.ingestion`), the BMS emulator (:mod:`connectors.bms_emulator`)
and the setpoint writer (:mod:`connectors.setpoint_writer`) each own one
:class:`MqttService` instead of wiring paho themselves. It gives every one of them the
same rules:

- paho-mqtt v2 (callback API v2), MQTT 5, a persistent session: ``clean_start=False`` with
  a ``SessionExpiryInterval`` (MQTT 5 without one ends the session on disconnect and the
  broker drops what it queued), automatic reconnects with exponential backoff;
- *connected* means subscribed: after every (re)connection the service subscribes to its
  topics and is connected only once the broker's SUBACK grants them (a refusal is logged and
  counted, ``subscribe_refused``; ``require_subscriptions=False`` carries on without them);
  ``on_ready`` runs then, before :attr:`connected` is set;
- every callback the owner hands in is guarded: an exception in ``on_message`` (or any
  other hook) is logged and counted (``callback_errors``) and never reaches paho, where it
  would kill the network thread;
- every publish is checked twice. Locally: paho refuses a QoS > 0 publish when its outbox
  is full (``ERR_QUEUE_SIZE``; the outbox is bounded by ``max_outbox``, below the 65,535
  message ids, past which paho refuses every publish whose id is still outstanding), and
  the refusal is counted (``publish_dropped``) rather than lost in an ignored return value;
  ``wait_s`` lets a publisher wait for room instead (back-pressure). At the broker: paho
  reports a publish the broker refused (PUBACK reason code >= 0x80, e.g. an ACL denial) as
  published; the service checks the reason code, logs and counts it (``publish_refused``)
  and hands it to ``on_puback``;
- a session taken over (DISCONNECT reason 0x8E: another process connected with the same
  identity, which the broker binds to the client id) is logged as an error and counted
  (``taken_over``): two processes sharing an identity knock each other off, and each
  takeover makes the publishers re-send what was in flight. Mosquitto 2.0 closes such a
  connection without a DISCONNECT, so a connection lost within :data:`SHORT_CONNECTION_S`
  of being made is logged with that hint, and
  :meth:`connectors.broker.MosquittoBroker.takeovers` counts them from the broker's log;
- QoS 1 messages received with ``manual_ack=True`` are acknowledged by :meth:`ack_many`,
  and only on the connection they came on (:attr:`generation`): after a reconnect a message
  id may name another message, and the broker resends the unacknowledged ones anyway.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.reasoncodes import ReasonCode

from connectors.broker import BrokerAddress, BrokerError
from connectors.mqtt_client import (
    DEFAULT_SESSION_EXPIRY_S,
    BufferedClient,
    make_client,
    start_client,
    stop_client,
)

logger = logging.getLogger(__name__)

SESSION_TAKEN_OVER = 0x8E
"""MQTT 5 DISCONNECT reason: another connection took this client id's session."""
SHORT_CONNECTION_S = 5.0
"""A connection lost sooner than this after it was made is logged with a hint."""
MAX_OUTBOX = 20_000
"""Most QoS > 0 messages paho holds for one service (in flight and queued), well below the
65,535 message ids."""
COUNTERS: tuple[str, ...] = (
    "connects",
    "disconnects",
    "connect_refused",
    "subscribe_refused",
    "taken_over",
    "publish_refused",
    "publish_dropped",
    "publish_failed",
    "callback_errors",
)
"""What every service counts (:meth:`MqttService.counters`)."""

MessageHook = Callable[[mqtt.MQTTMessage], None]
ReadyHook = Callable[[mqtt.Client, list[ReasonCode]], None]
"""Runs once the SUBACK is in, with the refused subscriptions (empty when all granted)."""
PubackHook = Callable[[int, ReasonCode], None]
Will = tuple[str, bytes, int, bool]
"""Last will: topic, payload, QoS, retain."""


class MqttService:
    """One MQTT connection of a TwinLoop service (module docstring).

    ``name`` names the service in logs and errors. The owner's hooks: ``on_message`` (on
    paho's network thread: copy and queue, do not block), ``on_ready`` (after each SUBACK),
    ``on_puback`` (every PUBACK, with its reason code).
    """

    def __init__(
        self,
        address: BrokerAddress,
        client_id: str,
        *,
        name: str,
        subscriptions: Sequence[tuple[str, int]] = (),
        on_message: MessageHook | None = None,
        on_ready: ReadyHook | None = None,
        on_puback: PubackHook | None = None,
        require_subscriptions: bool = True,
        session_expiry_s: int = DEFAULT_SESSION_EXPIRY_S,
        receive_maximum: int | None = None,
        manual_ack: bool = False,
        will: Will | None = None,
        max_outbox: int = MAX_OUTBOX,
        reconnect_min_s: int = 1,
        reconnect_max_s: int = 8,
    ) -> None:
        if not 0 < max_outbox < 65535:
            raise ValueError("max_outbox must lie in 1..65534 (MQTT has 65,535 message ids)")
        self.address = address
        self.client_id = client_id
        self.name = name
        self.subscriptions = tuple(subscriptions)
        self.require_subscriptions = require_subscriptions
        self.session_expiry_s = session_expiry_s
        self.receive_maximum = receive_maximum
        self._on_message_hook = on_message
        self._on_ready_hook = on_ready
        self._on_puback_hook = on_puback
        self.generation = 0
        """Connections so far; an acknowledgement belongs to the connection it came on."""
        self.last_connect_mono: float | None = None
        self._counts: Counter[str] = Counter(dict.fromkeys(COUNTERS, 0))
        self._lock = threading.Lock()
        self._connected = threading.Event()
        self._subscribe_mid: int | None = None
        self._started = False
        self.client: BufferedClient = make_client(
            address, client_id, reconnect_min_s=reconnect_min_s, reconnect_max_s=reconnect_max_s
        )
        self.client.max_queued_messages_set(max_outbox)
        if manual_ack:
            self.client.manual_ack_set(True)
        if will is not None:
            topic, payload, qos, retain = will
            self.client.will_set(topic, payload, qos=qos, retain=retain)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        self.client.on_message = self._on_message

    # ------------------------------------------------------------------ state
    @property
    def connected(self) -> bool:
        """Connected and subscribed (see the module docstring)."""
        return self._connected.is_set()

    def wait_connected(self, timeout_s: float) -> bool:
        return self._connected.wait(timeout_s)

    def count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counts[name] += n

    def counters(self) -> dict[str, int]:
        """The counts of :data:`COUNTERS`."""
        with self._lock:
            return dict(self._counts)

    def _guard(self, hook: Callable[..., None], *args: Any) -> None:
        """Run an owner's hook; an exception is logged and counted, never raised to paho."""
        try:
            hook(*args)
        except Exception:
            logger.exception("%s: %s failed", self.name, getattr(hook, "__name__", "callback"))
            self.count("callback_errors")

    # ------------------------------------------------------------------ paho callbacks
    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, props: Any
    ) -> None:
        try:
            if reason_code.is_failure:
                logger.error("%s: broker refused connection: %s", self.name, reason_code)
                self.count("connect_refused")
                return
            self.generation += 1
            self.last_connect_mono = time.monotonic()
            self.count("connects")
            logger.info(
                "%s connected to %s (session present: %s)",
                self.name,
                self.address,
                getattr(flags, "session_present", None),
            )
            if self.subscriptions:
                _, self._subscribe_mid = client.subscribe(list(self.subscriptions))
            else:
                self._ready(client, [])
        except Exception:
            logger.exception("%s: on_connect failed", self.name)
            self.count("callback_errors")

    def _on_subscribe(
        self, client: mqtt.Client, userdata: Any, mid: int, reason_codes: Any, props: Any
    ) -> None:
        try:
            if mid != self._subscribe_mid:
                return
            refused = [rc for rc in reason_codes if rc.is_failure]
            if refused:
                logger.error("%s: broker refused the subscription: %s", self.name, refused)
                self.count("subscribe_refused")
                if self.require_subscriptions:
                    return
            self._ready(client, refused)
        except Exception:
            logger.exception("%s: on_subscribe failed", self.name)
            self.count("callback_errors")

    def _ready(self, client: mqtt.Client, refused: list[ReasonCode]) -> None:
        if self._on_ready_hook is not None:
            self._guard(self._on_ready_hook, client, refused)
        self._connected.set()

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, props: Any
    ) -> None:
        try:
            self._connected.clear()
            self.count("disconnects")
            if getattr(reason_code, "value", None) == SESSION_TAKEN_OVER:
                self.count("taken_over")
                logger.error(
                    "%s: session taken over: another process connected as %r (the broker "
                    "binds the client id to the identity); give each process its own identity",
                    self.name,
                    self.address.username,
                )
                return
            # A disconnection the service asked for (stop) is news to nobody.
            failure = getattr(reason_code, "is_failure", True)
            log = logger.warning if failure else logger.info
            log("%s disconnected from %s: %s", self.name, self.address, reason_code)
            lasted = time.monotonic() - (self.last_connect_mono or -math.inf)
            if failure and lasted < SHORT_CONNECTION_S:
                # Mosquitto 2.0 closes a taken-over connection without saying why.
                logger.warning(
                    "%s: the connection lasted %.1f s; if this repeats, another process may "
                    "be connecting as %r",
                    self.name,
                    lasted,
                    self.address.username,
                )
        except Exception:
            logger.exception("%s: on_disconnect failed", self.name)

    def _on_publish(
        self, client: mqtt.Client, userdata: Any, mid: int, reason_code: Any, props: Any
    ) -> None:
        try:
            if getattr(reason_code, "is_failure", False):
                self.count("publish_refused")
                logger.error("%s: the broker refused publish %d: %s", self.name, mid, reason_code)
            if self._on_puback_hook is not None:
                self._guard(self._on_puback_hook, mid, reason_code)
        except Exception:
            logger.exception("%s: on_publish failed", self.name)
            self.count("callback_errors")

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        hook = self._on_message_hook
        if hook is None:
            return
        try:
            hook(message)
        except Exception:  # network input: nothing may raise into paho's network thread
            logger.exception("%s: on_message failed", self.name)
            self.count("callback_errors")

    # ------------------------------------------------------------------ sending
    def publish(
        self,
        topic: str,
        payload: bytes,
        qos: int = 0,
        retain: bool = False,
        *,
        wait_s: float = 0.0,
    ) -> mqtt.MQTTMessageInfo:
        """Publish and check paho's answer. A full outbox waits up to ``wait_s`` for room,
        then counts ``publish_dropped``; a QoS > 0 message while disconnected is kept and
        sent after the reconnect; anything else that fails counts ``publish_failed``. The
        broker's verdict comes later, in the PUBACK (``publish_refused``, ``on_puback``)."""
        info = self.client.publish(topic, payload, qos, retain)
        if info.rc == MQTTErrorCode.MQTT_ERR_QUEUE_SIZE and wait_s > 0:
            deadline = time.monotonic() + wait_s
            while info.rc == MQTTErrorCode.MQTT_ERR_QUEUE_SIZE and time.monotonic() < deadline:
                time.sleep(0.001)
                info = self.client.publish(topic, payload, qos, retain)
        rc = info.rc
        if rc == MQTTErrorCode.MQTT_ERR_SUCCESS or (rc == MQTTErrorCode.MQTT_ERR_NO_CONN and qos):
            return info
        counter = "publish_dropped" if rc == MQTTErrorCode.MQTT_ERR_QUEUE_SIZE else "publish_failed"
        with self._lock:
            self._counts[counter] += 1
            n = self._counts[counter]
        if n == 1 or n % 1000 == 0:
            logger.warning(
                "%s: publish on %s not sent (%s; %d so far)",
                self.name,
                topic,
                mqtt.error_string(rc),
                n,
            )
        return info

    def ack_many(self, mids: Iterable[int], generation: int) -> int:
        """PUBACK the received QoS 1 messages ``mids`` (``manual_ack=True``) if they came on
        connection ``generation``, the current one; returns how many were acknowledged."""
        if generation != self.generation:
            return 0
        return self.client.ack_many(mids)

    # ------------------------------------------------------------------ lifecycle
    def start(self, *, wait_s: float | None = 10.0) -> MqttService:
        """Connect in the background; wait up to ``wait_s`` for the first connection
        (``BrokerError`` then, the client stopped). ``None``: do not wait."""
        if not self._started:
            start_client(
                self.client,
                self.address,
                session_expiry_s=self.session_expiry_s,
                receive_maximum=self.receive_maximum,
            )
            self._started = True
        if wait_s is not None and not self._connected.wait(wait_s):
            self.stop()
            raise BrokerError(f"{self.name} could not connect to {self.address} within {wait_s} s")
        return self

    def stop(self) -> None:
        """Disconnect cleanly (the persistent session stays on the broker) and stop paho's
        thread."""
        if self._started:
            stop_client(self.client)
            self._started = False
        self._connected.clear()

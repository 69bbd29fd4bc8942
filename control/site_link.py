"""The live controller's two links to the site over MQTT, built on the connectors:

* :class:`MqttSetpointSink` — the :class:`~control.live.SetpointSink` over the connectors'
  :class:`~connectors.setpoint_writer.SetpointWriter` (QoS 1, PUBACK reason code checked,
  every write in the historian's audit log). Each field of a command is its own message
  ``<command id>.<field>`` with the command's expiry.
* :class:`OverrideMonitor` — follows the site's retained operator-override topic. It fails
  safe: until it has a connection, after losing it, or on a payload it cannot read, it
  reports the override as active, so the controller never writes while it cannot see it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

import paho.mqtt.client as mqtt

from connectors.broker import BrokerAddress
from connectors.mqtt_client import make_client, start_client, stop_client
from connectors.payloads import PayloadError, decode_override
from connectors.setpoint_writer import SetpointWriter
from connectors.topics import Topics

logger = logging.getLogger(__name__)

SETTLE_S = 0.3
"""After subscribing, how long to wait for a retained override before trusting there is none."""


class MqttSetpointSink:
    """Writes a command's fields through a started :class:`SetpointWriter`."""

    def __init__(self, writer: SetpointWriter) -> None:
        self.writer = writer

    def write(
        self,
        command_fields: Mapping[str, float],
        expires_at_s: float,
        *,
        issued_at_s: float,
        command_id: str,
    ) -> None:
        # All fields in flight at once, one wait for their PUBACKs; ids <command_id>.<field>.
        self.writer.write_many(
            {name: float(value) for name, value in command_fields.items()},
            expires_at=expires_at_s,
            issued_at=issued_at_s,
            command_id=command_id,
        )


class OverrideMonitor:
    """The site's operator override as a fail-safe flag (see the module docstring)."""

    def __init__(self, address: BrokerAddress, topics: Topics, *, client_id: str | None = None):
        self.address = address
        self.topics = topics
        self._connected = threading.Event()
        self._lock = threading.Lock()
        self._active: bool | None = None
        self._readable = True
        self.by = ""
        self._client = make_client(address, client_id or f"twinloop-override-{topics.site}")
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.on_subscribe = self._on_subscribe
        self._ready_at = float("inf")

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, props: Any
    ) -> None:
        try:
            if reason_code.is_failure:
                logger.error("override monitor: broker refused connection: %s", reason_code)
                return
            client.subscribe(self.topics.override, qos=1)
        except Exception:
            logger.exception("override monitor: on_connect failed")

    def _on_subscribe(
        self, client: mqtt.Client, userdata: Any, mid: int, reason_codes: Any, props: Any
    ) -> None:
        # The retained override follows the SUBACK; give it a moment before trusting "none".
        self._ready_at = time.monotonic() + SETTLE_S
        self._connected.set()

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, props: Any
    ) -> None:
        self._connected.clear()
        self._ready_at = float("inf")

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            override = decode_override(bytes(message.payload))
        except PayloadError as exc:
            logger.error("override monitor: unreadable override (%s); assuming active", exc)
            with self._lock:
                self._readable = False
            return
        except Exception:
            logger.exception("override monitor: failed on a message; assuming active")
            with self._lock:
                self._readable = False
            return
        with self._lock:
            self._readable = True
            self._active = override.active
            self.by = override.by
        logger.warning(
            "operator override %s%s",
            "active" if override.active else "released",
            f" by {override.by}" if override.by else "",
        )

    def start(self, *, wait_s: float = 10.0) -> OverrideMonitor:
        # No persistent session: the retained override arrives on every subscribe.
        start_client(self._client, self.address, session_expiry_s=0)
        if self._connected.wait(wait_s):
            time.sleep(SETTLE_S)
        return self

    def stop(self) -> None:
        stop_client(self._client)
        self._connected.clear()

    def __call__(self) -> bool:
        """Whether the controller must not write now."""
        if not self._connected.is_set() or time.monotonic() < self._ready_at:
            return True
        with self._lock:
            return not self._readable or bool(self._active)

"""Builds the paho-mqtt clients TwinLoop's services use (like Home Assistant's MqttClientSetup).

Every client: paho-mqtt v2 callback API v2, MQTT 5, username/password, optional TLS with a CA
file, automatic reconnect with exponential backoff (``loop_start`` + ``connect_async``) and,
for services that must not lose messages, a persistent session: ``clean_start=False`` with a
``SessionExpiryInterval`` (MQTT 5 without one ends the session on disconnect and the broker
drops what it queued for the client).
"""

from __future__ import annotations

import logging
import ssl
import threading

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from connectors.broker import BrokerAddress, BrokerError

logger = logging.getLogger(__name__)

DEFAULT_SESSION_EXPIRY_S = 3600


def make_client(
    address: BrokerAddress,
    client_id: str,
    *,
    reconnect_min_s: int = 1,
    reconnect_max_s: int = 8,
) -> mqtt.Client:
    """A configured, not yet connected MQTT 5 client for ``address``."""
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5,
    )
    if address.username is not None:
        client.username_pw_set(address.username, address.password)
    if address.ca_file is not None:
        client.tls_set(ca_certs=str(address.ca_file), tls_version=ssl.PROTOCOL_TLS_CLIENT)
    client.reconnect_delay_set(min_delay=reconnect_min_s, max_delay=reconnect_max_s)
    # An exception in a user callback must not kill paho's network thread; our callbacks
    # catch their own, this is the second line of defence.
    client.suppress_exceptions = True
    return client


def connect_properties(session_expiry_s: int) -> Properties:
    """CONNECT properties with a session expiry interval (0 ends the session on disconnect)."""
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = int(session_expiry_s)
    return props


def start_client(
    client: mqtt.Client,
    address: BrokerAddress,
    *,
    session_expiry_s: int = DEFAULT_SESSION_EXPIRY_S,
) -> None:
    """Connect in the background (paho's network thread retries with backoff)."""
    client.connect_async(
        address.host,
        address.port,
        keepalive=address.keepalive_s,
        clean_start=False,
        properties=connect_properties(session_expiry_s),
    )
    client.loop_start()


def wait_connected(client: mqtt.Client, connected: threading.Event, timeout_s: float) -> None:
    """Wait until ``connected`` is set (by the caller's on_connect) or raise BrokerError."""
    if not connected.wait(timeout_s):
        raise BrokerError(f"no MQTT connection within {timeout_s:.1f} s")


def stop_client(client: mqtt.Client) -> None:
    """Disconnect cleanly (the persistent session stays on the broker) and stop the thread."""
    try:
        client.disconnect()
    finally:
        client.loop_stop()

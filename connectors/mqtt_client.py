"""Builds the paho-mqtt clients TwinLoop's services use (like Home Assistant's MqttClientSetup).

Every client: paho-mqtt v2 callback API v2, MQTT 5, username/password, optional TLS with a CA
file, automatic reconnect with exponential backoff (``loop_start`` + ``connect_async``) and,
for services that must not lose messages, a persistent session: ``clean_start=False`` with a
``SessionExpiryInterval`` (MQTT 5 without one ends the session on disconnect and the broker
drops what it queued for the client).

:class:`BufferedClient` is paho's client with one change on the receive path: paho reads a
packet with three or more ``recv`` calls (command byte, length bytes, body) and goes back to
``select`` after each packet. Its socket is wrapped so that one ``recv`` takes up to
:data:`RECV_CHUNK_BYTES` from the kernel and the packets are cut out of that buffer; the
wrapper reports what it holds through ``pending()``, which paho's loop already honours for
TLS sockets (no wait in ``select`` while bytes are pending), and ``loop_read`` carries on
while whole packets are buffered. Telemetry bursts are then read at a fraction of the
system calls. Its TCP socket also sets ``TCP_NODELAY`` (as the broker does, see
:mod:`connectors.broker`): with Nagle's algorithm a small packet that follows another
unacknowledged one waits for the peer's delayed ACK, 40 ms on Linux, which was most of the
sensor → setpoint latency.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import struct
import threading
from collections.abc import Iterable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.client import PUBACK, sockpair_data
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from connectors.broker import BrokerAddress, BrokerError

logger = logging.getLogger(__name__)

DEFAULT_SESSION_EXPIRY_S = 3600
RECV_CHUNK_BYTES = 256 * 1024
"""Largest single read from the kernel into a :class:`BufferedClient`'s buffer."""
READ_BURST_PACKETS = 2000
"""Most packets one ``loop_read`` handles from the buffer before paho's loop runs again
(writes, keep-alive)."""


class BufferedSocket:
    """A connected socket (plain or TLS) whose ``recv`` is served from large reads.

    Errors of the underlying ``recv`` (``BlockingIOError``, ``ssl.SSLWantReadError``, a
    closed connection's ``b""``) reach the caller only when the buffer is empty, so paho
    sees the same protocol as with the bare socket. Everything else is delegated.
    """

    def __init__(self, sock: Any, chunk_bytes: int = RECV_CHUNK_BYTES) -> None:
        self._sock = sock
        self._chunk = chunk_bytes
        self._buf = b""
        self._pos = 0

    def recv(self, bufsize: int) -> bytes:
        if self._pos >= len(self._buf):
            data = self._sock.recv(max(bufsize, self._chunk))
            if len(data) <= bufsize:  # small read or end of stream: hand it over as it is
                return bytes(data)
            self._buf, self._pos = bytes(data), 0
        end = self._pos + bufsize
        out = self._buf[self._pos : end]
        self._pos = min(end, len(self._buf))
        return out

    def pending(self) -> int:
        """Bytes already read and not yet handed out (plus the TLS layer's own)."""
        inner = self._sock.pending() if hasattr(self._sock, "pending") else 0
        return len(self._buf) - self._pos + int(inner)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class BufferedClient(mqtt.Client):
    """paho's client reading through a :class:`BufferedSocket` (see the module docstring)."""

    def _create_socket(self) -> Any:
        sock = super()._create_socket()
        if self._transport == "websockets":
            return sock
        if isinstance(sock, socket.socket) and sock.family != socket.AF_UNIX:
            # TCP, plain or TLS: no Nagle delay on small packets (commands, PUBACKs)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return BufferedSocket(sock)

    def ack_many(self, mids: Iterable[int]) -> int:
        """Acknowledge received QoS 1 messages (``manual_ack_set(True)``) in one go: one
        PUBACK per id, queued together, and one wake-up of the network thread (paho's
        ``ack`` wakes it once per message). Safe from any thread, as ``publish`` is. Returns
        the number queued."""
        count = 0
        for mid in mids:
            packet = struct.pack("!BBH", PUBACK, 2, mid)  # reason 0x00, no properties
            self._out_packet.append(
                {
                    "command": PUBACK,
                    "mid": mid,
                    "qos": 0,
                    "pos": 0,
                    "to_process": len(packet),
                    "packet": packet,
                    "info": None,
                }
            )
            count += 1
        if not count:
            return 0
        if self._sockpairW is not None:
            with contextlib.suppress(BlockingIOError):
                self._sockpairW.send(sockpair_data)
        self._call_socket_register_write()
        return count

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        rc = super().loop_read(max_packets)
        for _ in range(READ_BURST_PACKETS):
            sock = self._sock
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or not isinstance(sock, BufferedSocket):
                break
            if not sock.pending():
                break
            rc = super().loop_read(max_packets)
        return rc


def make_client(
    address: BrokerAddress,
    client_id: str,
    *,
    reconnect_min_s: int = 1,
    reconnect_max_s: int = 8,
) -> BufferedClient:
    """A configured, not yet connected MQTT 5 client for ``address``."""
    client = BufferedClient(
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


def connect_properties(session_expiry_s: int, receive_maximum: int | None = None) -> Properties:
    """CONNECT properties with a session expiry interval (0 ends the session on disconnect)
    and, if given, the most unacknowledged QoS 1 messages the broker may send at once (a
    client that acknowledges only after storing needs room for a whole batch)."""
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = int(session_expiry_s)
    if receive_maximum is not None:
        props.ReceiveMaximum = max(1, min(65535, int(receive_maximum)))
    return props


def start_client(
    client: mqtt.Client,
    address: BrokerAddress,
    *,
    session_expiry_s: int = DEFAULT_SESSION_EXPIRY_S,
    receive_maximum: int | None = None,
) -> None:
    """Connect in the background (paho's network thread retries with backoff)."""
    client.connect_async(
        address.host,
        address.port,
        keepalive=address.keepalive_s,
        clean_start=False,
        properties=connect_properties(session_expiry_s, receive_maximum),
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

"""A lean MQTT 5 QoS 1 load generator for the ingestion benchmark: pre-encoded PUBLISH
packets over one plain socket, a window of in-flight messages as large as the broker's
Receive Maximum, every PUBACK read and its reason code checked.

Why not paho here: on the 2-core sandbox the benchmark's paho publishers took as much CPU
as ingestion itself (54 µs per message, RESULTS.md issue 17), so the measured rate was the
machine's ceiling for publishers, broker and ingestion together. On a site the publishers
are the BMS gateways, on other machines. This generator costs a few µs per message, so what
is measured is the broker and ingestion. It is load for a benchmark, not a product client:
no TLS, no reconnect, no session resumption.
"""

from __future__ import annotations

import select
import socket
import struct
from collections.abc import Iterable

CONNACK, PUBACK, DISCONNECT = 0x20, 0x40, 0xE0
RECEIVE_MAXIMUM = 0x21


class MqttLoadError(RuntimeError):
    """The broker refused the connection or a message, or the stream broke."""


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _utf8(text: str) -> bytes:
    data = text.encode()
    return struct.pack("!H", len(data)) + data


def connect_packet(client_id: str, username: str | None, password: str | None) -> bytes:
    """CONNECT, MQTT 5, clean start, keepalive 60 s, no properties."""
    flags = 0x02 | (0x80 if username is not None else 0) | (0x40 if password is not None else 0)
    variable = _utf8("MQTT") + bytes([5, flags]) + struct.pack("!H", 60) + b"\x00"
    payload = _utf8(client_id)
    payload += _utf8(username) if username is not None else b""
    payload += _utf8(password) if password is not None else b""
    body = variable + payload
    return b"\x10" + _varint(len(body)) + body


def publish_packet(topic: str, payload: bytes, packet_id: int) -> bytes:
    """PUBLISH at QoS 1 with no properties."""
    body = _utf8(topic) + struct.pack("!H", packet_id) + b"\x00" + payload
    return b"\x32" + _varint(len(body)) + body


class _Reader:
    """Whole MQTT packets out of a byte stream."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = bytearray()

    def packets(self, block: bool) -> list[tuple[int, bytes]]:
        """Every whole packet now buffered, reading once (waiting if ``block``)."""
        ready, _, _ = select.select([self.sock], [], [], 30.0 if block else 0.0)
        if ready:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise MqttLoadError("the broker closed the connection")
            self.buffer += chunk
        elif block:
            raise MqttLoadError("no answer from the broker for 30 s")
        out: list[tuple[int, bytes]] = []
        while len(self.buffer) >= 2:
            length, shift, i = 0, 0, 1
            while True:
                if i >= len(self.buffer):
                    return out
                byte = self.buffer[i]
                length |= (byte & 0x7F) << shift
                shift, i = shift + 7, i + 1
                if not byte & 0x80:
                    break
            if len(self.buffer) < i + length:
                return out
            out.append((self.buffer[0] & 0xF0, bytes(self.buffer[i : i + length])))
            del self.buffer[: i + length]
        return out


def _receive_maximum(connack: bytes) -> int:
    """The broker's Receive Maximum from a CONNACK body (65,535 when not given)."""
    if len(connack) < 2 or connack[1] != 0:
        reason = connack[1] if len(connack) > 1 else -1
        raise MqttLoadError(f"connection refused, reason code {reason:#x}")
    props = connack[3:]  # after flags, reason and the properties' length (< 128 here)
    i = 0
    while i < len(props):
        ident = props[i]
        if ident == RECEIVE_MAXIMUM:
            return int(struct.unpack("!H", props[i + 1 : i + 3])[0])
        # Skip one property: the ones a CONNACK may carry are bytes, 2- or 4-byte ints,
        # strings; only Receive Maximum matters here, and it comes early in Mosquitto's.
        if ident in (0x24, 0x25, 0x28, 0x29, 0x2A):
            i += 2
        elif ident in (0x13, 0x21, 0x22):
            i += 3
        elif ident in (0x11, 0x27):
            i += 5
        else:
            break
    return 65_535


def publish_all(
    host: str,
    port: int,
    username: str | None,
    password: str | None,
    client_id: str,
    messages: Iterable[tuple[str, bytes]],
) -> int:
    """Publish every ``(topic, payload)`` at QoS 1 and wait for every PUBACK; the number
    acknowledged with success. Raises :class:`MqttLoadError` on a refused message."""
    packets = [
        publish_packet(topic, payload, k % 65_535 + 1)
        for k, (topic, payload) in enumerate(messages)
    ]
    with socket.create_connection((host, port), timeout=30.0) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(connect_packet(client_id, username, password))
        reader = _Reader(sock)
        answer: list[tuple[int, bytes]] = []
        while not answer:
            answer = reader.packets(block=True)
        kind, body = answer[0]
        if kind != CONNACK:
            raise MqttLoadError(f"expected CONNACK, got packet type {kind:#x}")
        window = _receive_maximum(body)
        sent = acked = 0
        while acked < len(packets):
            room = min(window - (sent - acked), len(packets) - sent)
            if room > 0:
                sock.sendall(b"".join(packets[sent : sent + room]))
                sent += room
            for kind, body in reader.packets(block=True):
                if kind != PUBACK:
                    continue
                if len(body) > 2 and body[2] >= 0x80:
                    raise MqttLoadError(f"PUBACK reason code {body[2]:#x}: message refused")
                acked += 1
        sock.sendall(bytes([DISCONNECT, 0]))
    return acked

"""The buffered paho client: same bytes, fewer reads, and the whole burst through Mosquitto."""

from __future__ import annotations

import socket
import threading
import time

import paho.mqtt.client as mqtt
import pytest

from connectors.broker import MosquittoBroker
from connectors.mqtt_client import BufferedClient, BufferedSocket, make_client
from connectors.topics import Topics


class CountingSocket:
    """A socket that counts its ``recv`` calls."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.calls = 0

    def recv(self, n: int) -> bytes:
        self.calls += 1
        return self.sock.recv(n)

    def fileno(self) -> int:
        return self.sock.fileno()


def test_recv_hands_out_the_same_bytes_in_order_from_one_read() -> None:
    a, b = socket.socketpair()
    with a, b:
        a.setblocking(False)
        counting = CountingSocket(a)
        buffered = BufferedSocket(counting, chunk_bytes=1024)
        data = bytes(range(256)) * 3
        b.sendall(data)
        time.sleep(0.05)
        got = bytearray()
        sizes = [1, 1, 5, 300, 1, 700]
        for n in sizes:
            got += buffered.recv(n)
        assert bytes(got) == data[: len(got)] and len(got) == 768
        assert counting.calls == 1  # one kernel read for the whole burst
        assert buffered.pending() == 0
        with pytest.raises(BlockingIOError):  # empty buffer: the socket's own error
            buffered.recv(1)
        b.sendall(b"xy")
        time.sleep(0.05)
        assert buffered.recv(1) == b"x" and buffered.pending() == 1
        assert buffered.recv(10) == b"y"  # a short read, as from a socket
        assert buffered.fileno() == a.fileno()  # everything else is the socket's
        b.close()
        time.sleep(0.05)
        assert buffered.recv(1) == b""  # end of stream reaches paho


def test_clients_are_buffered_and_send_small_packets_at_once(broker: MosquittoBroker) -> None:
    client = make_client(broker.address("ingest"), "buffer-check")
    assert isinstance(client, BufferedClient)
    address = broker.address("ingest")
    client.connect(address.host, address.port)
    try:
        sock = client.socket()
        assert isinstance(sock, BufferedSocket)
        # Nagle's algorithm would hold a second small packet for the peer's delayed ACK.
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    finally:
        client.disconnect()
    assert "set_tcp_nodelay true" in broker.config_file.read_text()


def test_a_burst_of_small_messages_arrives_whole_and_in_order(broker: MosquittoBroker) -> None:
    n = 20_000
    received: list[bytes] = []
    done = threading.Event()
    subscribed = threading.Event()

    def on_message(client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        received.append(message.payload)
        if len(received) == n:
            done.set()

    sub = make_client(broker.address("ingest"), "burst-sub")
    sub.on_message = on_message
    sub.on_subscribe = lambda *args: subscribed.set()
    topics = Topics("burst")
    sub.on_connect = lambda c, *args: c.subscribe(topics.sensors_filter, qos=1)
    address = broker.address("ingest")
    sub.connect(address.host, address.port)
    sub.loop_start()
    pub = make_client(broker.address("bms"), "burst-pub")
    pub.max_inflight_messages_set(1000)
    pub.connect(address.host, address.port)
    pub.loop_start()
    try:
        assert subscribed.wait(10)
        assert isinstance(sub.socket(), BufferedSocket)
        for i in range(n):
            pub.publish(topics.sensor(f"p{i % 50}"), f"{i:08d}".encode(), qos=0)
        assert done.wait(60), f"{len(received)} of {n} arrived"
    finally:
        for client in (pub, sub):
            client.disconnect()
            client.loop_stop()
    assert received == [f"{i:08d}".encode() for i in range(n)]

"""The MQTT service base: guarded callbacks, checked publishes, takeovers, persistent sessions."""

from __future__ import annotations

import threading
import time

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from connectors.broker import BrokerAddress, BrokerError, MosquittoBroker
from connectors.mqtt_service import MqttService
from connectors.topics import Topics

TOPICS = Topics("svc")


def _wait(predicate: object, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.02)
    return False


def test_a_raising_on_message_is_counted_and_the_next_message_still_arrives(
    broker: MosquittoBroker,
) -> None:
    got: list[bytes] = []

    def on_message(message: mqtt.MQTTMessage) -> None:
        if message.payload == b"boom":
            raise RuntimeError("a bug in the handler")
        got.append(bytes(message.payload))

    reader = MqttService(
        broker.address("ingest"),
        "svc-reader",
        name="reader",
        subscriptions=[(TOPICS.sensor("a"), 1)],
        on_message=on_message,
    ).start()
    writer = MqttService(broker.address("bms"), "svc-writer", name="writer").start()
    try:
        for payload in (b"boom", b"after", b"boom", b"last"):
            writer.publish(TOPICS.sensor("a"), payload, qos=1).wait_for_publish(5)
        assert _wait(lambda: got == [b"after", b"last"])
        assert reader.counters()["callback_errors"] == 2
        assert reader.client._thread is not None and reader.client._thread.is_alive()
    finally:
        writer.stop()
        reader.stop()


def test_a_publish_the_acl_refuses_is_counted_and_reported_not_published(
    broker: MosquittoBroker,
) -> None:
    codes: dict[int, object] = {}
    done = threading.Event()

    def on_puback(mid: int, reason_code: object) -> None:
        codes[mid] = reason_code
        done.set()

    # bms may read setpoints, not write them: Mosquitto answers PUBACK 0x87
    service = MqttService(broker.address("bms"), "svc-bms", name="bms", on_puback=on_puback).start()
    try:
        info = service.publish(TOPICS.setpoint("supply_air_c"), b"{}", qos=1)
        assert info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS  # paho took it...
        assert done.wait(5)
        code = codes[info.mid]
        assert code.is_failure and int(code.value) == 0x87  # type: ignore[attr-defined]
        assert service.counters()["publish_refused"] == 1  # ...the service knows better
    finally:
        service.stop()


def test_a_session_taken_over_by_the_same_identity_shows(broker: MosquittoBroker) -> None:
    first = MqttService(
        broker.address("dashboard"), "svc-first", name="first", reconnect_max_s=30
    ).start()
    second = MqttService(
        broker.address("dashboard"), "svc-second", name="second", reconnect_max_s=30
    )
    try:
        second.start()  # the broker binds the client id to the user: the same session
        assert _wait(lambda: first.counters()["disconnects"] >= 1)
    finally:
        second.stop()
        first.stop()
    assert broker.takeovers() >= 1  # Mosquitto 2.0 closes the socket without a reason...
    # ...a broker that sends DISCONNECT 0x8E (Session taken over) has it counted as such
    first._on_disconnect(
        first.client, None, None, ReasonCode(PacketTypes.DISCONNECT, identifier=0x8E), None
    )
    assert first.counters()["taken_over"] == 1


def test_a_full_outbox_is_counted_not_silently_lost() -> None:
    # Never connected: QoS 1 messages wait in paho's outbox for the connection.
    service = MqttService(BrokerAddress(port=1), "svc-offline", name="offline", max_outbox=3)
    kept = [service.publish(TOPICS.sensor("a"), b"x", qos=1) for _ in range(3)]
    assert all(i.rc == MQTTErrorCode.MQTT_ERR_NO_CONN for i in kept)  # kept for later
    assert service.counters()["publish_dropped"] == 0
    started = time.monotonic()
    info = service.publish(TOPICS.sensor("a"), b"x", qos=1, wait_s=0.1)
    assert info.rc == MQTTErrorCode.MQTT_ERR_QUEUE_SIZE and time.monotonic() - started >= 0.1
    assert service.counters()["publish_dropped"] == 1
    lost = service.publish(TOPICS.sensor("a"), b"x", qos=0)  # QoS 0 offline: gone
    assert lost.rc == MQTTErrorCode.MQTT_ERR_NO_CONN
    assert service.counters()["publish_failed"] == 1
    with pytest.raises(ValueError, match="max_outbox"):
        MqttService(BrokerAddress(), "x", name="x", max_outbox=65535)


def test_no_connection_raises_and_acks_of_an_old_connection_are_not_sent() -> None:
    service = MqttService(BrokerAddress(port=1), "svc-nowhere", name="nowhere")
    with pytest.raises(BrokerError, match="nowhere could not connect"):
        service.start(wait_s=0.2)
    assert not service.connected
    assert service.ack_many([1, 2], generation=service.generation + 1) == 0


def test_the_persistent_session_keeps_what_came_while_the_service_was_away(
    broker: MosquittoBroker,
) -> None:
    got: list[bytes] = []

    def reader() -> MqttService:
        return MqttService(
            broker.address("ingest"),
            "svc-durable",
            name="durable",
            subscriptions=[(TOPICS.sensor("b"), 1)],
            on_message=lambda m: got.append(bytes(m.payload)),
            session_expiry_s=60,
        )

    first = reader().start()
    first.stop()
    writer = MqttService(broker.address("bms"), "svc-pub", name="pub").start()
    try:
        for k in range(5):
            writer.publish(TOPICS.sensor("b"), f"{k}".encode(), qos=1).wait_for_publish(5)
        again = reader().start()
        try:
            assert _wait(lambda: len(got) == 5)
            assert got == [b"0", b"1", b"2", b"3", b"4"]
            assert again.generation == 1
        finally:
            again.stop()
    finally:
        writer.stop()

"""The BMS emulator on a real broker: readings, command rules, override, status and will."""

from __future__ import annotations

import json
import queue
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from connectors.bms_emulator import DEFAULT_MAX_COMMAND_S, BmsEmulator
from connectors.broker import MosquittoBroker
from connectors.mqtt_client import BufferedSocket, make_client
from connectors.payloads import OverrideMessage
from connectors.setpoint_writer import SetpointRefusedError, SetpointWriter
from connectors.topics import Topics
from physics.plant.plant import Plant

pytestmark = pytest.mark.integration

TOPICS = Topics("hall1")


class Listener:
    """A dashboard-identity subscriber collecting (topic, payload) pairs."""

    def __init__(self, broker: MosquittoBroker, *filters: str, identity: str = "dashboard") -> None:
        self.inbox: queue.Queue[tuple[str, bytes, bool]] = queue.Queue()
        # One connection per identity: the broker binds the client id to the user name.
        self.client = make_client(broker.address(identity), f"listener-{id(self)}")
        self.client.on_message = lambda c, u, m: self.inbox.put(
            (m.topic, bytes(m.payload), m.retain)
        )
        self.client.connect(broker.host, broker.port)
        for f in filters:
            self.client.subscribe(f, qos=1)
        self.client.loop_start()
        time.sleep(0.2)

    def until(self, predicate: Any, timeout_s: float = 10.0) -> tuple[str, bytes, bool]:
        deadline = time.monotonic() + timeout_s
        while True:
            item = self.inbox.get(timeout=max(0.01, deadline - time.monotonic()))
            if predicate(item):
                return item

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def rig(broker: MosquittoBroker, plant: Plant) -> Iterator[tuple[BmsEmulator, SetpointWriter]]:
    with (
        BmsEmulator(plant, broker.address("bms"), TOPICS) as emulator,
        SetpointWriter(broker.address("controller"), TOPICS, None, echo_timeout_s=5) as writer,
    ):
        # The emulator is stepped by the test: a thread applies what arrives in between.
        stop = threading.Event()

        def judge() -> None:
            while not stop.wait(0.005):
                emulator.process_commands()

        judging = threading.Thread(target=judge, daemon=True)
        judging.start()
        try:
            yield emulator, writer
        finally:
            stop.set()
            judging.join(5)


def _settle(emulator: BmsEmulator, expect: str, n: int = 1, timeout_s: float = 15.0) -> None:
    """Process arriving commands (plant time stands still) until counter ``expect`` reaches
    ``n``, then advance the plant one step so what was applied shows in its log."""
    deadline = time.monotonic() + timeout_s
    while emulator.counters()[expect] < n:
        assert time.monotonic() < deadline, f"{expect} never reached {n}: {emulator.counters()}"
        emulator.process_commands()
        time.sleep(0.01)
    emulator.step()


def _applied_sp(plant: Plant, field: str) -> float:
    return float(plant.last_log[0][plant.log_names.index(f"sp.{field}")])


def test_publishes_every_point_per_contract(broker: MosquittoBroker, plant: Plant) -> None:
    listener = Listener(broker, TOPICS.sensors_filter, TOPICS.status)
    try:
        with BmsEmulator(plant, broker.address("bms"), TOPICS) as emulator:
            _, payload, retained = listener.until(lambda m: m[0] == TOPICS.status)
            assert json.loads(payload)["state"] == "online"
            # A retained status reaches late subscribers.
            late = Listener(broker, TOPICS.status, identity="override")
            _, payload, retained = late.until(lambda m: m[0] == TOPICS.status)
            late.close()
            assert retained and json.loads(payload)["control"] == "site"
            emulator.step(2)
            seen: dict[str, list[dict[str, Any]]] = {}
            while sum(len(v) for v in seen.values()) < 2 * len(plant.point_names):
                topic, payload, _ = listener.until(lambda m: "/sensors/" in m[0])
                seen.setdefault(TOPICS.point_of(topic) or "?", []).append(json.loads(payload))
        assert set(seen) == set(plant.point_names)
        first, second = seen["supply_air_c"]
        assert set(first) == {"value", "unit", "ts", "quality", "seq"}
        assert first["unit"] == "degC" and first["quality"] == "good"
        assert second["seq"] == first["seq"] + 1
        assert second["ts"] - first["ts"] == plant.step_s
        _, payload, _ = listener.until(lambda m: m[0] == TOPICS.status)
        assert json.loads(payload)["state"] == "offline"
    finally:
        listener.close()


def test_command_rules(rig: tuple[BmsEmulator, SetpointWriter]) -> None:
    emulator, writer = rig
    now = emulator.now_s
    # Outside the BMS's envelope (27 degC is the top for supply air): refused, not clipped
    # (issue 17; the plant clipped 40.0 to 27.0 before), and the sender hears why.
    with pytest.raises(SetpointRefusedError, match=r"outside the envelope \[16, 27\]"):
        writer.write("supply_air_c", 40.0, expires_at=now + 600, issued_at=now, command_id="hot")
    assert emulator.counters()["out_of_envelope"] == 1 and emulator.control == "site"
    # Inside it: applied, and echoed with the value applied.
    result = writer.write("supply_air_c", 27.0, expires_at=now + 600, issued_at=now, command_id="a")
    assert result.outcome == "applied" and result.echo is not None
    assert (result.echo.value, result.echo.expires_at) == (27.0, now + 600)
    _settle(emulator, "applied")
    assert _applied_sp(emulator.plant, "supply_air_c") == 27.0
    assert emulator.control == "remote"
    # Duplicate id: never applied twice, echoed again as first applied.
    again = writer.write(
        "supply_air_c", 18.0, expires_at=now + 600, issued_at=now + 1, command_id="a"
    )
    assert again.outcome == "applied" and again.echo is not None and again.echo.value == 27.0
    _settle(emulator, "duplicates")
    # Already expired.
    with pytest.raises(SetpointRefusedError, match="expired"):
        writer.write(
            "fan_speed_frac", 0.5, expires_at=now - 1, issued_at=now - 60, command_id="old"
        )
    _settle(emulator, "expired")
    # Newest wins: issued before the command in force.
    with pytest.raises(SetpointRefusedError, match="superseded by a"):
        writer.write("supply_air_c", 17.0, expires_at=now + 600, issued_at=now - 5, command_id="b")
    _settle(emulator, "superseded")
    assert emulator.active_commands()["supply_air_c"].id == "a"
    counters = emulator.counters()
    assert (counters["applied"], counters["duplicates"], counters["expired"]) == (1, 1, 1)
    assert emulator.applied_ids == ["a"]


def test_a_commands_lifetime_is_capped_by_the_bms(
    rig: tuple[BmsEmulator, SetpointWriter],
) -> None:
    """``expires_at`` = 1e12 (finding 6): the BMS holds it three control periods at most and
    then hands the field back to the site; a command issued far in the future is refused."""
    emulator, writer = rig
    cap = emulator.max_command_s
    assert cap == DEFAULT_MAX_COMMAND_S == 3 * 300.0
    now = emulator.now_s
    result = writer.write("chw_supply_c", 10.0, expires_at=1e12, issued_at=now)
    assert result.outcome == "applied" and result.echo is not None
    assert result.echo.expires_at == now + cap
    assert emulator.counters()["capped"] == 1
    with pytest.raises(SetpointRefusedError, match="issued at"):
        writer.write("fan_speed_frac", 0.8, expires_at=1e12, issued_at=1e11)
    emulator.step(int(cap // emulator.plant.step_s) - 1)
    assert emulator.control == "remote"
    emulator.step(2)
    assert emulator.control == "site" and emulator.active_commands() == {}
    site_default = emulator.plant.config.defaults.chw_supply_c
    assert _applied_sp(emulator.plant, "chw_supply_c") == site_default


def test_lapsed_command_falls_back_to_site_control(rig: tuple[BmsEmulator, SetpointWriter]) -> None:
    emulator, writer = rig
    now = emulator.now_s
    site_default = emulator.plant.config.defaults.chw_supply_c
    writer.write("chw_supply_c", 10.0, expires_at=now + 5 * emulator.plant.step_s, issued_at=now)
    _settle(emulator, "applied")
    assert _applied_sp(emulator.plant, "chw_supply_c") == 10.0
    emulator.step(6)
    assert emulator.control == "site"
    assert emulator.active_commands() == {}
    assert _applied_sp(emulator.plant, "chw_supply_c") == site_default


def test_operator_override_wins(
    broker: MosquittoBroker, rig: tuple[BmsEmulator, SetpointWriter]
) -> None:
    emulator, writer = rig
    listener = Listener(broker, TOPICS.status)
    operator = make_client(broker.address("operator"), "operator-panel")
    operator.connect(broker.host, broker.port)
    operator.loop_start()
    try:
        now = emulator.now_s
        writer.write("supply_air_c", 22.0, expires_at=now + 600, issued_at=now)
        _settle(emulator, "applied")
        on = OverrideMessage(active=True, by="operator on site", ts=now).encode()
        operator.publish(TOPICS.override, on, qos=1, retain=True).wait_for_publish(5)
        for _ in range(100):
            emulator.step()
            if emulator.control == "override":
                break
            time.sleep(0.005)
        assert emulator.control == "override"
        listener.until(lambda m: json.loads(m[1]).get("control") == "override")
        # The override may land while a step is under way: the site's setpoints apply from
        # the next step on.
        emulator.step()
        assert (
            _applied_sp(emulator.plant, "supply_air_c")
            == emulator.plant.config.defaults.supply_air_c
        )
        with pytest.raises(SetpointRefusedError, match="operator override"):
            writer.write("supply_air_c", 23.0, expires_at=now + 600, issued_at=now + 1)
        _settle(emulator, "overridden")
        off = OverrideMessage(active=False, by="operator on site", ts=now).encode()
        operator.publish(TOPICS.override, off, qos=1, retain=True).wait_for_publish(5)
        writer.write("supply_air_c", 24.0, expires_at=now + 600, issued_at=now + 2)
        _settle(emulator, "applied", n=2)
        assert _applied_sp(emulator.plant, "supply_air_c") == 24.0
    finally:
        operator.loop_stop()
        listener.close()


def test_malformed_commands_are_rejected(broker: MosquittoBroker, plant: Plant) -> None:
    with BmsEmulator(plant, broker.address("bms"), TOPICS) as emulator:
        raw = make_client(broker.address("controller"), "raw-controller")
        raw.connect(broker.host, broker.port)
        raw.loop_start()
        try:
            for payload in (
                b"\xff",
                b"{}",
                b'{"id": "x", "value": "hot", "expires_at": 1, "issued_at": 0}',
            ):
                raw.publish(TOPICS.setpoint("supply_air_c"), payload, qos=1).wait_for_publish(5)
        finally:
            raw.loop_stop()
        _settle(emulator, "rejected", n=3)
        assert emulator.counters()["applied"] == 0


def test_last_will_reports_offline(broker: MosquittoBroker, plant: Plant) -> None:
    listener = Listener(broker, TOPICS.status)
    try:
        emulator = BmsEmulator(plant, broker.address("bms"), TOPICS, reconnect_min_s=1).start()
        listener.until(lambda m: json.loads(m[1])["state"] == "online")
        # The gateway's connection dies without a DISCONNECT: the broker sends the will.
        sock = emulator._client.socket()
        assert isinstance(sock, BufferedSocket)  # the TCP socket under the read buffer
        sock.shutdown(socket.SHUT_RDWR)
        listener.until(lambda m: json.loads(m[1])["state"] == "offline")
        # It reconnects and says so.
        listener.until(lambda m: json.loads(m[1])["state"] == "online")
        emulator.stop()
    finally:
        listener.close()


def test_paced_thread_runs_faster_than_real_time(broker: MosquittoBroker, plant: Plant) -> None:
    emulator = BmsEmulator(plant, broker.address("bms"), TOPICS, speed=6000.0)  # 100 steps/s
    with emulator:
        time.sleep(0.5)
    steps = emulator.counters()["steps"]
    assert 10 <= steps <= 60
    assert emulator.now_s == steps * plant.step_s

"""Tests of MQTT ingestion: decoding rules, staleness, handlers, and 10k junk messages
through a real Mosquitto."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from connectors.broker import MosquittoBroker
from connectors.catalog import PointCatalog, PointRule
from connectors.historian import Historian, Reading
from connectors.ingestion import MqttIngestor
from connectors.mqtt_client import make_client
from connectors.payloads import BirthMessage, PayloadError, SensorMessage, decode_sensor
from connectors.topics import Topics
from tests.connectors.junk import junk_stream

TOPICS = Topics("hall1")
UNITS = {"supply_air_c": "degC", "facility_power_kw": "kW", "crah_fan_speed_frac": "frac"}


def _msg(value: float, seq: int, unit: str = "degC") -> bytes:
    return SensorMessage(value=value, unit=unit, ts=60.0 * seq, quality="good", seq=seq).encode()


@pytest.fixture
def offline(tmp_path: Path) -> MqttIngestor:
    """An ingestor that is never connected: accept() is exercised directly."""
    from connectors.broker import BrokerAddress

    historian = Historian(tmp_path / "h.sqlite")
    return MqttIngestor(BrokerAddress(port=1), TOPICS, historian, units=UNITS, stale_after_s=0.05)


def test_accept_replay_gap_and_silence(offline: MqttIngestor) -> None:
    topic = TOPICS.sensor("supply_air_c")
    assert offline.accept(topic, _msg(18.0, 1)) == Reading(
        "supply_air_c", 60.0, 18.0, "degC", seq=1
    )
    assert offline.snapshot()["supply_air_c"].stale is False
    assert offline.accept(topic, _msg(18.1, 1)) is None  # replayed
    assert offline.accept(topic, _msg(18.1, 0)) is None  # old
    assert offline.accept(topic, _msg(18.2, 3)) is not None  # seq 2 missing: gap
    state = offline.snapshot()["supply_air_c"]
    assert (state.stale, state.stale_reason, state.value) == (True, "gap", 18.2)
    assert offline.accept(topic, _msg(18.3, 4)) is not None
    assert offline.snapshot()["supply_air_c"].stale is False
    time.sleep(0.1)
    assert offline.snapshot()["supply_air_c"].stale_reason == "silence"
    stats = offline.stats()
    assert stats["rejected"] == {"replayed": 2}
    assert (stats["received"], stats["accepted"], stats["gaps"]) == (5, 3, 1)


def test_raising_handler_does_not_stop_the_next_message(offline: MqttIngestor) -> None:
    seen: list[int] = []

    def explode(reading: Reading) -> None:
        raise RuntimeError("handler bug")

    offline.add_handler(explode)
    offline.add_handler(lambda r: seen.append(r.seq))
    for seq in (1, 2, 3):
        assert offline.accept(TOPICS.sensor("supply_air_c"), _msg(18.0, seq)) is not None
    assert seen == [1, 2, 3]
    assert offline.stats()["handler_errors"] == 3


def test_junk_counted_by_reason(offline: MqttIngestor) -> None:
    stream = junk_stream(TOPICS, UNITS, 2000, seed=7)
    for topic, payload, _ in stream:
        offline.accept(topic, payload)
    expected = Counter(reason for _, _, reason in stream if reason is not None)
    stats = offline.stats()
    assert stats["rejected"] == dict(expected)
    assert stats["accepted"] == sum(1 for *_, r in stream if r is None)


def _publisher(broker: MosquittoBroker) -> mqtt.Client:
    # The "bms" identity may publish sensors; junk goes through the real broker unchanged.
    client = make_client(broker.address("bms"), "junk-publisher")
    client.max_queued_messages_set(0)
    client.max_inflight_messages_set(200)
    client.connect(broker.host, broker.port)
    client.loop_start()
    return client


@pytest.mark.integration
def test_ten_thousand_junk_messages_through_mosquitto(
    volatile_broker: MosquittoBroker, tmp_path: Path
) -> None:
    broker = volatile_broker
    stream = junk_stream(TOPICS, UNITS, 10_000, seed=11)
    good = [(t, p) for t, p, r in stream if r is None]
    expected = Counter(r for _, _, r in stream if r is not None)
    assert len(expected) >= 8 and len(stream) >= 10_000
    calls = Counter[str]()

    def sometimes_raises(reading: Reading) -> None:
        calls["n"] += 1
        if reading.seq % 2:
            raise ValueError("a handler bug on odd sequence numbers")

    with Historian(tmp_path / "h.sqlite") as historian:
        ingestor = MqttIngestor(broker.address("ingest"), TOPICS, historian, units=UNITS)
        ingestor.add_handler(sometimes_raises)
        with ingestor:
            publisher = _publisher(broker)
            try:
                infos = [publisher.publish(t, p, qos=1) for t, p, _ in stream]
                for info in infos:
                    info.wait_for_publish(30)
                # Good messages after all the junk still land.
                last = max(
                    json.loads(p)["seq"] for t, p in good if t == TOPICS.sensor("supply_air_c")
                )
                after = [(TOPICS.sensor("supply_air_c"), _msg(21.0, last + 1))]
                for t, p in after:
                    publisher.publish(t, p, qos=1).wait_for_publish(10)
            finally:
                publisher.loop_stop()
            deadline = time.monotonic() + 30
            while ingestor.stats().get("received", 0) < len(stream) + 1:
                assert time.monotonic() < deadline, ingestor.stats()
                time.sleep(0.05)
            assert ingestor.drain(30)
            stats = ingestor.stats()
            assert ingestor.connected
        assert stats["rejected"] == dict(expected)
        assert stats["accepted"] == len(good) + 1
        assert stats["written"] == len(good) + 1
        assert calls["n"] == len(good) + 1
        assert stats["handler_errors"] > 0
        assert historian.latest(["supply_air_c"])["supply_air_c"].value == 21.0


@pytest.mark.integration
def test_resubscribes_and_keeps_session_after_reconnect(
    broker: MosquittoBroker, tmp_path: Path
) -> None:
    """Messages published while ingestion is offline arrive when it comes back (QoS 1,
    persistent session)."""
    with Historian(tmp_path / "h.sqlite") as historian:
        first = MqttIngestor(broker.address("ingest"), TOPICS, historian, units=UNITS)
        with first:
            pass  # subscribed once, then disconnected: the session stays on the broker
        publisher = _publisher(broker)
        try:
            for seq in range(1, 6):
                publisher.publish(
                    TOPICS.sensor("supply_air_c"), _msg(18.0 + seq, seq), qos=1
                ).wait_for_publish(5)
        finally:
            publisher.loop_stop()
        arrived = threading.Event()
        second = MqttIngestor(broker.address("ingest"), TOPICS, historian, units=UNITS)
        second.add_handler(lambda r: arrived.set() if r.seq == 5 else None)
        with second:
            assert arrived.wait(10)
            assert second.drain(10)
        assert historian.series(["supply_air_c"])["supply_air_c"].tolist() == [
            19.0,
            20.0,
            21.0,
            22.0,
            23.0,
        ]


# --------------------------------------------------------------------------- hardening (17)
def _raw(**fields: object) -> bytes:
    body: dict[str, object] = {"value": 18.0, "unit": "degC", "ts": 60.0, "quality": "good"}
    body["seq"] = 1
    body.update(fields)
    return json.dumps(body).encode()


def _birth(session: int, *, speed: float | None = None, ts: float = 0.0) -> bytes:
    return BirthMessage("plant", speed, ts, time.time(), session).encode()


def test_the_catalog_is_the_allow_list(offline: MqttIngestor) -> None:
    """Unknown names (one 4,000 characters long), unknown and wrong units, values outside
    the point's bounds and integers too large for a float are refused, each by its reason."""
    for i in range(50):
        assert offline.accept(TOPICS.sensor(f"junk{i}"), _raw()) is None
    assert offline.accept(TOPICS.sensor("x" * 4000), _raw()) is None
    air = TOPICS.sensor("supply_air_c")
    assert offline.accept(air, _raw(value=1e300, unit="K")) is None  # not the point's unit
    assert offline.accept(air, _raw(value=1e300)) is None
    assert offline.accept(air, _raw(value=int("9" * 4000))) is None
    assert offline.accept(air, _raw(ts=int("9" * 400))) is None
    assert (
        offline.accept(TOPICS.sensor("crah_fan_speed_frac"), _raw(value=1.5, unit="frac")) is None
    )
    stats = offline.stats()
    assert stats["rejected"] == {
        "unknown_point": 51,
        "wrong_unit": 1,
        "out_of_range": 4,
    }
    assert stats["handler_errors"] == 0 and stats["accepted"] == 0
    assert offline.historian.points() == []


def test_a_catalog_refuses_a_unit_without_bounds() -> None:
    with pytest.raises(ValueError, match="unit 'K' has no physical range"):
        PointCatalog({"return_air_c": "K"})
    with pytest.raises(PayloadError, match="unknown_unit"):
        decode_sensor(_raw(value=1e300, unit="K"))
    site = PointCatalog.reference()
    # 144 measurements + 19 unit status points (12 CRAH fans, 3 chillers running and in
    # alarm, the tower fan's alarm).
    assert len(site) == 163 and site.rule("chillers_on") == PointRule("chillers_on", "count", 0, 3)


def test_future_ts_is_refused_against_the_wall_clock(offline: MqttIngestor) -> None:
    """Without a birth the time base is the wall clock: one reading stamped 1e12 is refused
    and cannot freeze the historian's latest row."""
    topic = TOPICS.sensor("supply_air_c")
    assert offline.accept(topic, _raw(ts=1e12, seq=1)) is None
    assert offline.accept(topic, _raw(ts=time.time() + 3600, seq=2)) is None
    good = offline.accept(topic, _raw(ts=time.time() - 1, seq=3))
    assert good is not None
    assert offline.stats()["rejected"] == {"future_ts": 2}


def test_plant_time_base_bounds_ts_and_birth_resets_sequences(offline: MqttIngestor) -> None:
    topic = TOPICS.sensor("supply_air_c")
    offline.accept(TOPICS.birth, _birth(1, speed=60.0, ts=1000.0))
    assert offline.accept(topic, _raw(ts=1060.0, seq=1)) is not None
    # Far ahead of the declared plant clock (1000 s + a few seconds at x60 + one step).
    assert offline.accept(topic, _raw(ts=1e6, seq=2)) is None
    # seq 2^63-1 jumps too far: refused, the point is not locked out.
    assert offline.accept(topic, _raw(ts=1120.0, seq=2**63 - 1)) is None
    assert offline.accept(topic, _raw(ts=1120.0, seq=2)) is not None
    # A publisher restart: a new session, its sequences start again low.
    assert offline.accept(topic, _raw(ts=1180.0, seq=1)) is None  # replayed in session 1
    offline.accept(TOPICS.birth, _birth(2, speed=60.0, ts=1170.0))
    assert offline.accept(topic, _raw(ts=1180.0, seq=1)) is not None
    assert offline.stats()["rejected"] == {"future_ts": 1, "seq_jump": 1, "replayed": 1}
    assert offline.stats()["births"] == 2 and offline.stats()["gaps"] == 0


def test_stepped_publisher_horizon_follows_the_median(offline: MqttIngestor) -> None:
    """A publisher stepped by its driver: ts may run one max step ahead of the median of the
    points, so one bad sample neither passes nor moves the bound."""
    offline.accept(TOPICS.birth, _birth(7, ts=0.0))
    names = ["supply_air_c", "facility_power_kw", "crah_fan_speed_frac"]
    units = ["degC", "kW", "frac"]
    for step in range(1, 200):  # 199 steps of 60 s: far past the birth's horizon of 3600 s
        for name, unit in zip(names, units, strict=True):
            value = 0.5 if unit == "frac" else 20.0
            got = offline.accept(
                TOPICS.sensor(name), _raw(value=value, unit=unit, ts=60.0 * step, seq=step)
            )
            assert got is not None, (name, step)
    estimate = offline.plant_estimate()
    assert estimate == 60.0 * 199
    assert offline.accept(TOPICS.sensor(names[0]), _raw(ts=estimate + 7200, seq=200)) is None
    assert offline.plant_estimate() == estimate
    assert offline.stats()["rejected"] == {"future_ts": 1}


def test_bad_births_are_counted_and_change_nothing(offline: MqttIngestor) -> None:
    for payload in (b"{}", b'{"clock": "sundial"}', _birth(1, speed=-1.0), b"\xff"):
        assert offline.accept(TOPICS.birth, payload) is None
    assert offline.time_base.birth is None
    assert offline.stats()["rejected"] == {"bad_birth": 3, "non_utf8": 1}


def test_a_birth_seq_bounds_each_points_first_reading(offline: MqttIngestor) -> None:
    """A point's first reading in a session must carry a seq near the birth's, so one
    reading with seq 2^63-1 cannot lock a point out before the publisher's own arrive."""
    topic = TOPICS.sensor("supply_air_c")
    birth = BirthMessage("plant", None, 0.0, time.time(), 5, seq=1000)
    offline.accept(TOPICS.birth, birth.encode())
    assert offline.accept(topic, _raw(ts=60.0, seq=2**63 - 1)) is None
    assert offline.accept(topic, _raw(ts=60.0, seq=999)) is None
    assert offline.accept(topic, _raw(ts=60.0, seq=1000)) is not None
    assert offline.stats()["rejected"] == {"seq_jump": 1, "replayed": 1}

"""The setpoint writer: PUBACK reason codes, audit of every attempt, replay after reconnect."""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest

from connectors.bms_emulator import BmsEmulator
from connectors.broker import BrokerAddress, MosquittoBroker
from connectors.historian import Historian
from connectors.mqtt_client import make_client
from connectors.payloads import CommandAck
from connectors.setpoint_writer import SetpointError, SetpointRefusedError, SetpointWriter
from connectors.topics import Topics
from physics.plant.plant import Plant

TOPICS = Topics("hall1")


def test_not_connected_is_an_audited_error(tmp_path: Path) -> None:
    with Historian(tmp_path / "h.sqlite") as historian:
        writer = SetpointWriter(BrokerAddress(port=1), TOPICS, historian, actor="controller")
        with pytest.raises(SetpointError, match="not connected") as err:
            writer.write("supply_air_c", 20.0, expires_at=60.0, issued_at=0.0, command_id="c1")
        assert err.value.result is not None and err.value.result.outcome == "error"
        [record] = historian.audit()
        assert (record.command_id, record.outcome, record.actor) == ("c1", "error", "controller")


@pytest.mark.parametrize(
    ("field", "value", "expires", "match"),
    [
        ("compressor", 1.0, 60.0, "not writable"),
        ("supply_air_c", math.nan, 60.0, "finite"),
        ("supply_air_c", 20.0, 0.0, "expire after"),
    ],
)
def test_bad_commands_never_go_out(
    tmp_path: Path, field: str, value: float, expires: float, match: str
) -> None:
    with Historian(tmp_path / "h.sqlite") as historian:
        writer = SetpointWriter(BrokerAddress(port=1), TOPICS, historian)
        with pytest.raises(ValueError, match=match):
            writer.write(field, value, expires_at=expires, issued_at=0.0)
        assert historian.audit() == []


@pytest.mark.integration
def test_published_without_subscribers_is_success(broker: MosquittoBroker, tmp_path: Path) -> None:
    with (
        Historian(tmp_path / "h.sqlite") as historian,
        SetpointWriter(broker.address("controller"), TOPICS, historian) as writer,
    ):
        result = writer.write("cw_supply_c", 28.0, expires_at=60.0, issued_at=0.0)
        assert historian.audit()[0].outcome == "published"
    assert result.outcome == "published"
    assert result.reason_code in (0x00, 0x10)  # success / no matching subscribers


@pytest.mark.integration
def test_write_many_confirms_every_field_and_a_refusal_is_never_a_success(
    broker: MosquittoBroker, tmp_path: Path
) -> None:
    command = {"supply_air_c": 21.0, "chw_supply_c": 9.0, "cw_supply_c": 27.0}
    with (
        Historian(tmp_path / "h.sqlite") as historian,
        SetpointWriter(broker.address("controller"), TOPICS, historian) as writer,
    ):
        results = writer.write_many(command, expires_at=300.0, issued_at=0.0, command_id="k7")
        assert [r.command_id for r in results] == [
            "k7.supply_air_c",
            "k7.chw_supply_c",
            "k7.cw_supply_c",
        ]
        assert [r.outcome for r in results] == ["published"] * 3
        assert sorted(a.command_id for a in historian.audit()) == sorted(
            r.command_id for r in results
        )
    # The ingestion identity may not write setpoints: every field is refused (0x87) and
    # audited as refused; the call raises instead of reporting success.
    with (
        Historian(tmp_path / "h2.sqlite") as historian,
        SetpointWriter(broker.address("ingest"), TOPICS, historian) as intruder,
    ):
        with pytest.raises(SetpointRefusedError, match="0x87"):
            intruder.write_many(command, expires_at=300.0, issued_at=0.0, command_id="x1")
        assert [a.outcome for a in historian.audit()] == ["refused"] * 3


@pytest.mark.integration
def test_replay_after_reconnect_fills_gaps_never_repeats(
    broker: MosquittoBroker, plant: Plant
) -> None:
    with (
        BmsEmulator(plant, broker.address("bms"), TOPICS) as emulator,
        SetpointWriter(
            broker.address("controller"), TOPICS, None, reconnect_min_s=1, reconnect_max_s=1
        ) as writer,
    ):
        now = emulator.now_s
        writer.write("supply_air_c", 21.0, expires_at=now + 30, issued_at=now, command_id="short")
        writer.write(
            "fan_speed_frac", 0.7, expires_at=now + 9e5, issued_at=now + 60, command_id="long"
        )
        for _ in range(200):  # apply without advancing plant time
            emulator.process_commands()
            if emulator.counters()["applied"] == 2:
                break
            time.sleep(0.01)
        broker.restart()
        assert emulator.wait_connected(15)
        deadline = time.monotonic() + 15
        while writer.replayed == 0:
            assert time.monotonic() < deadline, "the writer did not replay after reconnecting"
            time.sleep(0.05)
        # "short" expired before the newest command was issued: it is not replayed.
        assert writer.replayed == 1, (writer.replayed, emulator.counters())
        for _ in range(200):
            emulator.step()
            if emulator.counters()["duplicates"]:
                break
            time.sleep(0.01)
        emulator.step(3)
        # The replay arrives as a duplicate (and QoS 1 may also redeliver commands whose
        # PUBACK the broker had not processed when it stopped): applied once all the same.
        assert 1 <= emulator.counters()["duplicates"] <= 3, emulator.counters()
        assert emulator.applied_ids == ["short", "long"]


# --------------------------------------------------------------------------- issue 17: echoes
@pytest.mark.integration
def test_the_audit_records_what_the_bms_did(
    broker: MosquittoBroker, plant: Plant, tmp_path: Path
) -> None:
    """A PUBACK is "published"; the BMS's echo makes it "applied" or "refused: why"."""
    with (
        Historian(tmp_path / "h.sqlite") as historian,
        BmsEmulator(plant, broker.address("bms"), TOPICS) as emulator,
        SetpointWriter(broker.address("controller"), TOPICS, historian, actor="ctl") as writer,
    ):
        now = emulator.now_s
        first = writer.write("supply_air_c", 22.0, expires_at=now + 600, issued_at=now)
        assert first.outcome == "published"  # echo_timeout_s=0: no wait for the BMS
        writer.write("cw_supply_c", 99.0, expires_at=now + 600, issued_at=now)
        deadline = time.monotonic() + 10
        while writer.pending():
            assert time.monotonic() < deadline, writer.pending()
            emulator.process_commands()
            time.sleep(0.01)
        deadline = time.monotonic() + 5
        while len(historian.audit()) < 4 and time.monotonic() < deadline:
            time.sleep(0.02)
        rows = [(a.field, a.outcome, a.detail) for a in reversed(historian.audit())]
    assert [r[:2] for r in rows] == [
        ("supply_air_c", "published"),
        ("cw_supply_c", "published"),
        ("supply_air_c", "applied"),
        ("cw_supply_c", "refused"),
    ]
    assert rows[2][2].startswith("applied 22 until")
    assert rows[3][2] == "refused by the BMS: 99 outside the envelope [10, 35]"


@pytest.mark.integration
def test_resent_until_the_bms_echoes_even_when_the_broker_forgets(
    broker: MosquittoBroker, plant: Plant, tmp_path: Path
) -> None:
    """The BMS is away and the broker, saving every 5 s, is SIGKILLed with the command queued
    for it: the writer re-sends (same id) until the echo comes, and the BMS applies it once."""
    with Historian(tmp_path / "h.sqlite") as historian:
        emulator = BmsEmulator(plant, broker.address("bms"), TOPICS, reconnect_max_s=1)
        emulator.start()
        emulator.stop()  # its session stays: commands queue on the broker
        with SetpointWriter(
            broker.address("controller"),
            TOPICS,
            historian,
            resend_s=0.2,
            replay_on_reconnect=False,  # only the re-send until the echo
            reconnect_min_s=1,
            reconnect_max_s=1,
        ) as writer:
            now = emulator.now_s
            result = writer.write("chw_supply_c", 9.0, expires_at=now + 600, issued_at=now)
            assert result.outcome == "published"
            broker.kill()
            broker.start()
            emulator.start()
            deadline = time.monotonic() + 15
            while writer.pending():
                assert time.monotonic() < deadline, "the echo never came"
                emulator.process_commands()
                time.sleep(0.02)
            emulator.stop()
            assert writer.resent >= 1
            deadline = time.monotonic() + 5
            while len(historian.audit()) < 2 and time.monotonic() < deadline:
                time.sleep(0.02)
        assert emulator.applied_ids == [result.command_id]
        assert [a.outcome for a in historian.audit()] == ["applied", "published"]


@pytest.mark.integration
def test_forged_or_junk_echoes_are_counted_and_harmless(
    broker: MosquittoBroker, plant: Plant
) -> None:
    """Echoes are network input: junk, an unknown id or another field's echo are counted and
    change nothing; the writer's network thread survives them. Only the BMS may echo."""
    forger = make_client(broker.address("bms"), "forger")
    forger.connect(broker.host, broker.port)
    forger.loop_start()
    intruder = make_client(broker.address("operator"), "intruder")
    intruder.connect(broker.host, broker.port)
    intruder.loop_start()
    try:
        with SetpointWriter(broker.address("controller"), TOPICS, None) as writer:
            result = writer.write("supply_air_c", 21.0, expires_at=600.0, issued_at=0.0)
            cid = result.command_id
            junk = [
                b"\xff",
                b"[]",
                b'{"id": "nobody", "field": "supply_air_c", "outcome": "applied", "value": 1,'
                b' "expires_at": 2, "reason": "", "ts": 0}',
                CommandAck(cid, "fan_speed_frac", "applied", 0.5, 60.0, "", 0.0).encode(),
                b'{"id": "' + cid.encode() + b'", "field": "supply_air_c", '
                b'"outcome": "applied", "value": null, "expires_at": 1, "reason": "", "ts": 0}',
            ]
            for payload in junk:
                forger.publish(TOPICS.acks, payload, qos=1).wait_for_publish(5)
            # Another identity may not echo at all (PUBACK 0x87): never reaches the writer.
            refused = intruder.publish(
                TOPICS.acks, CommandAck(cid, "supply_air_c", "applied", 21, 600, "", 0).encode(), 1
            )
            refused.wait_for_publish(5)
            deadline = time.monotonic() + 5
            while writer.bad_echoes < len(junk) and time.monotonic() < deadline:
                time.sleep(0.02)
            time.sleep(0.2)
            assert writer.bad_echoes == len(junk)
            assert writer.pending() == [cid] and writer.echo(cid) is None
            # Still alive: the real echo settles it.
            forger.publish(
                TOPICS.acks,
                CommandAck(cid, "supply_air_c", "applied", 21.0, 600, "", 0).encode(),
                1,
            ).wait_for_publish(5)
            deadline = time.monotonic() + 5
            while writer.pending() and time.monotonic() < deadline:
                time.sleep(0.02)
            assert writer.pending() == [] and writer.echo(cid) is not None
    finally:
        for client in (forger, intruder):
            client.disconnect()
            client.loop_stop()

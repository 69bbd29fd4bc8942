"""The setpoint writer: PUBACK reason codes, audit of every attempt, replay after reconnect."""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest

from connectors.bms_emulator import BmsEmulator
from connectors.broker import BrokerAddress, MosquittoBroker
from connectors.historian import Historian
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

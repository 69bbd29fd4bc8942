"""Broker SIGKILL mid-run: no acknowledged setpoint lost or applied twice, ingestion resumes.

The broker runs with the product's persistence (a save every 5 s, not on every change): the
setpoints' durability rests on the writer re-sending each command until the BMS echoes it.
The same run with MQTT 5 session expiry 0, or with a save only every 30 minutes, and the
writer's replay after reconnect switched off loses the commands queued for the emulator:
these control runs (the MQTT layer alone) show that the test can fail.
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from connectors.bms_emulator import BmsEmulator
from connectors.broker import MosquittoBroker, mosquitto_available
from connectors.historian import Historian
from connectors.ingestion import MqttIngestor
from connectors.setpoint_writer import SetpointError, SetpointWriter
from connectors.topics import Topics
from physics.plant.scenario import Scenario
from physics.plant.simulation import build_plant
from physics.plant.site_control import SETPOINT_FIELDS

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not mosquitto_available(), reason="Mosquitto is not installed (/usr/sbin/mosquitto)"
    ),
]

TOPICS = Topics("hall1")
FIELDS = ("supply_air_c", "fan_speed_frac", "chw_supply_c")
VALUES = {"supply_air_c": 20.0, "fan_speed_frac": 0.8, "chw_supply_c": 9.0}
assert set(FIELDS) <= set(SETPOINT_FIELDS)


@dataclass(frozen=True)
class Outcome:
    acked: list[str]
    applied: list[str]
    counters: dict[str, int]
    resume_s: float

    @property
    def lost(self) -> set[str]:
        return set(self.acked) - set(self.applied)


def _write(writer: SetpointWriter, emulator: BmsEmulator, i: int) -> str:
    field = FIELDS[i % len(FIELDS)]
    now = emulator.now_s
    result = writer.write(
        field, VALUES[field], expires_at=now + 1e6, issued_at=now + i * 1e-3, command_id=f"cmd-{i}"
    )
    return result.command_id


def _run(
    folder: Path,
    scenario: Scenario,
    *,
    session_expiry_s: int,
    autosave_on_changes: bool,
    replay: bool = True,
    paced_phase: bool = True,
) -> Outcome:
    broker = MosquittoBroker(
        folder / "broker",
        autosave_on_changes=autosave_on_changes,
        autosave_interval_s=1800 if not (autosave_on_changes or replay) else 5,
    ).start()
    try:
        with Historian(folder / "h.sqlite") as historian:
            emulator = BmsEmulator(
                build_plant(scenario),
                broker.address("bms"),
                TOPICS,
                session_expiry_s=session_expiry_s,
                reconnect_min_s=1,
                reconnect_max_s=1,
            )
            ingestor = MqttIngestor(
                broker.address("ingest"), TOPICS, historian, reconnect_min_s=1, reconnect_max_s=1
            )
            got_reading = threading.Event()
            ingestor.add_handler(lambda r: got_reading.set())
            writer = SetpointWriter(
                broker.address("controller"),
                TOPICS,
                historian,
                replay_on_reconnect=replay,
                resend_s=1.0 if replay else 1e9,  # the control runs: neither re-send
                reconnect_min_s=1,
                reconnect_max_s=1,
            )
            acked: list[str] = []
            with ingestor, writer:
                emulator.start()
                # A: commands while the emulator is online.
                acked += [_write(writer, emulator, i) for i in range(10)]
                time.sleep(0.3)
                emulator.step(2)
                # B: the emulator drops off; commands queue on the broker for its session.
                emulator.stop()
                acked += [_write(writer, emulator, i) for i in range(10, 20)]
                # The broker crashes and comes back.
                broker.kill()
                broker.start()
                restarted = time.monotonic()
                got_reading.clear()
                emulator.start()
                while not got_reading.is_set():
                    assert time.monotonic() - restarted < 15, "ingestion did not resume"
                    emulator.step()
                    got_reading.wait(0.05)
                resume_s = time.monotonic() - restarted
                assert writer.wait_connected(10)
                if not paced_phase:
                    time.sleep(0.3)
                    emulator.process_commands()
                    emulator.stop()
                    return Outcome(acked, list(emulator.applied_ids), emulator.counters(), resume_s)
                # C: the emulator paced in its own thread, the broker killed while commands
                # flow; only acknowledged ones count.
                emulator.stop()
                emulator.speed = 600.0
                emulator.start()
                for i in range(20, 60):
                    if i == 40:
                        broker.kill()
                        broker.start()
                        writer.wait_connected(10)
                    # A write refused for want of a connection is not acknowledged: the
                    # controller knows it did not go out.
                    with contextlib.suppress(SetpointError):
                        acked.append(_write(writer, emulator, i))
                # A command published while the emulator was still reconnecting is re-sent
                # (every ``resend_s``) until its echo: give the re-sends their time.
                drained = time.monotonic() + 15.0
                while writer.pending() and time.monotonic() < drained:
                    time.sleep(0.1)
                time.sleep(0.5)
                emulator.stop()
                emulator.process_commands()
            return Outcome(acked, list(emulator.applied_ids), emulator.counters(), resume_s)
    finally:
        broker.stop()


def test_sigkill_loses_no_acknowledged_setpoint(tmp_path: Path, scenario: Scenario) -> None:
    outcome = _run(tmp_path, scenario, session_expiry_s=3600, autosave_on_changes=False)
    assert len(outcome.acked) >= 50
    assert outcome.lost == set()
    assert len(outcome.applied) == len(set(outcome.applied)), "a command was applied twice"
    assert outcome.resume_s < 5.0
    print(
        f"ingestion resumed {outcome.resume_s:.2f} s after the broker restart; {outcome.counters}"
    )


@pytest.mark.parametrize(
    ("session_expiry_s", "autosave_on_changes"),
    [(0, True), (3600, False)],  # (3600, False): a save every 30 minutes
    ids=["no-session-expiry", "default-autosave"],
)
def test_control_runs_lose_the_queued_commands(
    tmp_path: Path, scenario: Scenario, session_expiry_s: int, autosave_on_changes: bool
) -> None:
    # The writer's replay after reconnect is off: this shows what the MQTT layer alone keeps.
    outcome = _run(
        tmp_path,
        scenario,
        paced_phase=False,
        session_expiry_s=session_expiry_s,
        autosave_on_changes=autosave_on_changes,
        replay=False,
    )
    assert {f"cmd-{i}" for i in range(10, 20)} <= outcome.lost

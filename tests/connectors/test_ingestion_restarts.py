"""Finding 5 of issue 17: ingestion killed (SIGKILL) and restarted ten times while the BMS
emulator publishes at QoS 1: every reading is stored, none twice.

Ingestion acknowledges a message only after its batch is committed, so what a killed process
held is delivered again to the next one; what was committed and delivered again is stored
once (the historian's unique key)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from connectors.bms_emulator import BmsEmulator
from connectors.broker import MosquittoBroker
from connectors.topics import Topics
from physics.plant.plant import Plant

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # about 45 s on 2 cores

TOPICS = Topics("hall1")
ROOT = Path(__file__).resolve().parents[2]


def _ingestion(broker: MosquittoBroker, historian: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.connectors.ingest_proc",
            str(broker.credentials_file),
            "ingest",
            TOPICS.site,
            str(historian),
        ],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    return proc


def _stored(historian: Path) -> tuple[int, int, dict[str, int]]:
    with sqlite3.connect(historian) as db:
        rows = db.execute("SELECT count(*) FROM readings").fetchone()[0]
        distinct = db.execute(
            "SELECT count(*) FROM (SELECT DISTINCT point, time_s, seq FROM readings)"
        ).fetchone()[0]
        per_point = dict(db.execute("SELECT point, count(*) FROM readings GROUP BY point"))
    return int(rows), int(distinct), per_point


def test_ten_ingestion_kills_lose_and_duplicate_nothing(
    broker: MosquittoBroker, plant: Plant, tmp_path: Path
) -> None:
    historian = tmp_path / "h.sqlite"
    proc = _ingestion(broker, historian)
    # About 2,900 readings a second (20 plant steps of 144 points), each at QoS 1.
    emulator = BmsEmulator(plant, broker.address("bms"), TOPICS, speed=20 * plant.step_s)
    kills = 0
    try:
        emulator.start()
        for _ in range(10):
            time.sleep(0.6)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
            kills += 1
            time.sleep(0.3)  # readings queue on the broker for the dead process's session
            proc = _ingestion(broker, historian)
        time.sleep(0.5)
    finally:
        emulator.stop()
    steps = emulator.counters()["steps"]
    points = len(plant.point_names)
    assert kills == 10 and steps >= 100
    deadline = time.monotonic() + 30
    while True:
        rows, distinct, per_point = _stored(historian)
        if rows >= steps * points or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert proc.stdin is not None
    proc.stdin.close()
    stats = proc.stdout.read() if proc.stdout is not None else ""
    proc.wait(30)
    rows, distinct, per_point = _stored(historian)
    lost = steps * points - distinct
    print(f"{steps} steps x {points} points through 10 kills: lost {lost}, twice {rows - distinct}")
    print(stats)
    assert rows == distinct, "a reading was stored twice"
    assert lost == 0, f"{lost} reading(s) lost"
    assert set(per_point) == set(plant.point_names)
    assert set(per_point.values()) == {steps}

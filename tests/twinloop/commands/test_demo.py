"""The demo as a user runs it: ``twinloop demo --auto-approve`` in its own process with the
shipped defaults (the MPC through gate 1, a 200-iteration twin, 300× real time), watched
stage by stage from its console until the first live hour is scored.

Each stage has a deadline counted from the stage before: a demo that stalls (a child blocked
on a full pipe, a solver that never returns, an approval that never comes) fails here and
names the stage, instead of hanging CI."""

from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from connectors.historian import Historian
from control.preevaluation import register_builtin
from control.reservoir import Reservoir
from physics.plant.scenario import load_scenario
from tests.twinloop.cli_process import processes
from twinloop.demo import AUTO, DemoConfig, fit_site_twin

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("mosquitto") is None and not Path("/usr/sbin/mosquitto").exists(),
        reason="Mosquitto is not installed (scripts/setup.sh installs it)",
    ),
]

# (stage, what the console shows when it is reached, seconds allowed since the stage before)
STAGES: list[tuple[str, str, float]] = [
    ("commissioning recording", r"twin: recording", 120.0),
    ("twin fit", r"broker: Mosquitto on 127\.0\.0\.1:\d+", 600.0),
    ("dashboard", r"dashboard: http://127\.0\.0\.1:\d+", 120.0),
    ("pre-evaluation start", r"pre-evaluation: mpc vs fixed-setpoints", 120.0),
    ("gate 1 (MPC pre-evaluated in the twin)", r"gate 1 passed: [\d.]+ % predicted savings", 600.0),
    ("approval", r"mpc approved; \d+ periods in shadow", 120.0),
    ("shadow window", r"mpc is live", 300.0),
    ("first live hour", r"demo over after [\d.]+ simulated hours", 300.0),
]
SCORE = re.compile(
    r"demo over after (?P<hours>[\d.]+) simulated hours: cooling (?P<kwh>\d+) kWh vs "
    r"(?P<ref>\d+) kWh under the site's own control; savings while live (?P<saving>-?[\d.]+) %; "
    r"(?P<kh>[\d.]+) K·h above 27 °C, max inlet (?P<max>[\d.]+) °C"
)


def _twinloop() -> list[str]:
    """The console script of the environment running the tests (what ``make demo`` runs)."""
    script = Path(sys.executable).parent / "twinloop"
    return [str(script)] if script.exists() else [sys.executable, "-m", "twinloop.cli"]


def _reader(stream: object, sink: queue.Queue[str | None]) -> None:
    read = stream.read1  # type: ignore[attr-defined]
    while chunk := read(65536):
        sink.put(chunk.decode(errors="replace"))
    sink.put(None)


def _mosquittos(home: Path) -> list[str]:
    return processes(home, "mosquitto")


def test_sigterm_stops_the_demo_and_everything_it_started(tmp_path: Path) -> None:
    home = tmp_path / "demo"
    command = [*_twinloop(), "demo", "--home", str(home), "--port", "0", "--quiet"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
    )
    chunks: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=_reader, args=(proc.stdout, chunks), daemon=True).start()
    console = ""
    deadline = time.monotonic() + 600.0
    try:
        while "pre-evaluation: log in" not in console:
            assert time.monotonic() < deadline, console[-3000:]
            chunk = chunks.get(timeout=600.0)
            assert chunk is not None, console[-3000:]
            console += chunk
        assert _mosquittos(home)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not _mosquittos(home), "the broker outlived the demo"
    assert not processes(home, "preevaluate"), "the pre-evaluation child outlived the demo"


def _watch(
    command: list[str], stages: list[tuple[str, str, float]]
) -> tuple[str, dict[str, float]]:
    """Run ``command`` (a demo) and follow its console through ``stages``; the whole
    console and when each stage was reached. Fails naming the stage a demo stalls at, or
    when it exits non-zero; stops it (its whole session) whatever happens."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=env,
        start_new_session=True,
    )
    chunks: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=_reader, args=(proc.stdout, chunks), daemon=True).start()
    console = ""
    timings: dict[str, float] = {}
    started = time.monotonic()
    try:
        for stage, pattern, allowed_s in stages:
            stage_started = time.monotonic()
            found = re.compile(pattern)
            while not found.search(console):
                left = allowed_s - (time.monotonic() - stage_started)
                if left <= 0:
                    pytest.fail(
                        f"the demo stalled at '{stage}' (nothing for {allowed_s:.0f} s); "
                        f"console so far:\n{console[-3000:]}"
                    )
                try:
                    chunk = chunks.get(timeout=min(left, 1.0))
                except queue.Empty:
                    continue
                if chunk is None:
                    proc.wait(10)
                    pytest.fail(
                        f"the demo exited ({proc.returncode}) before '{stage}':\n{console[-3000:]}"
                    )
                console += chunk
            timings[stage] = time.monotonic() - started
        assert proc.wait(60) == 0, console[-3000:]
        while (chunk := chunks.get(timeout=10)) is not None:
            console += chunk
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    print("stage reached after (s):", {k: round(v, 1) for k, v in timings.items()})
    return console, timings


def _clean_console(console: str) -> None:
    """The operator's console: the stages and the score, no solver chatter, no traceback."""
    assert "Highs" not in console and "WARNING: |Value|" not in console
    lines = [ln for ln in re.split(r"[\r\n]", console) if ln.strip()]
    assert not [ln for ln in lines if "Traceback" in ln or " ERROR " in ln], console[-3000:]


def test_make_demo_unattended_with_the_mpc_reaches_the_first_live_hour(tmp_path: Path) -> None:
    home = tmp_path / "demo"
    command = [
        *_twinloop(), "demo", "--auto-approve", "--live-hours", "1",
        "--home", str(home), "--port", "0",
    ]  # fmt: skip
    console, _ = _watch(command, STAGES)
    score = SCORE.search(console)
    assert score is not None, console[-3000:]
    print(score.group(0))
    assert float(score["saving"]) > 0.0, "the MPC must use less cooling than the site"
    assert float(score["kh"]) <= 0.05
    assert float(score["max"]) < 27.5
    # The children's output went to their log, all of it.
    _clean_console(console)
    log = home / "gate1" / "preevaluate.log"
    assert "PASSED" in log.read_text(encoding="utf-8")
    assert (home / "gate1" / "gate1.json").exists()


BACNET_STAGES: list[tuple[str, str, float]] = [
    ("BACnet device", r"BACnet: the site is device \d+ at 127\.0\.0\.1:\d+", 120.0),
    ("dashboard", r"dashboard: http://127\.0\.0\.1:\d+", 120.0),
    ("approval", r"mpc approved; 1 periods in shadow", 120.0),
    ("shadow window", r"mpc is live", 300.0),
    ("first live period", r"demo over after [\d.]+ simulated hours", 300.0),
]


def test_demo_over_bacnet_reaches_the_first_live_period(tmp_path: Path) -> None:
    """``twinloop demo --protocol bacnet``: the same demo with the site as a BACnet/IP device
    (no broker), serve on the device's plant clock, from approval to live. The folder comes
    with a small twin and the MPC past gate 1 (the MQTT test above runs those stages)."""
    home = tmp_path / "demo"
    config = DemoConfig(home=home, fit_iterations=10, twin_members=1, commissioning_days=1.0)
    fit_site_twin(config, load_scenario(config.scenario), lambda line: None)
    with Reservoir(home / "reservoir") as res:
        ref = register_builtin(res, "mpc", actor=AUTO).ref
        res.add_evaluation(ref, on="twin", scenario="demo", kpis={"cooling_kwh": 1.0})
        res.transition(ref, "pre_evaluated", actor="gate1", reason="gate 1 passed (the test's)")
    command = [
        *_twinloop(), "demo", "--protocol", "bacnet", "--auto-approve", "--live-hours", "0.25",
        "--shadow-periods", "1", "--home", str(home), "--port", "0",
    ]  # fmt: skip
    console, _ = _watch(command, BACNET_STAGES)
    score = SCORE.search(console)
    assert score is not None, console[-3000:]
    print(score.group(0))
    assert float(score["kh"]) <= 0.05 and float(score["max"]) < 27.5
    assert "broker: Mosquitto" not in console and not _mosquittos(home)
    _clean_console(console)
    point_map = (home / "bacnet" / "bms-map.yaml").read_text(encoding="utf-8")
    assert "device_instance: 1001" in point_map
    # The historian's readings are on the plant's clock (the scenario's July week), read
    # from the device, not on this machine's wall clock.
    scenario = load_scenario(config.scenario)
    with Historian(home / "historian.sqlite", readonly=True) as historian:
        times = historian.series(["kpi.cooling_power_kw"]).index
    assert len(times) >= 3
    first_s, last_s = scenario.start_h * 3600.0, (scenario.start_h + scenario.duration_h) * 3600.0
    assert first_s <= times.min() and times.max() <= last_s

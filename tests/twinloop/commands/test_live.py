"""``twinloop serve``'s configuration errors: one error line and exit status 2 for bad input,
nothing created for a bad file; and a real serve over an emulated site (``twinloop gate`` is
tested in test_gate.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from control.reservoir import Reservoir
from tests.twinloop.cli_process import one_error_line
from twinloop.cli import main


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A reservoir with two pre-evaluated agents and a candidate."""
    root = tmp_path / "reservoir"
    with Reservoir(root) as res:
        for name in ("ppo", "sac", "td3"):
            artifact = tmp_path / f"{name}.zip"
            artifact.write_bytes(name.encode())
            res.register(name, "drl", artifact, hyperparameters={}, training_scenarios=["w"])
            res.add_evaluation(
                name,
                on="twin",
                scenario="hot-week",
                kpis={"cooling_kwh": 1234.0, "max_inlet_c": 25.5},
            )
            if name != "td3":
                res.transition(name, "pre_evaluated", actor="gate1", reason="passed")
    return root


def _site_file(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "site.yaml"
    path.write_text(body, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("site: a\nhistorian: h.sqlite\nreservoir: r\n", "broker: Field required"),
        (
            "site: a\nbroker: {credentials: c.json}\nhistorian: h.sqlite\nreservoir: r\n"
            "control_period_s: -5\n",
            "control_period_s",
        ),
        (
            "site: a\nbroker: {credentials: c.json}\nhistorian: h.sqlite\nreservoir: nowhere\n",
            "no reservoir at",
        ),
    ],
)
def test_serve_refuses_a_bad_site_file_with_one_line(
    tmp_path: Path, body: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    site = _site_file(tmp_path, body)
    assert main(["serve", "--site", str(site)]) == 2
    assert message in one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "h.sqlite").exists()  # nothing is created for a bad file


def test_serve_without_the_file_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", "--site", str(tmp_path / "none.yaml")]) == 2
    assert "cannot read" in one_error_line(capsys.readouterr().err)


@pytest.mark.integration
@pytest.mark.slow
def test_serve_controls_an_emulated_site_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys
    import time
    from dataclasses import replace

    from connectors.bms_emulator import BmsEmulator
    from connectors.broker import MosquittoBroker, mosquitto_available
    from connectors.historian import Historian
    from connectors.topics import Topics
    from control import approval
    from control.preevaluation import register_builtin
    from physics.plant.scenario import load_scenario
    from physics.plant.simulation import build_plant

    if not mosquitto_available():
        pytest.skip("Mosquitto is not installed (/usr/sbin/mosquitto)")
    root = tmp_path / "reservoir"
    with Reservoir(root) as res:
        ref = register_builtin(res, "trim-and-respond", actor="test").ref
        res.add_evaluation(ref, on="twin", scenario="w", kpis={"cooling_kwh": 1.0})
        res.transition(ref, "pre_evaluated", actor="gate1", reason="passed")
        approval.approve(res, ref, operator="ann", reason="ok")
        approval.promote(res, ref, operator="ann", reason="shadow")
        approval.promote(res, ref, operator="ann", reason="live")
    scenario = replace(load_scenario("tropical-typical-week"), duration_h=12.0)
    speed = 60.0  # one plant minute per wall second
    with MosquittoBroker(tmp_path / "broker") as broker:
        plant = build_plant(scenario)
        emulator = BmsEmulator(
            plant,
            broker.address("bms"),
            Topics("hall-a"),
            speed=speed,
            epoch_s=scenario.start_h * 3600.0,
        )
        site = _site_file(
            tmp_path,
            "site: hall-a\n"
            f"broker: {{credentials: {broker.credentials_file}}}\n"
            "historian: historian.sqlite\n"
            "reservoir: reservoir\n"
            "control_period_s: 300\n"
            "clock: plant\n"
            "twin: drawings\n"
            f"time_scale: {speed}\n",
        )
        with emulator:
            proc = subprocess.Popen(
                [sys.executable, "-m", "twinloop.cli", "serve", "--site", str(site)],
                cwd=tmp_path,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            try:
                deadline = time.monotonic() + 180.0
                while emulator.counters()["applied"] < 30 and time.monotonic() < deadline:
                    assert proc.poll() is None, proc.communicate()
                    time.sleep(0.2)
                proc.send_signal(signal.SIGINT)
                out, err = proc.communicate(timeout=30)
                assert emulator.counters()["applied"] >= 30, err[-3000:]
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.communicate()
    assert proc.returncode == 0, err
    assert "serving site hall-a" in out and "site's own control takes over" in err
    store = Historian(tmp_path / "historian.sqlite", readonly=True)
    try:
        assert len(store.series(["ctl.supply_air_c"])) >= 2
        assert store.latest(["kpi.pue"])["kpi.pue"].value > 1.0
        assert "twin.rack_inlet_max_c" in store.points("twin.")
    finally:
        store.close()


def test_serve_refuses_a_corrupt_historian_in_one_line(
    tmp_path: Path, root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 17, finding 8: a historian that cannot be written stops serve at start."""
    corrupt = tmp_path / "historian.sqlite"
    corrupt.write_bytes(b"this is not a database" * 100)
    site = tmp_path / "site.yaml"
    site.write_text(
        "site: hall1\n"
        "broker: {ingest: {username: i, password: p}, controller: {username: c, password: p}}\n"
        f"historian: {corrupt}\nreservoir: {root}\n"
    )
    assert main(["serve", "--site", str(site)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "cannot open historian" in err

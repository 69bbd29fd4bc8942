"""The one-command demo end to end: real Mosquitto, the emulated site, the live service, the
dashboard, the twin, gate 1, approval, shadow, live; and nothing left running afterwards."""

from __future__ import annotations

import math
import shutil
import threading
import urllib.request
from pathlib import Path

import pytest

from control.reservoir import Reservoir
from physics.plant.scenario import load_scenario
from twin.ensemble import TwinEnsemble
from twinloop.demo import SCENARIO, Demo, DemoConfig, fit_site_twin

from ..conftest import record
from .cli_process import processes

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        shutil.which("mosquitto") is None and not Path("/usr/sbin/mosquitto").exists(),
        reason="Mosquitto is not installed (scripts/setup.sh installs it)",
    ),
]


def _mosquittos(home: Path) -> list[str]:
    return processes(home, "mosquitto")


@pytest.mark.slow
def test_demo_runs_the_dual_loop_unattended_and_leaves_nothing_running(tmp_path: Path) -> None:
    home = tmp_path / "demo"
    config = DemoConfig(
        home=home,
        speed=1200.0,
        port=0,
        auto_approve=True,
        live_hours=1.0,
        shadow_periods=2,
        fit_iterations=10,
        twin_members=1,  # a 10-iteration twin's members disagree; the CLI test runs the defaults
        commissioning_days=1.0,
        candidate="trim-and-respond",
    )
    lines: list[str] = []
    threads_before = threading.active_count()
    with Demo(config, say=lines.append) as demo:
        demo.start()
        assert demo.dashboard_url is not None
        with urllib.request.urlopen(demo.dashboard_url + "/", timeout=10) as response:
            assert response.status == 200
        assert _mosquittos(home), "the demo's broker is running"
        status = demo.wait(progress=False)
    assert status.gate1.startswith("passed"), lines
    assert any("is live" in line for line in lines), lines
    assert status.live_hours >= 1.0
    assert math.isfinite(status.savings_live_pct)
    assert status.violation_kh_above_27 == pytest.approx(0.0, abs=0.05)
    with Reservoir(home / "reservoir", create=False) as reservoir:
        record = reservoir.get("trim-and-respond")
        assert record.state == "live"
        actors = [h.actor for h in reservoir.history("trim-and-respond")]
        assert "gate1" in actors and "demo-auto" in actors
        # Auto-approve says so: nobody is recorded as having approved.
        reasons = [h.reason for h in reservoir.history("trim-and-respond")]
        assert "auto-approve: nobody reviewed this (unattended demo, --auto-approve)" in reasons
        assert "automatic: shadow window after the approval by nobody (auto-approve)" in reasons
        assert any(r.startswith("auto-approve: shadow window of 2 periods") for r in reasons)
        assert not any("operator approved" in r for r in reasons)
    # Everything stopped: the broker process, the dashboard's port, the threads.
    assert not _mosquittos(home)
    with pytest.raises(OSError):
        urllib.request.urlopen(demo.dashboard_url + "/", timeout=2)
    assert threading.active_count() <= threads_before + 1


def test_a_demo_twin_saved_before_competence_models_gets_one(
    tmp_path: Path, ensemble_twin: TwinEnsemble
) -> None:
    home = tmp_path / "demo"
    home.mkdir()
    record(home, "commissioning", "07-01", "6 h", 5)
    ensemble_twin.save(home / "twin")
    (home / "twin" / "competence.npz").unlink()
    said: list[str] = []
    config = DemoConfig(home=home)
    assert fit_site_twin(config, load_scenario(SCENARIO), said.append) == home / "twin"
    assert TwinEnsemble.load(home / "twin").competence is not None
    assert any("competence model" in line for line in said), said

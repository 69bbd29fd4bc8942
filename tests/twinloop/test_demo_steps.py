"""The demo's inner loop step by step, over a real reservoir and historian, without the
broker or the plant: a rerun starts a fresh historian and keeps the earlier one; without
auto-approve the demo waits for the operator's promotion after the shadow window; with it,
the promotion is recorded as auto-approve; a candidate rolled back in an earlier run is
reported with when, who and why, not silently kept out."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from connectors.historian import Historian, Reading
from control import approval
from control.preevaluation import register_builtin
from control.reservoir import Reservoir
from twinloop.cli import main
from twinloop.demo import AUTO, Demo, DemoConfig, DemoError

CANDIDATE = "trim-and-respond"


@pytest.fixture
def lines() -> list[str]:
    return []


def _demo(home: Path, lines: list[str], **overrides: object) -> Demo:
    config = DemoConfig(home=home, shadow_periods=0, candidate=CANDIDATE, **overrides)  # type: ignore[arg-type]
    demo = Demo(config, say=lines.append)
    demo.reservoir_root = home / "reservoir"
    demo.historian_path = home / "historian.sqlite"
    demo.dashboard_url = "http://127.0.0.1:8050"
    demo.emulator = SimpleNamespace(plant=SimpleNamespace(time_s=0.0))  # type: ignore[assignment]
    demo._event = lambda kind, message: lines.append(message)  # type: ignore[method-assign]
    return demo


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    """A demo folder whose reservoir holds the candidate, approved by an operator."""
    with Reservoir(tmp_path / "reservoir") as res:
        ref = register_builtin(res, CANDIDATE, actor=AUTO).ref
        res.add_evaluation(ref, on="twin", scenario="demo", kpis={"cooling_kwh": 1.0})
        res.transition(ref, "pre_evaluated", actor="gate1", reason="gate 1 passed")
        approval.approve(res, ref, operator="olga", reason="KPIs checked")
    yield tmp_path


def _in_thread(target: object) -> tuple[threading.Thread, list[object]]:
    out: list[object] = []
    thread = threading.Thread(target=lambda: out.append(target()), daemon=True)  # type: ignore[operator]
    thread.start()
    return thread, out


def _wait_for(check: object, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_without_auto_approve_the_demo_waits_for_the_operators_promotion(
    home: Path, lines: list[str]
) -> None:
    demo = _demo(home, lines)
    with Reservoir(demo.reservoir_root) as res:
        ref = res.get(CANDIDATE).ref
        demo._to_shadow(res, ref)
        assert res.history(ref)[-1].reason == "automatic: shadow window after the approval by olga"

        def shadow_then_live() -> bool:  # the demo's thread has its own connection
            with Reservoir(demo.reservoir_root) as own:
                return demo._shadow_then_live(own, ref)

        thread, out = _in_thread(shadow_then_live)
        _wait_for(lambda: any("waiting for an operator" in line for line in lines))
        assert lines[-1] == (
            f"{ref} has run 0 periods in shadow; waiting for an operator to promote it to live "
            "at http://127.0.0.1:8050/shadow"
        )
        time.sleep(1.0)
        assert thread.is_alive() and demo.status.phase == "awaiting promotion"
        approval.promote(res, ref, operator="olga", reason="shadow matched the site")
        thread.join(10.0)
        assert out == [True]
        demo._report_final(res, ref)
        assert lines[-1] == f"{CANDIDATE} is live"
        assert [h.actor for h in res.history(ref)][-1] == "olga"
    demo.stop()


def test_with_auto_approve_the_audit_says_auto_approve(home: Path, lines: list[str]) -> None:
    demo = _demo(home, lines, auto_approve=True)
    with Reservoir(demo.reservoir_root) as res:
        ref = res.get(CANDIDATE).ref
        demo._to_shadow(res, ref)
        assert demo._shadow_then_live(res, ref) is True
        last = res.history(ref)[-1]
        assert (last.to_state, last.actor) == ("live", AUTO)
        assert last.reason.startswith("auto-approve: shadow window of 0 periods passed")
    demo.stop()


def test_a_candidate_rolled_back_earlier_is_reported_not_silently_kept_out(
    home: Path, lines: list[str]
) -> None:
    with Reservoir(home / "reservoir") as res:
        ref = res.get(CANDIDATE).ref
        approval.promote(res, ref, operator="olga", reason="to shadow")
        approval.promote(res, ref, operator="olga", reason="to live")
        approval.rollback(res, operator="oscar", reason="inlets rising")
        day = res.history(ref)[-1].at[:10]
    demo = _demo(home, lines, live_hours=1.0)
    demo._inner_loop()
    assert lines[-2].startswith(f"{ref} was rolled back on {day} ")
    assert "by oscar (inlets rising); the site keeps its own control" in lines[-2]
    assert "register a new version of trim-and-respond, or start with --home elsewhere" in lines[-2]
    assert lines[-1] == "nothing will go live; the demo stops" and demo.stopped
    demo.stop()


def test_a_rerun_moves_the_earlier_historian_aside(tmp_path: Path, lines: list[str]) -> None:
    demo = _demo(tmp_path, lines)
    with Historian(demo.historian_path) as hist:
        hist.write([Reading("supply_air_c", 100.0 + k, 20.0, "degC", "good", k) for k in range(3)])
    demo._archive_earlier_run()
    assert not demo.historian_path.exists()
    kept = sorted((tmp_path / "runs").glob("historian-*.sqlite"))
    assert len(kept) == 1 and lines == [
        f"historian: the earlier run's readings moved to {kept[0]}; this run starts afresh"
    ]
    with Historian(kept[0], readonly=True) as old:
        assert len(old.series(["supply_air_c"])) == 3  # nothing lost
    # The new run's readings at the same times are stored, not mixed with the old ones.
    with Historian(demo.historian_path) as hist:
        hist.write([Reading("supply_air_c", 100.0 + k, 21.0, "degC", "good", k) for k in range(3)])
        assert hist.series(["supply_air_c"])["supply_air_c"].tolist() == [21.0] * 3
    demo._archive_earlier_run()  # a second rerun in the same second gets its own name
    assert len(list((tmp_path / "runs").glob("historian-*.sqlite"))) == 2
    demo.stop()


def test_auto_approve_cannot_meet_two_approvers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(DemoError, match="cannot meet a rule of 2"):
        DemoConfig(home=tmp_path, auto_approve=True, promotion_approvers=2)
    status = main(["demo", "--home", str(tmp_path), "--auto-approve", "--promotion-approvers", "2"])
    assert status == 2
    assert "cannot be combined with --promotion-approvers 2" in capsys.readouterr().err

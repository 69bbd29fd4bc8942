"""Loop 1 end to end: reservoir candidate → suite in the twin → gate 1 → history."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from control.baselines import FixedSetpoints
from control.evaluation import evaluate
from control.gate import GateConfig, gate1
from control.preevaluation import GATE_ACTOR, policy_factory_of, pre_evaluate, register_builtin
from control.reservoir import Reservoir
from control.suites import load_suite
from twin.ensemble import TwinEnsemble
from twin.spaces import ActionScale
from twinloop.cli import main

SCENARIO = """\
name: {name}
site: {{variant: reference, seed: 11}}
weather: {{file: "pvlib:miami", start: "{start}"}}
workload: {{kind: diurnal, mean_frac: 0.6}}
duration: 4 h
step: 60 s
control_period: 5 min
seed: 1
"""


@pytest.fixture
def suite(tmp_path: Path) -> Path:
    for name, start in (("short-a", "07-01"), ("short-b", "08-10")):
        (tmp_path / f"{name}.yaml").write_text(SCENARIO.format(name=name, start=start))
    path = tmp_path / "suite.yaml"
    path.write_text("name: tiny\ntarget: twin\nscenarios: [short-a.yaml, short-b.yaml]\n")
    return path


def test_a_candidate_that_saves_is_pre_evaluated(
    suite: Path, tmp_path: Path, ensemble_twin: TwinEnsemble
) -> None:
    with Reservoir(tmp_path / "res") as res:
        fixed = register_builtin(res, "fixed-setpoints", actor="test")
        trim = register_builtin(res, "trim-and-respond", actor="test")
        assert register_builtin(res, "trim-and-respond", actor="test").ref == trim.ref
        report = pre_evaluate(
            res, trim.ref, fixed.ref, twin=ensemble_twin, out_dir=tmp_path / "pre", suite=str(suite)
        )
        assert report.passed, report.reasons
        # Judged in both members, inside the twin's data.
        row = report.scenarios[0]
        assert len(row["cooling_kwh_members"]) == 2
        assert row["extrapolating_share"] <= 0.05
        assert res.get(trim.ref).state == "pre_evaluated"
        last = res.history(trim.ref)[-1]
        assert last.actor == GATE_ACTOR and "passed" in last.reason
        assert {e.scenario for e in res.evaluations(trim.ref)} == {"short-a", "short-b"}
        assert (tmp_path / "pre" / "gate1.md").is_file()
        with pytest.raises(ValueError, match="not a candidate"):
            pre_evaluate(res, trim.ref, fixed.ref, twin=None, out_dir=tmp_path / "again")


def test_a_candidate_that_fails_gate_1_is_rejected_with_the_reasons(
    suite: Path, tmp_path: Path, ensemble_twin: TwinEnsemble
) -> None:
    with Reservoir(tmp_path / "res") as res:
        fixed = register_builtin(res, "fixed-setpoints", actor="test")
        trim = register_builtin(res, "trim-and-respond", actor="test")
        strict = GateConfig(min_savings_percent=50.0)
        report = pre_evaluate(
            res,
            trim.ref,
            fixed.ref,
            twin=ensemble_twin,
            out_dir=tmp_path / "p",
            suite=str(suite),
            gate=strict,
        )
        assert not report.passed
        assert res.get(trim.ref).state == "rejected"
        assert "needs ≥ 50 %" in res.history(trim.ref)[-1].reason
        scenario = load_suite(suite).scenarios[0]
        assert policy_factory_of(res, fixed)(scenario).name == "fixed-setpoints"


def test_cli_runs_loop_1_and_exits_1_on_rejection(
    suite: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = str(tmp_path / "res")
    assert main(["reservoir", "--root", root, "add-baselines"]) == 0
    gate = tmp_path / "gate.yaml"
    gate.write_text("min_savings_percent: 50\n")
    argv = ["preevaluate", "trim-and-respond", "--incumbent", "fixed-setpoints", "--root", root]
    argv += ["--suite", str(suite), "--out", str(tmp_path / "o"), "--quiet"]
    assert main([*argv, "--gate", str(gate)]) == 1
    assert "FAILED" in capsys.readouterr().out
    assert (
        main(
            [
                "preevaluate",
                "nope",
                "--incumbent",
                "fixed-setpoints",
                "--root",
                root,
                "--out",
                str(tmp_path / "x"),
            ]
        )
        == 2
    )
    assert "nope" in capsys.readouterr().err


class _Chatter:
    """Condenser water high and the economiser toggled every period: the operation a PPO
    agent learned in the drawings' twin, where the twin predicted 40 % of the plant's
    cooling energy."""

    name = "chatter"
    kind = "rule"

    def reset(self, n_envs: int = 1) -> None:
        self.t = 0

    def act(self, observation: np.ndarray) -> np.ndarray:
        self.t += 1
        sp = np.array([22.0, 0.6, 12.0, 33.0, float(self.t % 2)])
        action = ActionScale().to_action(sp)
        return np.tile(action, (len(observation), 1)).astype(np.float32)


def test_gate_1_refuses_a_policy_that_leaves_the_twins_data(
    suite: Path, ensemble_twin: TwinEnsemble
) -> None:
    scenarios = load_suite(suite).scenarios
    inc = [evaluate(FixedSetpoints(), s, on="twin", twin=ensemble_twin) for s in scenarios]
    bad = [evaluate(_Chatter(), s, on="twin", twin=ensemble_twin) for s in scenarios]
    report = gate1(bad, inc)
    assert not report.passed
    blind = [r for r in report.reasons if "extrapolated" in r]
    assert len(blind) == 2, report.reasons
    assert "CW " in blind[0] and "economiser" in blind[0]


@pytest.mark.parametrize("name", ["fixed-setpoints", "trim-and-respond", "mpc", "oracle-mpc"])
def test_built_in_policies_are_described_in_plain_words(tmp_path: Path, name: str) -> None:
    """The reservoir's "why" for a built-in policy is its docstring's first line without the
    markup and pointers an operator cannot use."""
    with Reservoir(tmp_path / "reservoir") as res:
        description = register_builtin(res, name, actor="test").description
    assert description and description.endswith(".")
    for markup in ("``", ":class:", "module docstring", "kind "):
        assert markup not in description

"""`twinloop evaluate`: a policy over scenarios, KPIs and plots, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from twinloop.cli import main

SCENARIO = """\
name: short
site: {variant: reference, seed: 3}
weather: {file: "pvlib:miami", start: "07-10"}
workload: {kind: constant, mean_frac: 0.6}
duration: 3 h
step: 60 s
control_period: 5 min
seed: 3
"""


@pytest.fixture
def scenario(tmp_path: Path) -> Path:
    path = tmp_path / "short.yaml"
    path.write_text(SCENARIO)
    return path


def test_evaluate_writes_kpis_series_and_plots(
    scenario: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "eval"
    argv = ["evaluate", "--policy", "trim-and-respond", "--scenario", str(scenario)]
    assert main([*argv, "--on", "plant", "--out", str(out), "--quiet"]) == 0
    payload = json.loads((out / "short" / "kpis.json").read_text())
    assert payload["policy"] == "trim-and-respond" and payload["on"] == "plant"
    assert payload["kpis"]["cooling_kwh"] > 0
    assert (out / "short" / "series.parquet").stat().st_size > 0
    assert (out / "summary.csv").read_text().startswith("policy,scenario,on,cooling_kwh")
    assert (out / "evaluation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "short (plant): cooling" in capsys.readouterr().out
    assert main([*argv, "--on", "twin", "--out", str(tmp_path / "twin"), "--quiet"]) == 0


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--policy", "no-such-policy"], "unknown policy 'no-such-policy'"),
        (["--policy", "fixed-setpoints", "--on", "twin", "--twin", "missing"], "no saved twin"),
    ],
)
def test_bad_policy_or_twin_is_one_line_and_exit_2(
    scenario: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    message: str,
) -> None:
    argv = ["evaluate", "--scenario", str(scenario), "--out", str(tmp_path / "o"), *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "o").exists()


def test_evaluate_runs_the_mpc_in_the_twin(scenario: Path, tmp_path: Path) -> None:
    out = tmp_path / "mpc"
    argv = ["evaluate", "--policy", "mpc", "--scenario", str(scenario), "--on", "twin"]
    assert main([*argv, "--out", str(out), "--quiet"]) == 0
    payload = json.loads((out / "short" / "kpis.json").read_text())
    assert payload["policy"] == "mpc" and payload["kpis"]["violation_kh_above_27"] == 0.0

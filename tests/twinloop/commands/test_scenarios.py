"""`twinloop simulate` writes a run, `twinloop scenarios` lists the shipped ones, `twinloop
evaluate` runs a policy over scenarios (KPIs and plots); clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from physics.plant.scenario import shipped_scenarios
from tests.twinloop.cli_process import one_error_line, run_cli
from twinloop.cli import main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SHORT = """\
name: cli-short
description: six hours, no faults
weather: {file: "pvlib:miami", start: "07-01"}
workload: {kind: diurnal, mean_frac: 0.6, amplitude_frac: 0.15}
duration: 6 h
step: 60 s
control_period: 5 min
sensor_noise: 1.0
seed: 1
faults: []
"""
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
    assert (out / "short" / "run.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "short (plant): cooling" in capsys.readouterr().out
    assert main([*argv, "--on", "twin", "--out", str(tmp_path / "twin"), "--quiet"]) == 0
    assert (tmp_path / "twin" / "short" / "run.png").stat().st_size > 0


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


def test_unknown_policy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "short.yaml"
    path.write_text(SHORT, encoding="utf-8")
    out = tmp_path / "out"
    code = main(["simulate", "--scenario", str(path), "--policy", "oracle", "--out", str(out)])
    assert code == 2
    line = one_error_line(capsys.readouterr().err)
    assert "unknown policy 'oracle'" in line
    assert "baseline" in line
    assert not out.exists()


def test_scenarios_lists_the_shipped_scenarios(tmp_path: Path) -> None:
    result = run_cli("scenarios", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    names = sorted(shipped_scenarios())
    assert len(names) >= 4
    assert [line.split()[0] for line in lines] == names
    week = next(line for line in lines if line.startswith("tropical-typical-week "))
    assert "7.0 d" in week


def test_simulate_short_scenario_end_to_end(tmp_path: Path) -> None:
    (tmp_path / "short.yaml").write_text(SHORT, encoding="utf-8")
    result = run_cli(
        "simulate", "--scenario", "short.yaml", "--out", "run", "--quiet", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    out = tmp_path / "run"
    for name in (
        "kpis.json",
        "timeseries.parquet",
        "sensors.parquet",
        "report.html",
        "temperatures.png",
        "power.png",
        "pue.png",
    ):
        assert (out / name).is_file(), name
        assert (out / name).stat().st_size > 0, name
    payload = json.loads((out / "kpis.json").read_text(encoding="utf-8"))
    kpis = payload["kpis"]
    assert 1.1 < kpis["pue"] < 2.0
    assert kpis["duration_h"] == pytest.approx(6.0)
    assert kpis["facility_kwh"] > kpis["it_kwh"] > 0
    summary = json.loads(result.stdout)
    assert summary["pue"] == round(kpis["pue"], 4)
    truth = pd.read_parquet(out / "timeseries.parquet")
    readings = pd.read_parquet(out / "sensors.parquet")
    assert len(truth) == len(readings) == 360
    assert "rack_inlet_c.3.24" in readings.columns
    for png in ("temperatures.png", "power.png", "pue.png"):
        assert (out / png).read_bytes()[:8] == PNG_MAGIC
    assert "cli-short" in (out / "report.html").read_text(encoding="utf-8")

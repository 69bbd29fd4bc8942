"""The ``twinloop`` command: bad input gives one error line and exit 2; simulate writes a run."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from physics.plant.scenario import shipped_scenarios
from tests.twinloop.cli_process import one_error_line, run_cli
from twinloop.cli import main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
BASE = """\
name: cli-short
description: six hours, no faults
weather: {file: "pvlib:miami", start: "07-01"}
workload: {kind: diurnal, mean_frac: 0.6, amplitude_frac: 0.15}
duration: 6 h
step: 60 s
control_period: 5 min
sensor_noise: 1.0
seed: 1
"""
SHORT = BASE + "faults: []\n"

BAD_FILES = {
    "missing-field": ("name: t\n", "duration"),
    "wrong-unit": ("name: t\nduration: 7 parsecs\n", "parsecs"),
    "number-without-unit": ("name: t\nduration: 168\n", "duration"),
    "unknown-fault": (BASE + "faults:\n  - {kind: meteor, at: 1 h}\n", "faults[0].kind"),
    "fault-after-end": (BASE + "faults:\n  - {kind: chiller_trip, at: 9 h}\n", "faults[0].at"),
    "outside-weather-file": (
        "name: t\nduration: 7 d\nweather: {file: 'pvlib:miami', start: '12-30'}\n",
        "outside the weather file",
    ),
    "missing-weather-file": (
        "name: t\nduration: 6 h\nweather: {file: /nonexistent/weather.csv}\n",
        "weather.file",
    ),
    "unknown-site-variant": (BASE + "site: {variant: martian}\n", "site.variant"),
    "invalid-yaml": ("name: t\nduration: [6 h\n", "not valid YAML"),
}


@pytest.mark.parametrize(("text", "names"), BAD_FILES.values(), ids=BAD_FILES.keys())
def test_bad_scenario_file_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, names: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    out = tmp_path / "out"
    code = main(["simulate", "--scenario", str(path), "--out", str(out), "--quiet"])
    captured = capsys.readouterr()
    assert code == 2
    line = one_error_line(captured.err)
    assert line.startswith("twinloop: error: scenario bad.yaml: "), line
    assert names in line
    assert captured.out == ""
    assert not out.exists()


def test_bad_scenario_file_through_the_real_command(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("name: t\nweather: {start: '07-01'}\n", encoding="utf-8")
    result = run_cli("simulate", "--scenario", "bad.yaml", "--out", "out", cwd=tmp_path)
    assert result.returncode == 2
    line = one_error_line(result.stderr)
    assert line == "twinloop: error: scenario bad.yaml: duration: required field is missing"
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_unknown_scenario_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["simulate", "--scenario", "no-such-scenario", "--out", str(tmp_path / "o")])
    assert code == 2
    line = one_error_line(capsys.readouterr().err)
    assert "no-such-scenario" in line and "heat-wave" in line


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


def test_missing_required_argument_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["simulate", "--out", "x"])
    assert info.value.code == 2
    assert "--scenario" in capsys.readouterr().err


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

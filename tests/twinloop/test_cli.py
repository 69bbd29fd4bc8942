"""The ``twinloop`` command's one error path: a ``TwinLoopError`` (bad input) is one line on
stderr and exit 2, Ctrl-C exits 130, and any other exception is a bug that keeps its
traceback."""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.twinloop.cli_process import one_error_line, run_cli
from twinloop.cli import main
from twinloop.commands import scenarios
from twinloop.errors import TwinLoopError

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


def test_missing_required_argument_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["simulate", "--out", "x"])
    assert info.value.code == 2
    assert "--scenario" in capsys.readouterr().err


def test_unknown_scenario_name_through_the_real_command(tmp_path: Path) -> None:
    result = run_cli("simulate", "--scenario", "no-such-scenario", "--out", "out", cwd=tmp_path)
    assert result.returncode == 2
    line = one_error_line(result.stderr)
    assert "no-such-scenario" in line
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def _raise(exc: BaseException) -> Callable[[argparse.Namespace], int]:
    def command(args: argparse.Namespace) -> int:
        raise exc

    return command


def test_an_unexpected_exception_propagates(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(scenarios, "_cmd_scenarios", _raise(ZeroDivisionError("a bug")))
    with pytest.raises(ZeroDivisionError, match="a bug"):
        main(["scenarios"])
    assert "twinloop: error" not in capsys.readouterr().err


def test_a_plain_value_error_is_a_bug_not_exit_2(monkeypatch: pytest.MonkeyPatch) -> None:
    """No command turns a ValueError into a user's error: only a TwinLoopError is one."""
    monkeypatch.setattr(scenarios, "_cmd_scenarios", _raise(ValueError("a bug")))
    with pytest.raises(ValueError, match="a bug"):
        main(["scenarios"])


def test_a_twinloop_error_is_one_line_and_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(scenarios, "_cmd_scenarios", _raise(TwinLoopError("fix this")))
    assert main(["scenarios"]) == 2
    assert one_error_line(capsys.readouterr().err) == "twinloop: error: fix this"


def test_ctrl_c_exits_130(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(scenarios, "_cmd_scenarios", _raise(KeyboardInterrupt()))
    assert main(["scenarios"]) == 130
    assert capsys.readouterr().err == "twinloop: interrupted\n"


def test_a_bug_shows_its_traceback_in_a_real_process(tmp_path: Path) -> None:
    script = (
        "import sys\n"
        "from twinloop.commands import scenarios\n"
        "from twinloop.cli import main\n"
        "def broken(args):\n"
        "    return 1 / 0\n"
        "scenarios._cmd_scenarios = broken\n"
        "sys.exit(main(['scenarios']))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1
    assert "Traceback (most recent call last)" in result.stderr
    assert "ZeroDivisionError: division by zero" in result.stderr
    assert "twinloop: error" not in result.stderr

"""``twinloop twin record|fit|report``: records scenarios into a data directory, fits and
saves a twin, reports its accuracy; bad input gives one error line and exit 2, and nothing is
overwritten without ``--overwrite``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.twinloop.cli_process import one_error_line, run_cli
from twin.ensemble import TwinEnsemble
from twin.recording import CMD_COLUMNS, load_recordings
from twinloop.cli import main

TINY = """\
name: {name}
site: {{variant: reference, seed: 11}}
weather: {{file: "pvlib:miami", start: "01-05"}}
workload: {{kind: diurnal, mean_frac: 0.6}}
duration: 2 h
step: 60 s
control_period: 5 min
sensor_noise: 1.0
seed: 1
"""


def test_twin_record_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("tiny-a", "tiny-b"):
        (tmp_path / f"{name}.yaml").write_text(TINY.format(name=name), encoding="utf-8")
    args = ("twin", "record", "--scenario", "tiny-a.yaml", "--scenario", "tiny-b.yaml")
    result = run_cli(*args, "--out", "data", "--seed", "3", "--quiet", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    data = tmp_path / "data"
    assert result.stdout.splitlines() == [
        str(Path("data") / "tiny-a-explore-s3.parquet"),
        str(Path("data") / "tiny-b-explore-s3.parquet"),
    ]
    recordings = load_recordings(data)
    assert [r.name for r in recordings] == ["tiny-a-explore-s3", "tiny-b-explore-s3"]
    for rec in recordings:
        assert len(rec.frame) == 120
        assert rec.meta.policy == "explore" and rec.meta.seed == 3
        assert rec.frame[list(CMD_COLUMNS)].notna().any().any()

    # Again (in this process from here on): refused with one line, nothing touched.
    tiny_a, tiny_b = str(tmp_path / "tiny-a.yaml"), str(tmp_path / "tiny-b.yaml")
    before = {p.name: p.read_bytes() for p in data.iterdir()}
    again = ["twin", "record", "--scenario", tiny_a, "--scenario", tiny_b, "--out", str(data)]
    assert main([*again, "--seed", "3", "--quiet"]) == 2
    captured = capsys.readouterr()
    line = one_error_line(captured.err)
    assert "tiny-a-explore-s3.parquet: already exists" in line and "--overwrite" in line
    assert captured.out == ""
    assert {p.name: p.read_bytes() for p in data.iterdir()} == before
    assert main([*again, "--seed", "3", "--quiet", "--overwrite"]) == 0
    assert {p.name: p.read_bytes() for p in data.iterdir()} == before  # same seed, same run

    # The site's own control.
    code = main(["twin", "record", "--scenario", tiny_a, "--out", str(data), "--policy", "site"])
    assert code == 0
    site = pd.read_parquet(data / "tiny-a-site-s0.parquet")
    assert site[list(CMD_COLUMNS)].isna().all().all()


def test_twin_record_bad_scenario_records_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "good.yaml").write_text(TINY.format(name="good"), encoding="utf-8")
    (tmp_path / "bad.yaml").write_text("name: t\nduration: 2 parsecs\n", encoding="utf-8")
    out = tmp_path / "data"
    good, bad = str(tmp_path / "good.yaml"), str(tmp_path / "bad.yaml")
    code = main(["twin", "record", "--scenario", good, "--scenario", bad, "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 2
    line = one_error_line(captured.err)
    assert line.startswith("twinloop: error: scenario bad.yaml: duration: ")
    assert captured.out == ""
    assert not out.exists()


def test_twin_needs_a_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["twin"])
    assert info.value.code == 2
    assert "record" in capsys.readouterr().err


def test_twin_record_same_scenario_twice_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY.format(name="tiny"), encoding="utf-8")
    out = tmp_path / "data"
    twice = ["--scenario", str(path), "--scenario", str(path)]
    assert main(["twin", "record", *twice, "--out", str(out), "--overwrite"]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "tiny-explore-s0.parquet: scenario tiny given twice" in line
    assert not out.exists()


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two hours of the tiny scenario, recorded by the CLI: 23 control periods."""
    tmp = tmp_path_factory.mktemp("twin-cli")
    (tmp / "tiny.yaml").write_text(TINY.format(name="tiny"), encoding="utf-8")
    args = ["twin", "record", "--scenario", str(tmp / "tiny.yaml"), "--out", str(tmp / "data")]
    assert main([*args, "--quiet"]) == 0
    return tmp / "data"


def test_twin_fit_then_report(
    tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    twin_dir = tmp_path / "twin"
    fit = ["twin", "fit", "--data", str(tiny_data), "--out", str(twin_dir), "--quiet"]
    small = ["--members", "1", "--iterations", "5", "--horizon", "6"]
    assert main([*fit, *small]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == str(twin_dir)
    assert out[1].startswith("training data (23 periods): inlet 1-step median abs. error ")
    assert "facility MAPE" in out[1] and "cooling MAPE" in out[1]
    assert sorted(p.name for p in twin_dir.iterdir()) == [
        "competence.npz",
        "twin.json",
        "twin.pt",
    ]
    twin = TwinEnsemble.load(twin_dir)
    assert twin.competence is not None and len(twin.competence.train) == 23
    assert len(twin) == 1 and twin.step_s == 300.0
    assert (twin.summary["config"]["iterations"], twin.summary["config"]["horizon"]) == (5, 6)

    # A saved twin is not replaced without --overwrite, and is with it.
    saved = {p.name: p.read_bytes() for p in twin_dir.iterdir()}
    assert main([*fit, *small, "--seed", "1"]) == 2
    captured = capsys.readouterr()
    line = one_error_line(captured.err)
    assert "already holds a saved twin (twin.pt, twin.json)" in line and "--overwrite" in line
    assert captured.out == ""
    assert {p.name: p.read_bytes() for p in twin_dir.iterdir()} == saved
    assert main([*fit, "--members", "1", "--iterations", "1", "--seed", "1", "--overwrite"]) == 0
    assert (twin_dir / "twin.pt").read_bytes() != saved["twin.pt"]
    capsys.readouterr()

    # A twin saved without a competence model (before it existed) gets one from its data.
    (twin_dir / "competence.npz").unlink()
    assert TwinEnsemble.load(twin_dir).competence is None
    comp = ["twin", "competence", "--twin", str(twin_dir), "--data", str(tiny_data)]
    assert main([*comp, "--check", str(tiny_data)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == str(twin_dir / "competence.npz")
    assert out[2].endswith("% of 23 periods outside the twin's data")
    assert TwinEnsemble.load(twin_dir).competence is not None
    assert (
        main(["twin", "competence", "--twin", str(tmp_path / "none"), "--data", str(tiny_data)])
        == 2
    )
    assert "no saved twin" in one_error_line(capsys.readouterr().err)

    # Report; an assimilation track kept with the twin is found and drawn.
    time_h = np.linspace(96.0, 98.0, 25)
    pd.DataFrame(
        {
            "time_h": time_h,
            "coil_ua_mult": np.linspace(1.0, 0.8, 25),
            "inlet_abs_error_c": np.full(25, 0.1),
            "inlet_abs_error_open_c": np.linspace(0.1, 0.4, 25),
        }
    ).to_parquet(twin_dir / "assimilation.parquet")
    (twin_dir / "assimilation.json").write_text(
        json.dumps({"faults": [{"kind": "coil_fouling", "start_h": 97.0}]}), encoding="utf-8"
    )
    report_dir = tmp_path / "report"
    report = ["twin", "report", "--twin", str(twin_dir), "--data", str(tiny_data)]
    assert main([*report, "--out", str(report_dir)]) == 0
    captured = capsys.readouterr()
    out = captured.out.splitlines()
    assert out[0].startswith("held-out data (23 periods): inlet 1-step median abs. error ")
    assert out[1].startswith("targets met: ") and out[1][len("targets met: ")] in "01234"
    assert captured.err.startswith("wrote: ")
    accuracy = json.loads((report_dir / "accuracy.json").read_text(encoding="utf-8"))
    assert accuracy["periods"] == 23 and accuracy["horizon_periods"] == 12
    assert set(accuracy["targets"]) == {
        "inlet_median_abs_error_1step_c",
        "inlet_p95_abs_error_1h_c",
        "facility_mape_percent",
        "cooling_mape_percent",
    }
    names = {p.name for p in report_dir.iterdir()}
    assert {"accuracy.md", "report.html", "timeseries.png", "assimilation.png"} <= names

    # Recordings of another site variant are refused before anything is measured.
    other = tmp_path / "other-site"
    shutil.copytree(tiny_data, other)
    meta = json.loads((other / "tiny-explore-s0.json").read_text(encoding="utf-8"))
    meta["site_variant"] = "no_redundancy"
    (other / "tiny-explore-s0.json").write_text(json.dumps(meta), encoding="utf-8")
    mismatch = ["twin", "report", "--twin", str(twin_dir), "--data", str(other)]
    assert main([*mismatch, "--out", str(tmp_path / "report-2")]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "site no_redundancy, but the twin was fitted on site reference" in line
    assert not (tmp_path / "report-2").exists()


def _bad_data(tmp_path: Path, tiny_data: Path, case: str) -> Path:
    """A data directory with one problem."""
    bad = tmp_path / case
    if case == "empty":
        bad.mkdir()
    elif case == "unreadable":
        bad.mkdir()
        (bad / "x.parquet").write_bytes(b"not parquet")
        (bad / "x.json").write_text("{", encoding="utf-8")
    elif case == "mixed-sites":
        shutil.copytree(tiny_data, bad)
        other = bad / "tiny-explore-s0-copy.json"
        meta = json.loads((bad / "tiny-explore-s0.json").read_text(encoding="utf-8"))
        other.write_text(json.dumps({**meta, "site_seed": 12}), encoding="utf-8")
        shutil.copy(bad / "tiny-explore-s0.parquet", other.with_suffix(".parquet"))
    return bad


@pytest.mark.parametrize(
    ("case", "extra", "message"),
    [
        ("missing", [], "no such directory"),
        ("empty", [], "no recordings"),
        ("unreadable", [], "x.json: cannot read metadata"),
        ("mixed-sites", [], "differs from reference (seed 12, 4 pods"),
        ("good", ["--iterations", "0"], "--iterations must be at least 1 (got 0)"),
        ("good", ["--members", "-1"], "--members must be at least 1 (got -1)"),
        ("good", ["--horizon", "30"], "no run of 31 consecutive control periods (155 min)"),
        ("good", ["--out", "DATA"], "is the folder of recordings"),
        ("good", ["--out", "FILE"], "exists and is not a folder"),
    ],
)
def test_twin_fit_bad_input(
    tiny_data: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    case: str,
    extra: list[str],
    message: str,
) -> None:
    data = tiny_data if case == "good" else _bad_data(tmp_path, tiny_data, case)
    out = tmp_path / "twin"
    args = ["twin", "fit", "--data", str(data), "--out", str(out), "--quiet"]
    (tmp_path / "file").write_text("", encoding="utf-8")
    named = {"DATA": str(data), "FILE": str(tmp_path / "file")}
    extra = [named.get(e, e) for e in extra]
    capsys.readouterr()
    assert main([*args, "--iterations", "1", *extra]) == 2
    captured = capsys.readouterr()
    assert message in one_error_line(captured.err)
    assert captured.out == ""
    assert not out.exists()


def test_twin_report_bad_input(
    tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    out = tmp_path / "report"
    report = ["twin", "report", "--data", str(tiny_data), "--out", str(out)]
    assert main([*report, "--twin", str(tmp_path)]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert f"{tmp_path}: no saved twin here" in line and "twinloop twin fit" in line
    assert main([*report, "--twin", str(tmp_path), "--horizon", "0"]) == 2
    assert "--horizon must be at least 1 (got 0)" in one_error_line(capsys.readouterr().err)
    assert not out.exists()

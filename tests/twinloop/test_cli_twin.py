"""``twinloop twin record``: records scenarios into a data directory; bad input gives one
error line and exit 2, and nothing is overwritten without ``--overwrite``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

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


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "twinloop.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
        check=False,
    )


def _one_error_line(stderr: str) -> str:
    lines = stderr.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got: {stderr!r}"
    assert lines[0].startswith("twinloop: error: "), lines[0]
    return lines[0]


def test_twin_record_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("tiny-a", "tiny-b"):
        (tmp_path / f"{name}.yaml").write_text(TINY.format(name=name), encoding="utf-8")
    args = ("twin", "record", "--scenario", "tiny-a.yaml", "--scenario", "tiny-b.yaml")
    result = _cli(*args, "--out", "data", "--seed", "3", "--quiet", cwd=tmp_path)
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
    line = _one_error_line(captured.err)
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
    line = _one_error_line(captured.err)
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
    line = _one_error_line(capsys.readouterr().err)
    assert "tiny-explore-s0.parquet: scenario tiny given twice" in line
    assert not out.exists()

"""``twinloop reservoir list|show|compare``: readable tables of a real reservoir; a bad
reference or a missing reservoir gives one error line and exit status 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from control.reservoir import Reservoir
from twinloop.cli import main

TWIN_KPIS = {
    "cooling_kwh": 41_234.56,
    "pue": 1.23456,
    "violation_kh_above_27": 0.0,
    "max_inlet_c": 26.4321,
    "fan_kwh": 3_000.0,
}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A reservoir with a pre-evaluated agent (two versions) and a rule baseline."""
    model = tmp_path / "model.zip"
    model.write_bytes(b"weights")
    root = tmp_path / "reservoir"
    with Reservoir(root) as res:
        res.register(
            "fixed-setpoints",
            "rule",
            None,
            hyperparameters={"supply_air_c": 18.0},
            training_scenarios=[],
            description="the site's own control",
            actor="builder",
        )
        res.register("ppo", "drl", model, hyperparameters={}, training_scenarios=["mild"])
        res.register(
            "ppo",
            "drl",
            model,
            hyperparameters={"lr": 0.0003, "gamma": 0.99},
            training_scenarios=["mild", "fouling"],
            parent="ppo@1",
            actor="trainer",
        )
        res.add_evaluation("ppo", on="twin", scenario="hot-week", kpis=TWIN_KPIS)
        res.add_evaluation("ppo", on="plant", scenario="hot-week", kpis={"pue": 1.25})
        res.add_evaluation(
            "fixed-setpoints",
            on="twin",
            scenario="hot-week",
            kpis={"cooling_kwh": 45_000.0, "pue": 1.31, "max_inlet_c": 27.25},
        )
        res.transition("ppo", "pre_evaluated", actor="gate", reason="suite passed")
    return root


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = main(["reservoir", *args])
    out, err = capsys.readouterr()
    return status, out, err


def _one_error_line(stderr: str) -> str:
    lines = stderr.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got: {stderr!r}"
    assert lines[0].startswith("twinloop: error: "), lines[0]
    return lines[0]


def test_list_prints_a_table_of_every_version(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = _run(capsys, "--root", str(root), "list")
    assert status == 0
    header, rule, *rows = out.splitlines()
    assert header.split() == ["name", "version", "kind", "state", "created", "(UTC)", "sha256"]
    assert set(rule.replace(" ", "")) == {"-"}
    with Reservoir(root) as res:
        expected = [
            [r.name, str(r.version), r.kind, r.state, r.artifact_hash[:12]] for r in res.list()
        ]
    assert [row.split()[:4] + row.split()[-1:] for row in rows] == expected
    assert [row.split()[0] for row in rows] == ["fixed-setpoints", "ppo", "ppo"]

    status, out, _ = _run(capsys, "--root", str(root), "list", "--state", "pre_evaluated")
    assert status == 0 and [r.split()[:2] for r in out.splitlines()[2:]] == [["ppo", "2"]]
    status, out, _ = _run(capsys, "list", "--kind", "rule", "--root", str(root))  # root after
    assert status == 0 and [r.split()[0] for r in out.splitlines()[2:]] == ["fixed-setpoints"]
    status, out, err = _run(capsys, "--root", str(root), "list", "--state", "live")
    assert status == 0 and out == "" and "no policies" in err


def test_show_prints_fields_evaluations_and_history(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = _run(capsys, "--root", str(root), "show", "ppo")
    assert status == 0
    with Reservoir(root) as res:
        record = res.get("ppo")
        artifact = res.artifact_path("ppo")
    lines = out.splitlines()
    assert lines[0] == "ppo@2"
    for key, value in [
        ("kind", "drl"),
        ("state", "pre_evaluated"),
        ("parent", "ppo@1"),
        ("training", "mild, fouling"),
        ("artifact", str(artifact)),
        ("sha256", f"{record.artifact_hash} (verified)"),
        ("created", record.created_at),
    ]:
        assert f"  {key:12s} {value}" in lines, key
    assert "  gamma = 0.99" in lines and "  lr = 0.0003" in lines
    evaluations = lines.index("evaluations (2)")
    assert lines[evaluations + 1].split()[:8] == [
        "id",
        "on",
        "scenario",
        "cooling_kwh",
        "pue",
        "violation_kh_above_27",
        "max_inlet_c",
        "fan_kwh",
    ]
    assert lines[evaluations + 3].split()[:8] == [
        "1",
        "twin",
        "hot-week",
        "41,234.6",
        "1.2346",
        "0.000",
        "26.43",
        "3,000",
    ]
    assert (
        lines[evaluations + 4].split()[:8] == ["2", "plant", "hot-week", "—", "1.2500"] + ["—"] * 3
    )
    history = lines.index("history (2)")
    assert lines[history + 3].split()[1:5] == ["trainer", "—", "→", "candidate"]
    assert lines[history + 4].split()[1:] == [
        "gate",
        "candidate",
        "→",
        "pre_evaluated",
        record.artifact_hash[:12],
        "suite",
        "passed",
    ]


def test_show_flags_a_changed_artifact(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with Reservoir(root) as res:
        artifact = res.artifact_path("ppo@1")
    assert artifact is not None
    artifact.write_bytes(b"tampered")
    status, out, _ = _run(capsys, "--root", str(root), "show", "ppo@1")
    assert status == 0 and "(CHANGED since registration" in out
    artifact.unlink()
    status, out, _ = _run(capsys, "--root", str(root), "show", "ppo@1")
    assert status == 0 and "(MISSING)" in out
    status, out, _ = _run(capsys, "--root", str(root), "show", "fixed-setpoints")
    assert "hash of the hyper-parameters" in out and "evaluations (1)" in out


def test_compare_prints_an_aligned_kpi_table(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = _run(capsys, "--root", str(root), "compare", "ppo", "fixed-setpoints@1")
    assert status == 0 and err == ""
    header, _, *rows = out.splitlines()
    columns = ["policy", "kind", "on", "scenario", "cooling_kwh", "pue"]
    columns += ["violation_kh_above_27", "max_inlet_c", "fan_kwh"]
    assert header.split() == columns
    assert [row.split() for row in rows] == [
        ["ppo@2", "drl", "twin", "hot-week", "41,234.6", "1.2346", "0.000", "26.43", "3,000"],
        ["ppo@2", "drl", "plant", "hot-week", "—", "1.2500", "—", "—", "—"],
        ["fixed-setpoints@1", "rule", "twin", "hot-week", "45,000.0", "1.3100", "—", "27.25", "—"],
    ]
    for name in columns[4:]:  # numbers are right-aligned under their column's name
        end = header.index(name) + len(name)
        assert all(row[end - 1] != " " and row[end : end + 1] in ("", " ") for row in rows), name

    status, out, err = _run(
        capsys, "--root", str(root), "compare", "ppo", "fixed-setpoints", "--on", "plant"
    )
    assert status == 0
    assert [row.split() for row in out.splitlines()] == [
        ["policy", "kind", "on", "scenario", "pue"],
        ["------", "----", "-----", "--------", "------"],
        ["ppo@2", "drl", "plant", "hot-week", "1.2500"],
    ]
    assert err == "note: fixed-setpoints@1 has no evaluations on the plant\n"


def test_errors_are_one_line_with_status_2(
    root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = _run(capsys, "--root", str(root), "show", "ghost")
    assert status == 2 and out == ""
    assert _one_error_line(err) == "twinloop: error: unknown policy 'ghost'"
    status, _, err = _run(capsys, "--root", str(root), "compare", "ppo", "ppo@9")
    assert status == 2 and "has no version 9 (latest: 2)" in _one_error_line(err)
    status, _, err = _run(capsys, "--root", str(root), "compare", "ppo@1")
    assert status == 2 and "no evaluations of ppo@1" in _one_error_line(err)
    status, _, err = _run(capsys, "--root", str(tmp_path / "none"), "list")
    assert status == 2 and "no reservoir at" in _one_error_line(err)
    assert not (tmp_path / "none").exists()


def test_default_root_is_twinloop_home_else_runs(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TWINLOOP_HOME", str(root.parent))  # root is <tmp_path>/reservoir
    status, out, _ = _run(capsys, "list")
    assert status == 0 and "fixed-setpoints" in out
    monkeypatch.delenv("TWINLOOP_HOME")
    monkeypatch.chdir(tmp_path)
    status, _, err = _run(capsys, "list")
    assert status == 2 and "no reservoir at runs/reservoir" in _one_error_line(err)
    (tmp_path / "runs").mkdir()
    root.rename(tmp_path / "runs" / "reservoir")
    status, out, _ = _run(capsys, "list")
    assert status == 0 and "ppo" in out


def test_verify_reports_an_intact_history_and_its_anchor(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = _run(capsys, "--root", str(root), "verify")
    with Reservoir(root, create=False) as res:
        head = res.verify_history()
    assert status == 0
    assert out.splitlines() == [
        f"history: intact, {head}",
        f"anchor:  {head.anchor}",
        "artifacts: 3 of 3 intact",
    ]
    status, out, _ = _run(capsys, "--root", str(root), "verify", "--anchor", head.anchor)
    assert status == 0 and "1 anchor(s) match" in out


def test_verify_names_the_first_broken_record_in_one_line(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import sqlite3
    from contextlib import closing

    with closing(sqlite3.connect(root / "reservoir.sqlite", isolation_level=None)) as raw:
        raw.execute("DROP TRIGGER history_no_update")
        raw.execute("UPDATE history SET actor = 'mallory' WHERE id = 2")
    status, out, err = _run(capsys, "--root", str(root), "verify")
    assert status == 2 and out == ""
    assert err.startswith("twinloop: error: history record #2 (ppo@1 — → candidate by mallory")
    assert len(err.strip().splitlines()) == 1


def test_verify_refuses_a_changed_anchor_or_artifact_in_service(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with Reservoir(root, create=False) as res:
        res.transition("ppo", "approved", actor="olga", reason="ok")
        head = res.verify_history()
        artifact = res.artifact_path("ppo")
    assert artifact is not None
    status, _, err = _run(
        capsys, "--root", str(root), "verify", "--anchor", f"{head.id}:{'0' * 64}"
    )
    assert status == 2 and "not the anchored" in err
    for bad in ("12", "x:y", f"1:{'g' * 64}"):
        status, _, err = _run(capsys, "--root", str(root), "verify", "--anchor", bad)
        assert status == 2 and "use ID:HASH" in err
    artifact.write_bytes(b"tampered")
    status, out, err = _run(capsys, "--root", str(root), "verify")
    assert status == 2 and "CHANGED or missing: ppo@2 (approved)" in out
    assert "in service or standing by: ppo@2" in err

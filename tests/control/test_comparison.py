"""Comparison of policies' evaluation runs over a suite (tables, savings, travel, plots)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from control.baselines import FixedSetpoints, TrimAndRespond
from control.comparison import ComparisonError, comparison_table, load_runs, write_comparison_report
from control.evaluation import evaluate
from physics.plant.scenario import load_scenario
from tests.twinloop.cli_process import one_error_line, run_cli

SCENARIO = """\
name: {name}
site: {{variant: reference, seed: {seed}}}
weather: {{file: "pvlib:miami", start: "{start}"}}
workload: {{kind: diurnal, mean_frac: 0.6}}
duration: 4 h
step: 60 s
control_period: 5 min
seed: {seed}
"""


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """fixed-setpoints and trim-and-respond over two 4-h scenarios, written as evaluate does."""
    root = tmp_path_factory.mktemp("compare")
    for name, seed, start in (("hot-a", 3, "07-10"), ("hot-b", 4, "08-02")):
        path = root / f"{name}.yaml"
        path.write_text(SCENARIO.format(name=name, seed=seed, start=start))
        scenario = load_scenario(path)
        for policy in (FixedSetpoints(), TrimAndRespond()):
            evaluate(policy, scenario, on="plant").write(root / policy.name / name)
    return root


def test_totals_savings_and_travel_follow_the_runs(runs_dir: Path) -> None:
    fixed, trim = load_runs(runs_dir / "fixed-setpoints"), load_runs(runs_dir / "trim-and-respond")
    assert (fixed.policy, fixed.on, sorted(fixed.kpis)) == (
        "fixed-setpoints",
        "plant",
        ["hot-a", "hot-b"],
    )
    table, per_scenario = comparison_table(
        [fixed, trim],
        baseline="fixed-setpoints",
        reference="trim-and-respond",
        oracle="trim-and-respond",
    )
    total = sum(trim.kpis[s]["cooling_kwh"] for s in ("hot-a", "hot-b"))
    assert table.loc["trim-and-respond", "cooling_kwh"] == pytest.approx(total)
    assert table.loc["fixed-setpoints", "savings_vs_fixed-setpoints_pct"] == 0.0
    saved = table.loc["trim-and-respond", "savings_vs_fixed-setpoints_pct"]
    assert saved > 0.5
    assert table.loc["fixed-setpoints", "savings_vs_trim-and-respond_pct"] < 0.0
    assert table.loc["trim-and-respond", "share_of_oracle_pct"] == pytest.approx(100.0)
    # Per-scenario savings are savings_percent of the same runs.
    a = [
        json.loads((runs_dir / p / "hot-a" / "kpis.json").read_text())["kpis"]["cooling_kwh"]
        for p in ("fixed-setpoints", "trim-and-respond")
    ]
    assert per_scenario.loc["hot-a", "trim-and-respond"] == pytest.approx(
        (a[0] - a[1]) / a[0] * 100
    )
    # Fixed setpoints never move; trim-and-respond resets its setpoints every period.
    assert table.loc["fixed-setpoints", "travel.supply_air_c"] == 0.0
    assert table.loc["trim-and-respond", "travel.supply_air_c"] > 1.0
    assert table.loc["trim-and-respond", "max_inlet_c"] == max(
        trim.kpis[s]["max_inlet_c"] for s in ("hot-a", "hot-b")
    )


def test_report_files_and_a_run_missing_from_one_policy(runs_dir: Path, tmp_path: Path) -> None:
    partial = tmp_path / "trim-one"
    shutil.copytree(runs_dir / "trim-and-respond" / "hot-a", partial / "hot-a")
    runs = [load_runs(runs_dir / "fixed-setpoints"), load_runs(partial)]
    paths = write_comparison_report(runs, tmp_path / "report", baseline="fixed-setpoints")
    assert [p.name for p in paths] == [
        "comparison.csv",
        "savings_by_scenario.csv",
        "comparison.md",
        "comparison.png",
    ]
    assert all(p.stat().st_size > 0 for p in paths)
    # Totals use only the scenarios every policy ran: hot-b is left out, not counted as zero.
    assert list(pd.read_csv(paths[1])["scenario"]) == ["hot-a"]
    assert "Actuator travel" in paths[2].read_text()


def test_runs_that_cannot_be_compared_are_named(runs_dir: Path, tmp_path: Path) -> None:
    fixed = load_runs(runs_dir / "fixed-setpoints")
    with pytest.raises(ComparisonError, match="no evaluation runs"):
        load_runs(tmp_path)
    with pytest.raises(ComparisonError, match="appears twice"):
        comparison_table([fixed, fixed], baseline="fixed-setpoints")
    with pytest.raises(ComparisonError, match="baseline 'mpc' is not among the runs"):
        comparison_table([fixed], baseline="mpc")
    broken = tmp_path / "broken" / "hot-a"
    broken.mkdir(parents=True)
    (broken / "kpis.json").write_text("{not json")
    with pytest.raises(ComparisonError, match="not an evaluation result"):
        load_runs(tmp_path / "broken")


def test_cli_compare_prints_the_table_and_names_bad_input(runs_dir: Path, tmp_path: Path) -> None:
    ok = run_cli(
        "compare",
        str(runs_dir / "fixed-setpoints"),
        str(runs_dir / "trim-and-respond"),
        "--baseline",
        "fixed-setpoints",
        "--out",
        str(tmp_path / "cmp"),
        cwd=tmp_path,
    )
    assert ok.returncode == 0, ok.stderr
    assert (
        "savings_vs_fixed-setpoints_pct" in ok.stdout
        and (tmp_path / "cmp" / "comparison.png").exists()
    )
    bad = run_cli(
        "compare",
        str(tmp_path / "nowhere"),
        "--baseline",
        "x",
        "--out",
        str(tmp_path / "o"),
        cwd=tmp_path,
    )
    assert bad.returncode == 2
    assert "no evaluation runs" in one_error_line(bad.stderr)

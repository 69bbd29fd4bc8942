"""Gate 1: pass the safe, efficient candidate; refuse each kind of failure with its reason."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from control.evaluation import EvaluationResult
from control.gate import GateConfig, gate1


def _result(policy: str, scenario: str, **kpis: float) -> EvaluationResult:
    base = {
        "cooling_kwh": 1000.0,
        "violation_kh_above_27": 0.0,
        "max_inlet_c": 25.0,
        "max_inlet_spread_c": 0.05,
        "pue": 1.4,
    }
    return EvaluationResult(policy, scenario, "twin", base | kpis, pd.DataFrame(), 1.0)


INCUMBENT = [_result("incumbent", s) for s in ("summer", "heat-wave", "chiller-trip")]


def test_a_safe_candidate_that_saves_passes(tmp_path: Path) -> None:
    cand = [_result("cand", s, cooling_kwh=950.0) for s in ("summer", "heat-wave", "chiller-trip")]
    report = gate1(cand, INCUMBENT)
    assert report.passed and report.reasons == ()
    assert report.savings_percent == pytest.approx(5.0)
    paths = report.write(tmp_path)
    assert "PASSED" in paths[1].read_text()


@pytest.mark.parametrize(
    ("kpis", "reason"),
    [
        ({"violation_kh_above_27": 0.4}, "0.40 K·h above 27 °C"),
        ({"max_inlet_c": 33.5}, "reached 33.5 °C"),
        ({"max_inlet_spread_c": 0.9}, "disagree by 0.90 °C"),
        ({"cooling_kwh": 1000.0}, "saves 0.00 %"),
    ],
)
def test_each_failure_is_refused_with_its_reason(kpis: dict[str, float], reason: str) -> None:
    cand = [
        _result("cand", "summer", cooling_kwh=900.0),
        _result("cand", "heat-wave", cooling_kwh=900.0),
        _result("cand", "chiller-trip", **({"cooling_kwh": 900.0} | kpis)),
    ]
    if "cooling_kwh" in kpis:
        cand = [_result("cand", s, **kpis) for s in ("summer", "heat-wave", "chiller-trip")]
    report = gate1(cand, INCUMBENT)
    assert not report.passed
    assert any(reason in r for r in report.reasons), report.reasons
    assert "FAILED" in report.markdown()


def test_suites_must_match_and_config_is_validated(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="different suites"):
        gate1([_result("cand", "summer")], INCUMBENT)
    with pytest.raises(ValueError, match="non-negative"):
        GateConfig(max_inlet_spread_c=-1.0)
    good = tmp_path / "gate.yaml"
    good.write_text("min_savings_percent: 3\nallowable_max_inlet_c: 30\n")
    assert GateConfig.from_yaml(good).min_savings_percent == 3.0
    bad = tmp_path / "bad.yaml"
    bad.write_text("min_saving: 3\n")
    with pytest.raises(ValueError, match="unknown rule"):
        GateConfig.from_yaml(bad)

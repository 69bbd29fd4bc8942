"""Gate 1: pass the safe, efficient candidate; refuse each kind of failure with its reason."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from control.evaluation import EvaluationResult
from control.gate import GateConfig, gate1


def _result(policy: str, scenario: str, **kpis: Any) -> EvaluationResult:
    base = {
        "cooling_kwh": 1000.0,
        "violation_kh_above_27": 0.0,
        "max_inlet_c": 25.0,
        "max_inlet_spread_c": 0.05,
        "pue": 1.4,
        "extrapolating_share": 0.0,
        "cooling_spread_percent": 1.0,
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
        ({"violation_kh_above_27_worst": 0.3}, "0.30 K·h above 27 °C in the worst member"),
        ({"cooling_spread_percent": 8.0}, "disagree by 8.0 % on cooling energy"),
        ({"extrapolating_share": 0.3}, "extrapolated in 30.0 % of the candidate's periods"),
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


def test_savings_must_hold_in_the_least_favourable_member() -> None:
    # Member 1 predicts the candidate's savings, member 2 predicts none: the twin does not
    # know, and the gate takes the pessimistic member.
    def with_members(policy: str, scenario: str, kwh: list[float]) -> EvaluationResult:
        return _result(policy, scenario, cooling_kwh=sum(kwh) / 2, cooling_kwh_members=kwh)

    scenarios = ("summer", "heat-wave", "chiller-trip")
    incumbent = [with_members("incumbent", s, [1000.0, 1000.0]) for s in scenarios]
    candidate = [with_members("cand", s, [900.0, 1000.0]) for s in scenarios]
    report = gate1(candidate, incumbent)
    assert report.savings_percent == pytest.approx(5.0)
    assert report.pessimistic_savings_percent == pytest.approx(0.0)
    assert not report.passed
    assert any("least favourable member" in r for r in report.reasons)


def test_a_twin_without_competence_cannot_judge() -> None:
    scenarios = ("summer", "heat-wave", "chiller-trip")
    candidate = [_result("cand", s, cooling_kwh=900.0) for s in scenarios]
    for r in candidate:
        r.kpis.pop("extrapolating_share")
    report = gate1(candidate, INCUMBENT)
    assert not report.passed and "no competence model" in report.reasons[-1]
    assert gate1(candidate, INCUMBENT, GateConfig(require_competence=False)).passed


def test_the_verdict_names_where_the_twin_was_blind(tmp_path: Path) -> None:
    spell = {
        "from_h": 4344.5,
        "to_h": 4391.9,
        "periods": 571,
        "max_ratio": 1.4,
        "setpoints": {
            "supply_air_c": 22.0,
            "fan_speed_frac": 0.6,
            "chw_supply_c": 12.0,
            "cw_supply_c": 33.0,
            "economiser_enable": 0.5,
        },
        "unseen": {"economiser_switches": 0.83, "sp.supply_air_c": 0.27},
    }
    candidate = [
        _result("cand", s, cooling_kwh=600.0, extrapolating_share=0.99)
        for s in ("summer", "heat-wave", "chiller-trip")
    ]
    for r in candidate:
        r.kpis["blind_spells"] = [spell]
    report = gate1(candidate, INCUMBENT)
    assert not report.passed
    text = report.reasons[0]
    assert "Jul 01 00:30–Jul 02 23:54" in text and "CW 33.0 °C" in text, text
    assert "economiser on 50 %" in text and "economiser_switches (0.83)" in text
    assert "Where the twin was blind" in report.markdown()
    yaml_file = tmp_path / "gate.yaml"
    yaml_file.write_text("max_extrapolating_share: 1.0\nrequire_competence: false\n")
    cfg = GateConfig.from_yaml(yaml_file)
    assert cfg.max_extrapolating_share == 1.0 and cfg.require_competence is False
    yaml_file.write_text("require_competence: 3\n")
    with pytest.raises(ValueError, match="true or false"):
        GateConfig.from_yaml(yaml_file)

"""Scenario suites: shipped ones load, bad ones are refused with the reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from control.suites import SuiteError, expand, load_suite, shipped_suites


def test_shipped_suites_load_with_their_targets() -> None:
    assert {"pre-evaluation", "held-out"} <= set(shipped_suites())
    pre, held = load_suite("pre-evaluation"), load_suite("held-out")
    assert pre.on == "twin" and held.on == "plant"
    assert len(pre.scenarios) == 5 and all(s.duration_h == 48 for s in pre.scenarios)
    assert all(s.duration_h >= 168 for s in held.scenarios)
    # Held out: no site seed of the twin's training data (11), faults at several times.
    assert all(s.site_seed != 11 for s in held.scenarios)
    kinds = {f.kind for s in held.scenarios for f in s.faults}
    assert {"chiller_trip", "crah_fan_trip", "tower_fan_failure", "coil_fouling"} <= kinds


def test_expand_mixes_suites_and_scenarios(tmp_path: Path) -> None:
    names = [s.name for s in expand(["pre-evaluation", "heat-wave"])]
    assert names[-1] == "heat-wave" and len(names) == 6
    own = tmp_path / "mine.yaml"
    own.write_text("name: mine\nscenarios: [heat-wave, chiller-trip]\n")
    assert [s.name for s in expand([str(own)])] == ["heat-wave", "chiller-trip"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: x\n", "needs a 'scenarios' list"),
        ("scenarios: []\n", "empty"),
        ("scenarios: [heat-wave]\ntarget: moon\n", "target must be"),
        ("scenarios: [heat-wave]\non: twin\n", "unknown field"),
        ("scenarios: [no-such-scenario]\n", r"scenarios\[0\]"),
    ],
)
def test_bad_suites_name_the_problem(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(SuiteError, match=message):
        load_suite(path)

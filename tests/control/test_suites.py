"""Scenario suites: shipped ones load, bad ones are refused with the reason."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from control.suites import SuiteError, expand, load_suite, shipped_suites
from physics.plant.scenario import load_scenario, shipped_scenarios


def test_shipped_suites_load_with_their_targets() -> None:
    assert {"pre-evaluation", "held-out"} <= set(shipped_suites())
    pre, held = load_suite("pre-evaluation"), load_suite("held-out")
    assert pre.on == "twin" and held.on == "plant"
    # Two days each, so gate 1's time stays bounded (7 scenarios since issue 15).
    assert len(pre.scenarios) == 7 and all(s.duration_h == 48 for s in pre.scenarios)
    assert len(held.scenarios) == 10 and all(s.duration_h >= 168 for s in held.scenarios)
    # Held out: no site seed of the twin's training data (11), faults at several times.
    assert all(s.site_seed != 11 for s in held.scenarios)
    kinds = {f.kind for s in held.scenarios for f in s.faults}
    assert {"chiller_trip", "crah_fan_trip", "tower_fan_failure", "coil_fouling"} <= kinds


def test_suites_span_climates_and_seasons() -> None:
    """Not only Miami summers: a temperate site's shoulder season in both suites and a cold
    climate held out, where free cooling decides the savings (issue 15)."""
    pre, held = load_suite("pre-evaluation"), load_suite("held-out")
    assert {"pvlib:miami", "pvlib:greensboro"} <= {s.weather_file for s in pre.scenarios}
    weathers = {s.weather_file for s in held.scenarios}
    assert {"pvlib:miami", "pvlib:greensboro", "pvlib:sand-point"} <= weathers
    for suite in (pre, held):
        shoulder = [
            s
            for s in suite.scenarios
            if s.weather_file == "pvlib:greensboro"
            and float(np.mean(s.weather().at(s.start_h + np.arange(s.duration_h)).wet_bulb_c))
            < 16.0
        ]
        assert shoulder, f"{suite.name} has no temperate shoulder-season scenario"


def test_held_out_stays_held_out() -> None:
    """No shipped scenario outside the held-out suite (training, selection, pre-evaluation,
    the twin's data) runs on a held-out site, and none runs in the new climates' held-out
    weeks (the Miami ones share weeks with others, on other sites)."""
    held = load_suite("held-out").scenarios
    held_names = {s.name for s in held}
    seen = [load_scenario(p) for n, p in shipped_scenarios().items() if n not in held_names]
    assert {s.site_seed for s in held}.isdisjoint(s.site_seed for s in seen)
    for h in (h for h in held if h.weather_file != "pvlib:miami"):
        for s in seen:
            same_weeks = h.weather_file == s.weather_file and (
                h.start_h < s.start_h + s.duration_h and s.start_h < h.start_h + h.duration_h
            )
            assert not same_weeks, f"{s.name} runs in {h.name}'s weather"


def test_expand_mixes_suites_and_scenarios(tmp_path: Path) -> None:
    names = [s.name for s in expand(["pre-evaluation", "heat-wave"])]
    assert names[-1] == "heat-wave" and len(names) == 8
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

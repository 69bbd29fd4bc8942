"""The scenario's forecast field: default medium, the four levels, a bad one named."""

from __future__ import annotations

from pathlib import Path

import pytest

from physics.plant.scenario import FORECAST_LEVELS, ScenarioError, load_scenario

SHORT = """\
name: short
weather: {file: "pvlib:miami", start: "07-01"}
duration: 6 h
"""


def test_forecast_level_defaults_to_medium_and_reads_every_level(tmp_path: Path) -> None:
    path = tmp_path / "short.yaml"
    path.write_text(SHORT, encoding="utf-8")
    assert load_scenario(path).forecast_level == "medium"
    for level in FORECAST_LEVELS:
        path.write_text(SHORT + f"forecast: {{level: {level}}}\n", encoding="utf-8")
        assert load_scenario(path).forecast_level == level


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("forecast: {level: perfect}\n", "forecast.level: unknown forecast level 'perfect'"),
        ("forecast: {lead: 3 h}\n", "forecast.lead: unknown field"),
    ],
)
def test_a_bad_forecast_field_is_named(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(SHORT + text, encoding="utf-8")
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    assert str(info.value).startswith(f"scenario bad.yaml: {message}")
    assert "none, low, medium, high" in str(info.value) or "unknown field" in str(info.value)

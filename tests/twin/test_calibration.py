"""Conformal 90 % intervals from the ensemble's spread, checked on other held-out data."""

from __future__ import annotations

import numpy as np
import pytest

from twin.calibration import (
    OUTPUTS,
    Calibration,
    MemberPredictions,
    calibrate,
    coverage,
    member_predictions,
    split_halves,
)
from twin.dataset import PeriodData
from twin.ensemble import TwinEnsemble


def test_intervals_cover_about_ninety_percent_of_unseen_outcomes(
    ensemble_twin: TwinEnsemble, test_periods: PeriodData
) -> None:
    first, second = split_halves(test_periods)
    calibration = calibrate(member_predictions(ensemble_twin, first, horizon=6))
    assert set(calibration.scale) == set(OUTPUTS)
    checked = coverage(member_predictions(ensemble_twin, second, horizon=6), calibration)
    inside = checked["interpolating"]
    assert inside["windows"] > 20
    for name in OUTPUTS:
        assert 0.7 <= inside[name] <= 1.0, (name, inside)
    assert Calibration.from_dict(calibration.to_dict()) == calibration


def test_conformal_scale_on_known_errors() -> None:
    rng = np.random.default_rng(0)
    n = 4000
    truth = rng.normal(0.0, 1.0, n)
    members = np.stack([np.zeros(n), np.full(n, 0.2), np.full(n, -0.2)])  # spread 0.2
    preds = MemberPredictions(
        {name: members for name in OUTPUTS},
        {name: truth for name in OUTPUTS},
        np.zeros(n, dtype=bool),
    )
    cal = calibrate(preds, alpha=0.1)
    # spread 0.2 + floor 0.2: the scale must stretch 0.4 to the normal's 90 % half-width.
    assert cal.scale["cooling_kw"] * 0.4 == pytest.approx(1.645, rel=0.05)
    fresh = MemberPredictions(
        preds.predictions, {name: rng.normal(0.0, 1.0, n) for name in OUTPUTS}, preds.extrapolating
    )
    assert coverage(fresh, cal)["interpolating"]["cooling_kw"] == pytest.approx(0.9, abs=0.02)
    with pytest.raises(ValueError, match="alpha"):
        calibrate(preds, alpha=1.5)


def test_one_member_cannot_be_calibrated(
    fitted_twin: TwinEnsemble, test_periods: PeriodData
) -> None:
    with pytest.raises(ValueError, match="two members"):
        member_predictions(fitted_twin, test_periods)

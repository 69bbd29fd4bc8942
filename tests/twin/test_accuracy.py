"""The accuracy criteria: a bound on a signed metric judges its magnitude, a bound is met at
equality, and a missing (non-finite) value fails."""

from __future__ import annotations

import dataclasses
import math

import pytest

from twin.accuracy import GUIDELINE_14, TARGETS, Accuracy, measure_accuracy
from twin.dataset import PeriodData
from twin.design import TwinDesign
from twin.training import FitConfig, fit_twin


@pytest.fixture(scope="module")
def accuracy(design: TwinDesign, train_periods: PeriodData, test_periods: PeriodData) -> Accuracy:
    cfg = FitConfig(ensemble_size=1, iterations=5, horizon=6, batch_windows=16)
    return measure_accuracy(fit_twin(design, train_periods, cfg), test_periods, horizon_periods=12)


def test_criteria_judge_signs_bounds_and_missing_values(accuracy: Accuracy) -> None:
    nmbe = next(c for c in GUIDELINE_14 if c.metric == "facility_nmbe_percent")
    mape = next(c for c in TARGETS if c.metric == "facility_mape_percent")
    assert nmbe.check(dataclasses.replace(accuracy, facility_nmbe_percent=-9.9), "1 h")["pass"]
    assert not nmbe.check(dataclasses.replace(accuracy, facility_nmbe_percent=-10.1), "")["pass"]
    assert mape.check(dataclasses.replace(accuracy, facility_mape_percent=2.0), "")["pass"]
    assert not mape.check(dataclasses.replace(accuracy, facility_mape_percent=2.01), "")["pass"]
    missing = mape.check(dataclasses.replace(accuracy, facility_mape_percent=math.nan), "")
    assert missing["value"] is None and missing["pass"] is False

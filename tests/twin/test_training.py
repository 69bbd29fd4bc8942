"""Fitting the twin learns from data, and the saved twin is the same twin."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from twin.accuracy import measure_accuracy
from twin.dataset import PeriodData
from twin.design import TwinDesign
from twin.ensemble import TwinEnsemble, TwinLoadError
from twin.surrogate import PhysicsTwin
from twin.training import FitConfig, fit_twin


@pytest.fixture(scope="module")
def fitted(design: TwinDesign, train_periods: PeriodData) -> TwinEnsemble:
    cfg = FitConfig(ensemble_size=2, iterations=40, batch_windows=48, horizon=6)
    return fit_twin(design, train_periods, cfg)


def test_fitting_beats_the_drawings_on_held_out_data(
    design: TwinDesign, fitted: TwinEnsemble, test_periods: PeriodData
) -> None:
    untrained = TwinEnsemble([PhysicsTwin(design)])
    before = measure_accuracy(untrained, test_periods)
    after = measure_accuracy(fitted, test_periods)
    assert after.inlet_median_abs_error_1step_c < 0.8 * before.inlet_median_abs_error_1step_c
    assert after.inlet_p95_abs_error_1h_c < before.inlet_p95_abs_error_1h_c
    for history in fitted.summary["loss_history"]:
        assert sum(history[-5:]) < 0.75 * sum(history[:5])


def test_ensemble_members_differ_and_report_a_spread(
    fitted: TwinEnsemble, test_periods: PeriodData
) -> None:
    from twin.rollout import rollout

    pred = rollout(fitted, test_periods, test_periods.windows(3)[:20], 3)
    assert pred.inlet_std_c is not None
    assert float(pred.inlet_std_c.mean().detach()) > 0.0


def test_save_and_load_round_trip(
    fitted: TwinEnsemble, test_periods: PeriodData, tmp_path: Path
) -> None:
    fitted.save(tmp_path / "twin")
    loaded = TwinEnsemble.load(tmp_path / "twin")
    a = measure_accuracy(fitted, test_periods)
    b = measure_accuracy(loaded, test_periods)
    assert a == b
    assert loaded.summary["periods"] == fitted.summary["periods"]


def test_loading_nothing_says_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(TwinLoadError, match="twinloop twin fit"):
        TwinEnsemble.load(tmp_path)
    (tmp_path / "twin.json").write_text("{not json")
    torch.save([], tmp_path / "twin.pt")
    with pytest.raises(TwinLoadError, match="cannot load"):
        TwinEnsemble.load(tmp_path)


def test_too_short_data_is_refused(design: TwinDesign, test_periods: PeriodData) -> None:
    short = test_periods.index(torch.arange(5))
    with pytest.raises(ValueError, match="consecutive periods"):
        fit_twin(design, short, FitConfig(ensemble_size=1, iterations=1, horizon=12))

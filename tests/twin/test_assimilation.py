"""Data assimilation: batch-free online tracking of the twin's physical parameters."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from twin.assimilation import (
    OBSERVATION_NAMES,
    EnsembleKalmanAssimilator,
    FilterConfig,
    _chi2_quantile,
    assimilate,
    recovery,
    rolling_median,
    run_frame,
    write_run,
)
from twin.dataset import PeriodData
from twin.ensemble import TwinEnsemble
from twin.report import load_assimilation
from twin.surrogate import THETA_NAMES

UA = THETA_NAMES.index("coil_ua_mult")


@pytest.fixture(scope="module")
def fouling_run(fitted_twin: TwinEnsemble, fouling_periods: PeriodData):  # type: ignore[no-untyped-def]
    assimilator = EnsembleKalmanAssimilator.for_ensemble(fitted_twin)
    return assimilate(assimilator, fouling_periods)


def test_the_filter_follows_coil_fouling(fouling_run, fouling_periods: PeriodData) -> None:  # type: ignore[no-untyped-def]
    hours = fouling_run.time_h - float(fouling_periods.time_h[0])
    before = fouling_run.theta_mean[(hours > 2.0) & (hours < 4.0), UA].mean()
    after = fouling_run.theta_mean[hours > 7.0, UA].mean()
    # 30 % of the UA lost: the estimate falls by about as much.
    assert after / before == pytest.approx(0.7, abs=0.1)
    assert (fouling_run.theta_std[:, UA] > 0).all()


def test_assimilation_keeps_the_forecast_right_after_the_fault(fouling_run) -> None:  # type: ignore[no-untyped-def]
    onset = fouling_run.time_h[0] + 4.0 - 5 / 60
    result = recovery(fouling_run, onset)
    assert result["recovered_after_h"] is not None and result["recovered_after_h"] <= 2.0
    assert result["within_limit"] >= result["within_limit_open"]
    # Where the fouled coils cannot reach their setpoint the nominal twin is off; the
    # assimilated one much less so.
    off = (fouling_run.time_h >= onset) & (fouling_run.inlet_abs_error_open_c > 0.15)
    assert off.sum() >= 3
    with_da = fouling_run.inlet_abs_error_c[off].mean()
    assert with_da < 0.7 * fouling_run.inlet_abs_error_open_c[off].mean()


def test_unexplainable_readings_raise_the_divergence_flag(
    fitted_twin: TwinEnsemble, train_periods: PeriodData
) -> None:
    clean = assimilate(EnsembleKalmanAssimilator.for_ensemble(fitted_twin), train_periods)
    broken = PeriodData(**{k: v.clone() for k, v in train_periods.__dict__.items()})
    broken.hall[300:, 0] += 3.0  # the supply-air sensor reads 3 K high from period 300
    bad = assimilate(EnsembleKalmanAssimilator.for_ensemble(fitted_twin), broken)
    assert clean.diverged[:280].mean() < 0.2
    assert bad.diverged[300:340].mean() > 0.5


def test_written_run_is_what_the_report_reads(fouling_run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    onset = float(fouling_run.time_h[0] + 4.0)
    write_run(fouling_run, tmp_path, [{"kind": "coil_fouling", "start_h": onset}])
    track = load_assimilation(tmp_path)
    assert track is not None
    assert set(THETA_NAMES) <= set(track.parameters)
    assert "nis_window_mean" not in track.parameters
    assert track.faults[0].start_h == onset
    summary = json.loads((tmp_path / "assimilation.json").read_text())
    assert summary["recovery"][0]["onset_h"] == onset
    assert len(run_frame(fouling_run)) == len(fouling_run.time_h)


def test_helpers() -> None:
    # Chi-square 99.9 % quantile with 15 degrees of freedom is 37.70.
    assert _chi2_quantile(15, 0.999) == pytest.approx(37.70, rel=0.01)
    assert rolling_median(np.array([1.0, 3.0, 2.0, 10.0]), 3).tolist() == [2.0, 3.0, 6.0, 10.0]
    with pytest.raises(ValueError, match="need 5 values"):
        FilterConfig(prior_std=(0.1,))
    with pytest.raises(ValueError, match="members"):
        FilterConfig(members=2)
    assert len(FilterConfig().observation_std) == len(OBSERVATION_NAMES)


def test_filter_is_reproducible_from_its_seed(
    fitted_twin: TwinEnsemble, train_periods: PeriodData
) -> None:
    short = train_periods.index(torch.arange(40))

    def run() -> np.ndarray:
        return assimilate(EnsembleKalmanAssimilator.for_ensemble(fitted_twin), short).theta_mean

    assert np.array_equal(run(), run())

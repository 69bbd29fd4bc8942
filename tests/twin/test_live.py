"""The twin following a live site period by period (as the live loop feeds it)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from twin.ensemble import TwinEnsemble
from twin.live import PREDICTED, LiveTwin, prediction_error
from twin.recording import Recording
from twin.surrogate import THETA_NAMES

UA = THETA_NAMES.index("coil_ua_mult")


def test_live_twin_assimilates_each_period_once_and_follows_fouling(
    fitted_twin: TwinEnsemble, fouling_recordings: list[Recording]
) -> None:
    frame: pd.DataFrame = fouling_recordings[0].frame
    meta = fouling_recordings[0].meta
    per = round(meta.control_period_s / meta.step_s)
    twin = LiveTwin(fitted_twin, step_s=meta.step_s, control_period_s=meta.control_period_s)
    updates = []
    # As the live loop calls it: every control period, the last three periods of readings.
    for end in range(per, len(frame) + 1, per):
        window = frame.iloc[max(0, end - 3 * per) : end]
        new = twin.update(window)
        assert len(new) <= 2
        updates += new
        assert twin.update(window) == []  # nothing is assimilated twice
    times = np.array([u.time_h for u in updates])
    assert (np.diff(times) > 0).all()
    assert len(updates) >= len(frame) // per - 4
    hours = times - times[0]
    ua = np.array([u.theta[THETA_NAMES[UA]] for u in updates])
    # Every coil loses 30 % of its UA at hour 4: the live estimate follows it down.
    assert ua[hours > 8.0].mean() / ua[(hours > 1.0) & (hours < 3.5)].mean() < 0.8
    for name in PREDICTED:
        assert all(np.isfinite(u.predicted[name]) and u.predicted_std[name] >= 0 for u in updates)
    inlet_error = np.abs(prediction_error(updates, "rack_inlet_max_c"))
    assert np.median(inlet_error) < 0.6
    cooling = np.abs(prediction_error(updates, "cooling_power_kw"))
    assert np.median(cooling) / np.median([u.measured["cooling_power_kw"] for u in updates]) < 0.1


def test_too_little_data_gives_no_update(
    fitted_twin: TwinEnsemble, fouling_recordings: list[Recording]
) -> None:
    frame = fouling_recordings[0].frame
    twin = LiveTwin(fitted_twin, step_s=60.0, control_period_s=300.0)
    assert twin.update(frame.iloc[:4]) == []
    with pytest.raises(ValueError, match="whole number of steps"):
        LiveTwin(fitted_twin, step_s=60.0, control_period_s=330.0)

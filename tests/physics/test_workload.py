"""physics.workload: synthetic generators, surges and the shipped real traces."""

from __future__ import annotations

import numpy as np
import pytest

from physics.workload import (
    TRACE_DATASETS,
    WorkloadError,
    WorkloadSpec,
    bursty_utilisation,
    diurnal_utilisation,
    make_workload,
    step_surge,
    trace_utilisation,
)

TWO_WEEKS_5MIN_H = np.arange(0.0, 14 * 24.0, 5.0 / 60.0)


def _in_unit_interval(u: np.ndarray) -> bool:
    return bool(np.all((u >= 0.0) & (u <= 1.0)))


@pytest.mark.parametrize("kind", ["constant", "diurnal", "bursty", "trace"])
def test_make_workload_shapes_bounds_determinism(kind: str) -> None:
    spec = WorkloadSpec(kind=kind)  # type: ignore[arg-type]
    u = make_workload(spec, TWO_WEEKS_5MIN_H, n_pods=4, seed=3)
    assert u.shape == (TWO_WEEKS_5MIN_H.size, 4)
    assert u.dtype == np.float64
    assert _in_unit_interval(u)
    np.testing.assert_array_equal(u, make_workload(spec, TWO_WEEKS_5MIN_H, 4, seed=3))
    if kind != "constant":
        assert not np.array_equal(u, make_workload(spec, TWO_WEEKS_5MIN_H, 4, seed=4))
        assert not np.array_equal(u[:, 0], u[:, 1])  # pods differ
    else:
        np.testing.assert_array_equal(u, 0.6)


def test_diurnal_peaks_at_the_peak_hour_on_weekdays() -> None:
    t = np.arange(0.0, 24.0 * 7, 0.25)
    u = diurnal_utilisation(t, 2, mean_frac=0.5, amplitude_frac=0.2, peak_hour=15.0, noise_frac=0)
    for day in range(5):  # Monday..Friday
        today = (t >= 24.0 * day) & (t < 24.0 * (day + 1))
        assert t[today][np.argmax(u[today, 0])] % 24.0 == pytest.approx(15.0)
        assert np.max(u[today, 0]) == pytest.approx(0.7)
        assert np.min(u[today, 0]) == pytest.approx(0.3)
    np.testing.assert_array_equal(u[:, 0], u[:, 1])  # no noise, identical pods


def test_diurnal_weekends_are_about_ten_percent_lower() -> None:
    t = np.arange(0.0, 24.0 * 7, 1.0)
    u = diurnal_utilisation(t, 1, noise_frac=0.0)[:, 0]
    weekday, weekend = u[: 5 * 24].mean(), u[5 * 24 :].mean()
    assert weekend / weekday == pytest.approx(0.9)
    shifted = diurnal_utilisation(t, 1, noise_frac=0.0, start_weekday=5)[:, 0]
    assert shifted[:48].mean() / shifted[48 : 7 * 24].mean() == pytest.approx(0.9)


def test_diurnal_noise_level_and_clipping() -> None:
    t = np.arange(0.0, 24.0 * 7, 0.1)
    clean = diurnal_utilisation(t, 8, noise_frac=0.0)
    noisy = diurnal_utilisation(t, 8, noise_frac=0.02, seed=1)
    assert float(np.std(noisy - clean)) == pytest.approx(0.02, rel=0.05)
    saturated = diurnal_utilisation(t, 2, mean_frac=0.95, amplitude_frac=0.2, noise_frac=0.05)
    assert _in_unit_interval(saturated)
    assert np.any(saturated == 1.0)


def test_bursty_adds_the_expected_burst_energy() -> None:
    t = np.arange(0.0, 2000.0, 0.05)
    base = diurnal_utilisation(t, 4, mean_frac=0.3, amplitude_frac=0.0, seed=5)
    u = bursty_utilisation(t, 4, 0.3, 1.0, 0.1, 1.0, seed=5, amplitude_frac=0.0)
    extra = u - base
    # Expected extra load: rate × duration × height = 1 × 1 × 0.1 (bursts overlap and add).
    assert float(extra.mean()) == pytest.approx(0.1, abs=0.01)
    n_active = extra[u < 1.0] / 0.1
    np.testing.assert_allclose(n_active, np.round(n_active), atol=1e-9)  # whole bursts only
    assert np.max(n_active) >= 2  # overlapping bursts add up
    quiet = bursty_utilisation(t, 4, 0.3, 0.0, 0.1, 1.0, seed=5, amplitude_frac=0.0)
    np.testing.assert_array_equal(quiet, base)


def test_step_surge_only_inside_window_and_pods() -> None:
    t = np.arange(0.0, 10.0, 0.5)
    util = np.full((t.size, 3), 0.5)
    surged = step_surge(util, t, start_h=2.0, duration_h=3.0, delta_frac=0.2, pods=[1])
    window = (t >= 2.0) & (t < 5.0)
    np.testing.assert_allclose(surged[window, 1], 0.7)
    np.testing.assert_array_equal(surged[~window, 1], 0.5)
    np.testing.assert_array_equal(surged[:, [0, 2]], 0.5)
    np.testing.assert_array_equal(util, 0.5)  # input untouched
    everyone = step_surge(util, t, 2.0, 3.0, 0.7)
    np.testing.assert_array_equal(everyone[window], 1.0)  # clipped
    drop = step_surge(util, t, 2.0, 3.0, -0.6)
    np.testing.assert_array_equal(drop[window], 0.0)
    with pytest.raises(WorkloadError, match="pods"):
        step_surge(util, t, 2.0, 3.0, 0.1, pods=[3])
    with pytest.raises(WorkloadError, match="shape"):
        step_surge(util[:-1], t, 2.0, 3.0, 0.1)


def test_alibaba_trace_is_realistic() -> None:
    u = trace_utilisation(TWO_WEEKS_5MIN_H, 4, "alibaba2018", seed=0)
    assert 0.05 < float(u.mean()) < 0.95
    assert float(u.std()) > 0.02
    assert float(np.ptp(u)) > 0.2
    # 5-minute changes are mostly small: the trace is a smooth-ish cluster aggregate.
    assert float(np.median(np.abs(np.diff(u, axis=0)))) < 0.05


def test_trace_is_sampled_exactly_and_tiles_cyclically() -> None:
    stride_h = TRACE_DATASETS["alibaba2018"].stride_s / 3600.0
    t = np.arange(0.0, 40 * 24.0, stride_h)  # 40 days, longer than the ~7.8-day trace
    u = trace_utilisation(t, 2, "alibaba2018", seed=9)
    one = trace_utilisation(t[:1], 1, "alibaba2018", seed=9)
    assert u.shape == (t.size, 2)
    assert u[0, 0] == one[0, 0]
    period_steps = 2243  # rows in the 300-s Alibaba file
    np.testing.assert_allclose(u[period_steps:, 0], u[:-period_steps, 0], atol=1e-12)


@pytest.mark.parametrize("dataset", ["google2019", "azure_v2"])
def test_other_traces_load(dataset: str) -> None:
    u = trace_utilisation(TWO_WEEKS_5MIN_H, 2, dataset)
    assert _in_unit_interval(u)
    assert 0.05 < float(u.mean()) < 0.95
    assert float(u.std()) > 0.01


def test_unknown_trace_raises_workload_error() -> None:
    with pytest.raises(WorkloadError, match="unknown trace dataset"):
        trace_utilisation(TWO_WEEKS_5MIN_H, 2, "borg2011")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("mean_frac", 1.2),
        ("amplitude_frac", -0.1),
        ("burst_height_frac", float("nan")),
        ("burst_rate_per_h", -1.0),
        ("burst_duration_h", 0.0),
        ("dataset", "borg2011"),
        ("kind", "sawtooth"),
    ],
)
def test_spec_validation_names_the_field(field: str, value: object) -> None:
    kwargs: dict[str, object] = {"kind": "diurnal", field: value}
    with pytest.raises(ValueError, match=field):
        WorkloadSpec(**kwargs)  # type: ignore[arg-type]


def test_input_validation() -> None:
    with pytest.raises(WorkloadError, match="n_pods"):
        diurnal_utilisation(TWO_WEEKS_5MIN_H, 0)
    with pytest.raises(WorkloadError, match="time_h"):
        diurnal_utilisation(np.zeros((2, 2)), 1)
    with pytest.raises(WorkloadError, match="base_frac"):
        bursty_utilisation(TWO_WEEKS_5MIN_H, 1, base_frac=1.5)
    assert diurnal_utilisation(np.array([]), 3).shape == (0, 3)

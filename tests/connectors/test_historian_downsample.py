"""The historian's downsampling query on both backends: a long range comes back as at most
one row per time bucket, reduced in the database."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from connectors.historian import HistorianError, Reading, open_historian


@pytest.fixture(params=["sqlite", "postgres"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "h.sqlite")
    return str(request.getfixturevalue("postgres_url"))


def _minutes(point: str, values: np.ndarray, *, start_s: float = 0.0) -> list[Reading]:
    return [
        Reading(point, start_s + 60.0 * k, float(v), "degC", seq=k) for k, v in enumerate(values)
    ]


def test_a_week_of_minutes_comes_back_bucketed(location: str) -> None:
    week = np.arange(7 * 24 * 60, dtype=float)  # 10 080 samples, value = minute number
    with open_historian(location) as h:
        h.write(_minutes("a", week) + _minutes("b", -week))
        frame = h.downsampled(["b", "a"], since_s=0.0, until_s=week[-1] * 60.0, buckets=100)
        assert list(frame.columns) == ["b", "a"] and frame.index.name == "time_s"
        assert 100 <= len(frame) <= 101 and frame.index.is_monotonic_increasing
        width = week[-1] * 60.0 / 100
        # Each row is the bucket's first sample time and the mean of the minutes inside it.
        first = week[week * 60.0 < width]
        assert frame.index[0] == 0.0 and frame.index[1] == 60.0 * len(first)
        assert frame["a"].iloc[0] == pytest.approx(first.mean())
        assert frame["b"].iloc[0] == pytest.approx(-first.mean())
        np.testing.assert_allclose(frame["a"].to_numpy(), -frame["b"].to_numpy())
        peak = h.downsampled(["a"], since_s=0.0, until_s=week[-1] * 60.0, buckets=100, how="max")
        assert peak["a"].iloc[0] == first.max() and peak["a"].max() == week[-1]
        low = h.downsampled(["a"], buckets=10, how="min")  # the points' whole span
        assert low["a"].iloc[0] == 0.0 and len(low) <= 11


def test_short_ranges_keep_every_sample_and_gaps_stay_nan(location: str) -> None:
    with open_historian(location) as h:
        h.write(_minutes("a", np.arange(10.0)))
        h.write([Reading("a", 600.0, math.nan, "degC", quality="bad"), *_minutes("b", [5.0])])
        frame = h.downsampled(["a", "b"], since_s=0.0, until_s=600.0, buckets=1000)
        assert frame["a"].notna().sum() == 10 and math.isnan(frame["a"].iloc[-1])
        assert frame["b"].notna().sum() == 1
        # Each sample at its own time; b's sample shares a's row.
        np.testing.assert_array_equal(frame["a"].dropna().index, 60.0 * np.arange(10))
        assert frame["b"].dropna().index.tolist() == [0.0]
        assert h.downsampled(["a"], since_s=1e6, until_s=2e6).empty
        assert h.downsampled(["nothing"]).empty


def test_bad_requests_are_refused_with_a_message(tmp_path: Path) -> None:
    with open_historian(tmp_path / "h.sqlite") as h:
        with pytest.raises(HistorianError, match="unknown bucket aggregate 'median'"):
            h.downsampled(["a"], since_s=0.0, until_s=1.0, how="median")
        with pytest.raises(HistorianError, match="at least one bucket"):
            h.downsampled(["a"], since_s=0.0, until_s=1.0, buckets=0)
        with pytest.raises(HistorianError, match="not a time range"):
            h.downsampled(["a"], since_s=10.0, until_s=1.0)


def test_across_points_is_the_row_wise_reduction_of_the_series(location: str) -> None:
    rng = np.random.default_rng(5)
    with open_historian(location) as h:
        for k in range(12):
            h.write(_minutes(f"rack_inlet_c.0.{k:02d}", rng.normal(22.0, 1.0, 240)))
        # A sample between the minutes, and one that is bad (NaN) alone at its time.
        h.write([Reading("rack_inlet_c.0.03", 90.0, 35.0, "degC", seq=999)])
        h.write([Reading("rack_inlet_c.0.04", 181.0, math.nan, "degC", "bad", seq=998)])
        racks = h.points("rack_inlet_c.")
        wide = h.series(racks, since_s=60.0, until_s=7200.0)
        for how, reduce in (("max", wide.max(axis=1)), ("min", wide.min(axis=1))):
            rows = h.across(racks, since_s=60.0, until_s=7200.0, how=how)
            assert rows.index.tolist() == wide.index.tolist()
            np.testing.assert_allclose(rows.to_numpy(), reduce.to_numpy())
        assert h.across(racks, since_s=90.0, until_s=90.0).tolist() == [35.0]
        assert math.isnan(h.across(racks, since_s=181.0, until_s=181.0).iloc[0])
        np.testing.assert_allclose(h.across(racks, how="mean"), h.series(racks).mean(axis=1))
        assert h.across([]).empty
        with pytest.raises(HistorianError, match="unknown aggregate 'sum'"):
            h.across(racks, how="sum")

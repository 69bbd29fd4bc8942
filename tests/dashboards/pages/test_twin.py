"""The twin page's callbacks, called as plain functions on a real historian."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from connectors.historian import Historian
from dashboards.context import AppContext
from dashboards.pages import twin
from dashboards.site_time import SiteClock
from tests.dashboards.conftest import TWIN_PARAMS, Built, text_of


def test_options_list_twin_outputs_with_a_measurement(ctx: AppContext) -> None:
    assert twin.output_options(ctx) == [
        {"label": "rack_inlet_max_c (vs the hottest rack inlet)", "value": "rack_inlet_max_c"}
    ]


def test_predicted_vs_measured_error_and_parameters(ctx: AppContext, data: Built) -> None:
    summary, compare, error, params, _ = twin.update(ctx, None, 6.0)
    names = [t.name for t in compare.data]
    assert names == [None, "twin ± 2 σ", "twin (predicted)", "plant (measured)"]
    band_top, band_bottom = compare.data[0], compare.data[1]
    predicted = np.asarray(compare.data[2].y, dtype=float)
    np.testing.assert_allclose(
        np.asarray(band_top.y) - predicted, predicted - np.asarray(band_bottom.y)
    )
    with Historian(data.historian, readonly=True) as hist:
        inlets = hist.series([p for p in hist.points("rack_inlet_c.")])
        twin_pred = hist.series(["twin.rack_inlet_max_c"])["twin.rack_inlet_max_c"].dropna()
    # The error is prediction minus the hottest measured inlet at the same time.
    measured = inlets.max(axis=1).reindex(twin_pred.index)
    expected = (twin_pred - measured).to_numpy()
    np.testing.assert_allclose(np.asarray(error.data[0].y, dtype=float), expected)
    text = text_of(summary)
    assert f"{np.median(np.abs(expected)):.3f} °C" in text
    assert f"{len(expected):,}" in text
    # Parameters: drift from the window's start, per parameter.
    assert {t.name for t in params.data} == set(TWIN_PARAMS)
    ua = next(t for t in params.data if t.name == "ua_scale")
    assert ua.y[0] == pytest.approx(0.0) and ua.y[-1] == pytest.approx(-0.002 * 35 * 100)
    assert "-7.00 %" in text


def test_unknown_output_is_refused_with_the_known_ones(ctx: AppContext) -> None:
    summary, compare, _, _, _ = twin.update(ctx, "no_such_output", 6.0)
    assert text_of(summary) == ("unknown twin output 'no_such_output' (known: rack_inlet_max_c)")
    assert "unknown twin output" in compare.layout.annotations[0].text


def test_an_offset_parameter_drifts_in_kelvin_and_parameters_have_names() -> None:
    """The tower approach bias sits near 0 K: its drift is in kelvin, never a percentage of
    almost nothing ("+96.78 %"); multipliers drift in per cent; known parameters are named in
    an operator's words, unknown ones keep their identifier."""
    offset, unit = twin.parameter_drift(
        "tower_approach_bias_k", 0.0124, pd.Series([0.0124, 0.0244])
    )
    assert unit == "K" and offset.iloc[-1] == pytest.approx(0.012)
    ratio, unit = twin.parameter_drift("coil_ua_mult", 1.0, pd.Series([1.0, 0.93]))
    assert unit == "%" and ratio.iloc[-1] == pytest.approx(-7.0)
    frame = pd.DataFrame(
        {
            "twin.param.tower_approach_bias_k": [0.0124, 0.0244],
            "twin.param.coil_ua_mult": [1.0, 0.93],
        },
        index=[0.0, 300.0],
    )
    fig, rows = twin._parameters(frame, SiteClock.wall("UTC"))
    assert rows == [
        ("cooling-tower approach offset", "0.0124", "0.0244", "+0.01 K"),
        ("CRAH coil conductance", "1", "0.93", "-7.00 %"),
    ]
    assert [t.yaxis for t in fig.data] == ["y2", "y"]


def test_the_range_and_the_shared_zoom_apply_to_every_chart(ctx: AppContext, data: Built) -> None:
    clock = ctx.config.clock
    zoom = [str(clock.local([data.newest_s - 1800.0])[0]), str(clock.local([data.newest_s])[0])]
    _, compare, error, params, line = twin.update(ctx, None, "1h", zoom=zoom)
    assert text_of(line) == "showing last 1 h"
    for fig in (compare, error, params):
        assert fig.layout.uirevision == "1h" and list(fig.layout.xaxis.range) == zoom
        xs = pd.to_datetime(pd.Series([x for t in fig.data for x in t.x]))
        assert xs.min() >= pd.Timestamp(clock.local([data.newest_s - 3600.0])[0])
    _, compare_6h, *_ = twin.update(ctx, None, "6h")
    assert len(compare_6h.data[-1].x) > len(compare.data[-1].x)
    # A range that cannot be used is explained, and the default range drawn.
    *_, refused = twin.update(ctx, None, "absolute", "2001-01-01 01:00", "no end")
    assert "the end 'no end' is not a date and time" in text_of(refused)

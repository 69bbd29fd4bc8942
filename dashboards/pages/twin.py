"""Twin: what the twin predicted against what the plant measured, the error over time with
its uncertainty band, and the assimilated parameters with their drift, over one time range
(:mod:`dashboards.time_range`) whose zoom the three charts share
(:mod:`dashboards.shared_zoom`)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from dash import Dash, Input, Output, State, dcc, html
from dash.development.base_component import Component

from dashboards import points as pts
from dashboards import shared_zoom, time_range
from dashboards.auth import SessionUser
from dashboards.context import AppContext, DataUnavailableError
from dashboards.figures import (
    empty_figure,
    notice,
    number,
    style,
    table,
    thin,
    time_values,
)
from dashboards.ids import TwinIds
from dashboards.markers import add_markers, for_trends
from dashboards.session import signed_in
from dashboards.site_time import SiteClock

PATH = "/twin"
TITLE = "Twin"
ALIGN_TOLERANCE_S = 150.0
"""A prediction is paired with the nearest measurement at most this far away."""
BAND_SIGMAS = 2.0
DEFAULT_RANGE = "6h"
TIME_CHARTS: tuple[tuple[TwinIds, int], ...] = (
    (TwinIds.COMPARE, 1),
    (TwinIds.ERROR, 1),
    (TwinIds.PARAMETERS, 1),
)
"""The page's time charts, which share one zoom, with their number of x-axes."""
RANGE_INPUTS = (
    (TwinIds.WINDOW, "value"),
    (TwinIds.RANGE_START, "value"),
    (TwinIds.RANGE_END, "value"),
)


def layout(ctx: AppContext, user: SessionUser, query: Mapping[str, str]) -> Component:
    options = output_options(ctx)
    chosen = query.get("point") or (str(options[0]["value"]) if options else None)
    return html.Div(
        [
            dcc.Interval(id=TwinIds.INTERVAL, interval=int(ctx.config.refresh_s * 1000)),
            dcc.Store(id=TwinIds.ZOOM),
            html.Div(
                [
                    html.H2(TITLE),
                    dcc.Dropdown(
                        id=TwinIds.POINT,
                        options=options,
                        value=chosen,
                        placeholder="twin output",
                        className="tl-point",
                    ),
                ],
                className="tl-page-head",
            ),
            time_range.range_controls(
                TwinIds.WINDOW,
                TwinIds.RANGE_START,
                TwinIds.RANGE_END,
                TwinIds.RANGE_MESSAGE,
                value=query.get("range") or DEFAULT_RANGE,
            ),
            html.Div(id=TwinIds.SUMMARY),
            dcc.Graph(id=TwinIds.COMPARE, className="tl-graph-wide"),
            html.Div(
                [
                    dcc.Graph(id=TwinIds.ERROR, className="tl-graph"),
                    dcc.Graph(id=TwinIds.PARAMETERS, className="tl-graph"),
                ],
                className="tl-grid",
            ),
        ]
    )


def output_options(ctx: AppContext) -> list[dict[str, str]]:
    """The twin's outputs (``twin.X``) that have a measured counterpart."""
    try:
        names = ctx.historian().points()
    except DataUnavailableError:
        return []
    options = []
    for name in pts.twin_outputs(names):
        if pts.has_measurement(name, names):
            derived = pts.DERIVED_MEASUREMENTS.get(name)
            label = name if derived is None else f"{name} (vs {derived})"
            options.append({"label": label, "value": name})
    return options


def _error_stats(pairs: pd.DataFrame, unit: str) -> html.Table:
    abs_err = pairs["error"].abs()
    rows = [
        ("pairs", f"{len(pairs):,}"),
        ("median |error|", number(float(abs_err.median()), 3, unit)),
        ("p95 |error|", number(float(abs_err.quantile(0.95)), 3, unit)),
        ("bias (mean error)", number(float(pairs["error"].mean()), 3, unit)),
        ("newest error", number(float(pairs["error"].iloc[-1]), 3, unit)),
    ]
    return table(["twin vs plant", "value"], rows)


def _unit(name: str) -> str:
    if name.endswith("_c"):
        return "°C"
    if name.endswith("_kw"):
        return "kW"
    return ""


def _compare(
    name: str, predicted: pd.Series, std: pd.Series | None, actual: pd.Series, clock: SiteClock
) -> go.Figure:
    unit = _unit(name)
    x, x_title = time_values(predicted.index, clock)
    fig = go.Figure()
    if std is not None and not std.dropna().empty:
        band = std.reindex(predicted.index).to_numpy() * BAND_SIGMAS
        fig.add_trace(
            go.Scatter(
                x=x,
                y=predicted.to_numpy() + band,
                mode="lines",
                line={"width": 0},
                showlegend=False,
                hoverinfo="skip",
            )
        )
        fig.add_trace(
            go.Scatter(
                x=x,
                y=predicted.to_numpy() - band,
                mode="lines",
                line={"width": 0},
                fill="tonexty",
                fillcolor="rgba(31,119,180,0.2)",
                name=f"twin ± {BAND_SIGMAS:g} σ",
            )
        )
    fig.add_trace(go.Scatter(x=x, y=predicted, mode="lines", name="twin (predicted)"))
    mx, _ = time_values(actual.index, clock)
    fig.add_trace(go.Scatter(x=mx, y=actual, mode="lines", name="plant (measured)"))
    style(fig, f"{name}: predicted vs measured", height=360, y_title=unit)
    return fig.update_xaxes(title=x_title)


PARAMETER_LABELS: dict[str, str] = {
    "coil_ua_mult": "CRAH coil conductance",
    "chiller_eir_mult": "chiller energy input ratio",
    "recirc_mult": "hot-air recirculation",
    "capacity_mult": "hall thermal capacity",
    "tower_approach_bias_k": "cooling-tower approach offset",
}
"""What the assimilated parameters (``twin.param.*``) are, in an operator's words."""


def parameter_drift(name: str, first: float, values: pd.Series) -> tuple[pd.Series, str]:
    """Drift of one assimilated parameter from the window's start, and its unit: an offset
    (a name ending ``_k``, e.g. the tower approach bias, nominally 0) in kelvin; a
    multiplier in per cent of its starting value. A percentage of an offset near zero says
    nothing (0.01 K to 0.02 K is "+100 %")."""
    if name.endswith("_k"):
        return values - first, "K"
    scale = abs(first) if abs(first) > 1e-9 else 1.0
    return (values - first) / scale * 100.0, "%"


def _parameters(
    frame: pd.DataFrame, clock: SiteClock
) -> tuple[go.Figure, list[tuple[str, str, str, str]]]:
    if frame.empty or frame.dropna(how="all").empty:
        return empty_figure("no assimilated parameters (twin.param.*)"), []
    shown = thin(frame)
    x, x_title = time_values(shown.index, clock)
    fig = go.Figure()
    rows = []
    offsets = False
    for column in frame.columns:
        values = frame[column].dropna()
        if values.empty:
            continue
        first, last = float(values.iloc[0]), float(values.iloc[-1])
        name = column.removeprefix(pts.TWIN_PARAM_PREFIX)
        label = PARAMETER_LABELS.get(name, name)
        drift, unit = parameter_drift(name, first, shown[column])
        newest = float(parameter_drift(name, first, pd.Series([last]))[0].iloc[0])
        offsets = offsets or unit == "K"
        fig.add_trace(
            go.Scatter(
                x=x,
                y=drift,
                mode="lines",
                name=label,
                connectgaps=True,
                customdata=shown[column],
                yaxis="y2" if unit == "K" else "y",
                hovertemplate=f"{label} ({name}): %{{customdata:.4g}} (%{{y:+.2f}} {unit})"
                + "<extra></extra>",
            )
        )
        rows.append((label, f"{first:.4g}", f"{last:.4g}", f"{newest:+.2f} {unit}"))
    style(fig, "Assimilated parameters: drift from the window's start", y_title="%")
    if offsets:
        fig.update_layout(
            yaxis2={"title": "K (offsets)", "overlaying": "y", "side": "right", "showgrid": False}
        )
    return fig.update_xaxes(title=x_title), rows


def update(
    ctx: AppContext,
    name: str | None,
    choice: str | float | None,
    start: str | None = None,
    end: str | None = None,
    zoom: Any = None,
) -> tuple[Any, ...]:
    """(summary, predicted-vs-measured, error, parameters, the range's line) for the twin
    output ``name`` (the first one if None) over the chosen range
    (:func:`dashboards.time_range.chosen`), with the page's shared ``zoom`` on the charts."""
    summary, compare, error, params, line = _update(ctx, name, choice, start, end)
    key = time_range.range_key(choice, start, end)
    for fig in (compare, error, params):
        if fig.data:
            fig.update_layout(uirevision=key)
            shared_zoom.apply(fig, zoom)
    return summary, compare, error, params, line


def _update(
    ctx: AppContext,
    name: str | None,
    choice: str | float | None,
    start: str | None,
    end: str | None,
) -> tuple[Any, ...]:
    try:
        historian = ctx.historian()
        names = historian.points()
    except DataUnavailableError as exc:
        blank = empty_figure("no data")
        return notice(str(exc), kind="error"), blank, blank, blank, []
    latest = historian.latest()
    if not latest:
        blank = empty_figure("no readings yet")
        return notice("the historian holds no readings yet"), blank, blank, blank, []
    rng, line = time_range.chosen(
        choice,
        start,
        end,
        clock=ctx.config.clock,
        newest_s=max(r.time_s for r in latest.values()),
        default=DEFAULT_RANGE,
    )
    since_s, until_s = rng.since_s, rng.until_s
    params = historian.series(
        [p for p in names if p.startswith(pts.TWIN_PARAM_PREFIX)], since_s=since_s, until_s=until_s
    )
    param_fig, param_rows = _parameters(params, ctx.config.clock)
    outputs = pts.twin_outputs(names)
    if name is None and outputs:
        name = outputs[0]
    if name is None:
        msg = "the historian holds no twin predictions (twin.*) yet"
        return notice(msg), empty_figure(msg), empty_figure(msg), param_fig, line
    if name not in outputs:
        msg = f"unknown twin output {name!r} (known: {', '.join(outputs) or 'none'})"
        return notice(msg, kind="error"), empty_figure(msg), empty_figure(msg), param_fig, line
    window = {"since_s": since_s, "until_s": until_s}
    predicted = historian.series([pts.TWIN_PREFIX + name], **window)[pts.TWIN_PREFIX + name]
    std_point = pts.TWIN_STD_PREFIX + name
    std = historian.series([std_point], **window)[std_point] if std_point in names else None
    actual = pts.measured(historian, name, names, **window)
    if actual is None:
        msg = f"the plant has no measurement of {name} to compare with"
        return notice(msg, kind="error"), empty_figure(msg), empty_figure(msg), param_fig, line
    pairs = pts.align(predicted, actual, tolerance_s=ALIGN_TOLERANCE_S)
    compare = _compare(name, thin(predicted.dropna()), std, thin(actual.dropna()), ctx.config.clock)
    from_s = rng.start_or(-math.inf)
    marks = for_trends(ctx, historian, from_s)
    add_markers(compare, marks, ctx.config.clock, from_s, until_s)
    if pairs.empty:
        msg = f"no prediction of {name} lies near a measurement"
        return notice(msg), compare, empty_figure(msg), param_fig, line
    unit = _unit(name)
    shown = thin(pairs)
    ex, x_title = time_values(shown.index, ctx.config.clock)
    error = go.Figure(go.Scatter(x=ex, y=shown["error"], mode="lines", name="predicted − measured"))
    if std is not None:
        sigma = std.dropna().reindex(shown.index, method="nearest").to_numpy() * BAND_SIGMAS
        error.add_trace(
            go.Scatter(
                x=ex, y=sigma, mode="lines", line={"dash": "dot"}, name=f"+{BAND_SIGMAS:g} σ"
            )
        )
        error.add_trace(
            go.Scatter(
                x=ex, y=-sigma, mode="lines", line={"dash": "dot"}, name=f"−{BAND_SIGMAS:g} σ"
            )
        )
    error.add_hline(y=0.0, line={"color": "#888", "width": 1})
    style(error, f"{name}: twin error over time", y_title=unit).update_xaxes(title=x_title)
    summary = html.Div(
        [
            _error_stats(pairs, unit),
            table(["parameter", "window start", "newest", "drift"], param_rows)
            if param_rows
            else notice("no assimilated parameters (twin.param.*)"),
        ],
        className="tl-grid",
    )
    add_markers(error, marks, ctx.config.clock, from_s, until_s)
    return summary, compare, error, param_fig, line


def set_callbacks(app: Dash, ctx: AppContext) -> None:
    @app.callback(Output(TwinIds.POINT, "options"), Input(TwinIds.INTERVAL, "n_intervals"))
    def _options(_: int | None) -> list[dict[str, str]]:
        signed_in(ctx)
        return output_options(ctx)

    @app.callback(
        Output(TwinIds.SUMMARY, "children"),
        Output(TwinIds.COMPARE, "figure"),
        Output(TwinIds.ERROR, "figure"),
        Output(TwinIds.PARAMETERS, "figure"),
        Output(TwinIds.RANGE_MESSAGE, "children"),
        Input(TwinIds.INTERVAL, "n_intervals"),
        Input(TwinIds.POINT, "value"),
        *(Input(component, prop) for component, prop in RANGE_INPUTS),
        State(TwinIds.ZOOM, "data"),
    )
    def _refresh(
        _: int | None,
        name: str | None,
        choice: str | None,
        start: str | None,
        end: str | None,
        zoom: Any,
    ) -> tuple[Any, ...]:
        signed_in(ctx)
        return update(
            ctx, name, choice, start, end, None if time_range.changed(RANGE_INPUTS) else zoom
        )

    time_range.set_callbacks(app, TwinIds.WINDOW, TwinIds.RANGE_START, TwinIds.RANGE_END)
    shared_zoom.set_callbacks(app, TwinIds.ZOOM, TIME_CHARTS, RANGE_INPUTS)

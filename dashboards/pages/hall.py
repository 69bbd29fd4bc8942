"""Live hall: rack-inlet heat map per pod, supply/return temperatures, power by subsystem,
PUE, alarms and stale points, refreshed from the historian every few seconds."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import plotly.graph_objects as go
from dash import Dash, Input, Output, dcc, html
from dash.development.base_component import Component

from connectors.historian import Event, Reading
from dashboards import points as pts
from dashboards.auth import SessionUser
from dashboards.context import AppContext, DataUnavailableError
from dashboards.figures import (
    card,
    empty_figure,
    notice,
    number,
    style,
    table,
    thin,
    time_text,
    time_values,
    window_dropdown,
)
from dashboards.ids import HallIds
from dashboards.session import signed_in

PATH = "/"
TITLE = "Live hall"
PLANT_LIKE_BEFORE_S = 1.0e9
"""Unix time passed this in 2001: a wall-clock site's readings are newer."""


def layout(ctx: AppContext, user: SessionUser, query: Mapping[str, str]) -> Component:
    return html.Div(
        [
            dcc.Interval(id=HallIds.INTERVAL, interval=int(ctx.config.refresh_s * 1000)),
            html.Div(
                [
                    html.H2(TITLE),
                    window_dropdown(HallIds.WINDOW, 3.0),
                ],
                className="tl-page-head",
            ),
            html.Div(id=HallIds.SUMMARY, className="tl-cards"),
            html.Div(
                [
                    dcc.Graph(id=HallIds.HEATMAP, className="tl-graph"),
                    dcc.Graph(id=HallIds.TEMPERATURES, className="tl-graph"),
                    dcc.Graph(id=HallIds.POWER, className="tl-graph"),
                    dcc.Graph(id=HallIds.PUE, className="tl-graph"),
                ],
                className="tl-grid",
            ),
            html.Div(
                [
                    html.Div([html.H3("Alarms"), html.Div(id=HallIds.ALARMS)]),
                    html.Div([html.H3("Stale or bad points"), html.Div(id=HallIds.STALE)]),
                ],
                className="tl-grid",
            ),
        ]
    )


@dataclass(frozen=True)
class Alarm:
    time_s: float
    source: str
    message: str


def alarms(
    latest: dict[str, Reading], events: Sequence[Event], *, inlet_limit_c: float
) -> list[Alarm]:
    """Rack inlets above the limit (hottest first), then the historian's events (newest first)."""
    hot = [
        r
        for name, r in latest.items()
        if pts.RACK_INLET.fullmatch(name) and r.quality == "good" and r.value > inlet_limit_c
    ]
    out = [
        Alarm(r.time_s, "hall", f"{r.point} at {r.value:.1f} °C (above {inlet_limit_c:g} °C)")
        for r in sorted(hot, key=lambda r: -r.value)
    ]
    out += [Alarm(e.time_s, e.source, f"{e.kind}: {e.message}") for e in events]
    return out


def stale_points(
    latest: dict[str, Reading], *, stale_after_s: float
) -> list[tuple[Reading, float]]:
    """Points whose newest reading lags the hall's newest by more than ``stale_after_s``, or
    whose newest reading is not good; with the lag (s), oldest first."""
    if not latest:
        return []
    newest = max(r.time_s for r in latest.values())
    out = [
        (r, newest - r.time_s)
        for r in latest.values()
        if newest - r.time_s > stale_after_s or r.quality != "good"
    ]
    return sorted(out, key=lambda item: (-item[1], item[0].point))


def _heatmap(latest: dict[str, Reading], limit_c: float) -> go.Figure:
    grid = pts.inlet_grid(latest)
    if grid.empty:
        return empty_figure("no rack-inlet readings")
    fig = go.Figure(
        go.Heatmap(
            z=grid.to_numpy(),
            x=[f"rack {r}" for r in grid.columns],
            y=[f"pod {p}" for p in grid.index],
            colorscale="RdYlBu_r",
            zmin=18.0,
            zmax=max(limit_c + 5.0, float(np.nanmax(grid.to_numpy(), initial=limit_c))),
            colorbar={"title": "°C"},
            hovertemplate="%{y}, %{x}: %{z:.2f} °C<extra></extra>",
        )
    )
    return style(fig, "Rack inlet temperature (newest)")


def _temperatures(ctx: AppContext, names: list[str], since_s: float) -> go.Figure:
    present = [(p, label) for p, label in pts.TEMPERATURES if p in names]
    if not present:
        return empty_figure("no supply/return temperature points")
    frame = thin(ctx.historian().series([p for p, _ in present], since_s=since_s))
    x, x_title = time_values(frame.index, ctx.config.clock)
    fig = go.Figure([go.Scatter(x=x, y=frame[p], name=label, mode="lines") for p, label in present])
    return style(fig, "Supply and return temperatures", y_title="°C").update_xaxes(title=x_title)


def _power_and_pue(ctx: AppContext, names: list[str], since_s: float) -> tuple[go.Figure, ...]:
    frame = thin(ctx.historian().series(pts.power_points(names), since_s=since_s))
    parts = pts.subsystem_power(frame)
    if parts.empty or parts.dropna(how="all").empty:
        return empty_figure("no power meters"), empty_figure("no PUE: no power meters")
    x, x_title = time_values(parts.index, ctx.config.clock)
    power = go.Figure(
        [
            go.Scatter(x=x, y=parts[c], name=c, mode="lines", stackgroup="power")
            for c in parts.columns
        ]
    )
    style(power, "Power by subsystem (stacked)", y_title="kW").update_xaxes(title=x_title)
    pue = go.Figure(go.Scatter(x=x, y=pts.pue(frame), name="PUE (meters)", mode="lines"))
    if pts.KPI_PUE in names:
        kpi = thin(ctx.historian().series([pts.KPI_PUE], since_s=since_s)[pts.KPI_PUE])
        kx, _ = time_values(kpi.index, ctx.config.clock)
        pue.add_trace(go.Scatter(x=kx, y=kpi, name="PUE (controller KPI)", mode="lines"))
    style(pue, "PUE", y_title="facility / IT").update_xaxes(title=x_title)
    return power, pue


def update(ctx: AppContext, window_h: float | None) -> tuple[Any, ...]:
    """(summary, heat map, temperatures, power, PUE, alarms, stale) for the newest data
    within ``window_h`` hours of the hall's newest reading."""
    try:
        historian = ctx.historian()
        latest = historian.latest()
    except DataUnavailableError as exc:
        blank = empty_figure("no data")
        return notice(str(exc), kind="error"), blank, blank, blank, blank, [], []
    if not latest:
        blank = empty_figure("no readings yet")
        return notice("the historian holds no readings yet"), blank, blank, blank, blank, [], []
    names = sorted(latest)
    newest_s = max(r.time_s for r in latest.values())
    since_s = newest_s - float(window_h or 3.0) * 3600.0
    limit = ctx.config.inlet_alarm_c
    power, pue_fig = _power_and_pue(ctx, names, since_s)

    inlets = [latest[p] for p in pts.rack_inlets(names) if latest[p].quality == "good"]
    hottest = max(inlets, key=lambda r: r.value, default=None)
    it_kw = sum(latest[p].value for p in pts.matching(names, pts.IT_POWER_PREFIX))
    facility = latest.get(pts.FACILITY_POWER)
    facility_kw = facility.value if facility is not None else float("nan")
    clock = ctx.config.clock
    summary = [
        card("data as of", time_text(newest_s, clock)),
        card("PUE", number(facility_kw / it_kw if it_kw > 0 else None, 3)),
        card("IT power", number(it_kw, 0, "kW")),
        card("facility power", number(facility_kw, 0, "kW")),
        card(
            "hottest rack inlet",
            "—" if hottest is None else f"{hottest.value:.1f} °C ({hottest.point})",
            alarm=hottest is not None and hottest.value > limit,
        ),
    ]
    if not clock.is_plant and newest_s < PLANT_LIKE_BEFORE_S:
        summary.append(
            notice(
                "these times look like an emulated plant's clock, not Unix time: serve the "
                "dashboard with --scenario NAME to show them on the site's calendar",
                kind="error",
            )
        )
    found = alarms(latest, historian.events(limit=20), inlet_limit_c=limit)
    silent_s = ctx.feed.observe(newest_s, ctx.now_s())
    feed_silent = silent_s >= ctx.config.feed_silent_after_s
    if feed_silent:
        message = f"no new readings for {silent_s:,.0f} s: ingestion or the BMS link is down"
        found.insert(0, Alarm(newest_s, "feed", message))
    summary.insert(
        1,
        card("feed", f"silent for {silent_s:,.0f} s" if feed_silent else "live", alarm=feed_silent),
    )
    alarm_table = (
        table(
            ["time", "source", "alarm"],
            [(time_text(a.time_s, ctx.config.clock), a.source, a.message) for a in found],
        )
        if found
        else notice("no alarms", kind="ok")
    )
    stale = stale_points(latest, stale_after_s=ctx.config.stale_after_s)
    stale_table = (
        table(
            ["point", "newest reading", "behind by", "quality"],
            [
                (r.point, time_text(r.time_s, ctx.config.clock), f"{lag:,.0f} s", r.quality)
                for r, lag in stale
            ],
        )
        if stale
        else notice("every point is fresh", kind="ok")
    )
    return (
        summary,
        _heatmap(latest, limit),
        _temperatures(ctx, names, since_s),
        power,
        pue_fig,
        alarm_table,
        stale_table,
    )


def set_callbacks(app: Dash, ctx: AppContext) -> None:
    @app.callback(
        Output(HallIds.SUMMARY, "children"),
        Output(HallIds.HEATMAP, "figure"),
        Output(HallIds.TEMPERATURES, "figure"),
        Output(HallIds.POWER, "figure"),
        Output(HallIds.PUE, "figure"),
        Output(HallIds.ALARMS, "children"),
        Output(HallIds.STALE, "children"),
        Input(HallIds.INTERVAL, "n_intervals"),
        Input(HallIds.WINDOW, "value"),
    )
    def _update(_: int | None, window_h: float | None) -> tuple[Any, ...]:
        signed_in(ctx)
        return update(ctx, window_h)

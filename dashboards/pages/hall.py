"""Live hall: rack-inlet heat map per pod, supply/return temperatures, power by subsystem,
PUE, standing alarms (the model of :mod:`dashboards.alarms`, evaluated at each poll), stale
site points and recent events, refreshed from the historian every few seconds."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import plotly.graph_objects as go
from dash import Dash, Input, Output, dcc, html
from dash.development.base_component import Component

from connectors.historian import HistorianStore, Reading
from control import approval
from dashboards import points as pts
from dashboards.alarms import is_site_point, standing
from dashboards.auth import SessionUser
from dashboards.context import AppContext, DataUnavailableError
from dashboards.control_view import holders
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
from dashboards.markers import add_markers, for_trends
from dashboards.pages.alarms import standing_table
from dashboards.savings import DEFINITION, SAVING_COLUMN, LiveSavings, live_savings
from dashboards.session import signed_in

PATH = "/"
TITLE = "Live hall"
EVENT_ROWS = 20
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
            html.H3("Who holds each writable point"),
            html.Div(id=HallIds.HOLDERS),
            html.H3(["Alarms ", dcc.Link("(acknowledge, shelve)", href="/alarms")]),
            html.Div(id=HallIds.ALARMS),
            html.H3("Stale or bad points"),
            html.Div(id=HallIds.STALE),
            html.H3("Recent events (not alarms unless listed above)"),
            html.Div(id=HallIds.EVENTS),
        ]
    )


def _holders(ctx: AppContext, historian: HistorianStore, latest: dict[str, Reading]) -> Any:
    try:
        with ctx.reservoir() as res:
            live = approval.in_control(res)
    except DataUnavailableError:
        live = None
    rows = holders(historian, latest, None if live is None else live.ref)
    return table(
        ["setpoint", "held by", "TwinLoop's setpoint"],
        [(h.field, h.holder, number(h.twinloop_value, 2)) for h in rows],
        id_="hall-holders-table",
    )


def savings_cards(found: list[LiveSavings]) -> list[Component]:
    """One card per baseline: the newest period's and the cumulative saving (%, kWh) and
    PUE; an estimate says so, with its uncertainty; the definition below them."""
    if not found:
        return [card(SAVING_COLUMN, "— (no policy has written yet)")]
    cards: list[Component] = []
    for s in found:
        last, total = s.latest, s.cumulative
        approx = "≈ " if s.estimate else ""
        spread = (
            f" ± {s.uncertainty_pct:.1f}"
            if s.uncertainty_pct is not None and math.isfinite(s.uncertainty_pct)
            else ""
        )
        value = (
            f"{approx}{total.saved_pct:+.1f}{spread} % since live "
            f"({total.saved_kwh:,.0f} of {total.baseline_kwh:,.0f} kWh, "
            f"{total.periods} periods); last period {approx}{last.saved_pct:+.1f} %; "
            f"PUE {total.pue_actual:.3f} vs {total.pue_baseline:.3f}"
        )
        cards.append(card(f"{SAVING_COLUMN} — {s.baseline}", value))
    cards.append(html.Div(DEFINITION, className="tl-definition", id="hall-savings-definition"))
    return cards


def stale_points(
    latest: dict[str, Reading], *, stale_after_s: float
) -> list[tuple[Reading, float]]:
    """Site points whose newest reading lags the hall's newest by more than
    ``stale_after_s``, or whose newest reading is not good; with the lag (s), oldest first.
    The live loop's own series (``ctl.``, ``shadow.`` ...) are not sensors: they stop by
    design when a policy leaves shadow or control."""
    if not latest:
        return []
    newest = max(r.time_s for r in latest.values())
    out = [
        (r, newest - r.time_s)
        for r in latest.values()
        if is_site_point(r.point) and (newest - r.time_s > stale_after_s or r.quality != "good")
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
    """(summary, heat map, temperatures, power, PUE, standing alarms, stale, events, who
    holds each writable point) for the newest data
    within ``window_h`` hours of the hall's newest reading."""
    try:
        historian = ctx.historian()
        latest = historian.latest()
    except DataUnavailableError as exc:
        blank = empty_figure("no data")
        return notice(str(exc), kind="error"), blank, blank, blank, blank, [], [], [], []
    if not latest:
        blank = empty_figure("no readings yet")
        return (
            notice("the historian holds no readings yet"),
            blank,
            blank,
            blank,
            blank,
            [],
            [],
            [],
            [],
        )
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
    summary: list[Component] = [
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
    summary += savings_cards(live_savings(historian))
    if not clock.is_plant and newest_s < PLANT_LIKE_BEFORE_S:
        summary.append(
            notice(
                "these times look like an emulated plant's clock, not Unix time: serve the "
                "dashboard with --scenario NAME to show them on the site's calendar",
                kind="error",
            )
        )
    try:
        silent_s = ctx.evaluate_alarms(latest)
        shown = standing(ctx.alarms.states(ctx.alarm_log()))
        alarm_table = standing_table(shown, clock, id_="hall-alarms-table")
    except DataUnavailableError as exc:  # e.g. a historian this process may not write
        silent_s = ctx.feed.observe(newest_s, ctx.now_s())
        alarm_table = notice(f"alarms cannot be evaluated: {exc}", kind="error")
    feed_silent = silent_s >= ctx.config.feed_silent_after_s
    summary.insert(
        1,
        card("feed", f"silent for {silent_s:,.0f} s" if feed_silent else "live", alarm=feed_silent),
    )
    events = historian.events(limit=EVENT_ROWS)
    event_table = (
        table(
            ["time", "source", "event"],
            [(time_text(e.time_s, clock), e.source, f"{e.kind}: {e.message}") for e in events],
            wrap=("event",),
        )
        if events
        else notice("no events yet")
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
    marks = for_trends(ctx, historian, since_s)
    temperatures = _temperatures(ctx, names, since_s)
    for fig in (temperatures, power, pue_fig):
        if fig.data:
            add_markers(fig, marks, clock, since_s, newest_s)
    return (
        summary,
        _heatmap(latest, limit),
        temperatures,
        power,
        pue_fig,
        alarm_table,
        stale_table,
        event_table,
        _holders(ctx, historian, latest),
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
        Output(HallIds.EVENTS, "children"),
        Output(HallIds.HOLDERS, "children"),
        Input(HallIds.INTERVAL, "n_intervals"),
        Input(HallIds.WINDOW, "value"),
    )
    def _update(_: int | None, window_h: float | None) -> tuple[Any, ...]:
        signed_in(ctx)
        return update(ctx, window_h)

"""Live hall: rack-inlet heat map per pod, supply/return temperatures, power by subsystem,
PUE, setpoint against actual, a pod's or a rack's inlet trends, standing alarms (the model of
:mod:`control.alarms`, evaluated by the live service; read here from the alarm log, with when
the service last evaluated), stale site points and recent events, refreshed from the
historian every few seconds.

The trends cover one time range (:mod:`dashboards.time_range`: a preset or an absolute
site-local range), read bounded by the historian's downsampling; a zoom on one of them is
shared by the others (:mod:`dashboards.shared_zoom`)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from dash import Dash, Input, Output, State, dcc, html, no_update
from dash.development.base_component import Component

from connectors.historian import HistorianError, HistorianStore, Reading
from control import approval
from control.alarms import can_go_stale, is_site_point, standing
from dashboards import points as pts
from dashboards import rack_drill, shared_zoom, time_range
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
    time_text,
    time_values,
)
from dashboards.ids import HallIds
from dashboards.markers import add_markers, for_trends
from dashboards.pages.alarms import evaluation_notice, standing_table
from dashboards.savings import DEFINITION, SAVING_COLUMN, LiveSavings, live_savings
from dashboards.session import signed_in
from dashboards.setpoint_overlay import overlay_figure, overlay_points
from dashboards.time_range import TimeRange, series_in

PATH = "/"
TITLE = "Live hall"
EVENT_ROWS = 20
PLANT_LIKE_BEFORE_S = 1.0e9
"""Unix time passed this in 2001: a wall-clock site's readings are newer."""
DEFAULT_RANGE = "6h"
TIME_CHARTS: tuple[tuple[HallIds, int], ...] = (
    (HallIds.TEMPERATURES, 1),
    (HallIds.POWER, 1),
    (HallIds.PUE, 1),
    (HallIds.SETPOINTS, len(pts.SETPOINT_MEASURED)),
    (HallIds.DRILL, 1),
)
"""The page's time charts, which share one zoom, with their number of x-axes."""
RANGE_INPUTS = (
    (HallIds.WINDOW, "value"),
    (HallIds.RANGE_START, "value"),
    (HallIds.RANGE_END, "value"),
)


def layout(ctx: AppContext, user: SessionUser, query: Mapping[str, str]) -> Component:
    return html.Div(
        [
            dcc.Interval(id=HallIds.INTERVAL, interval=int(ctx.config.refresh_s * 1000)),
            dcc.Store(id=HallIds.ZOOM),
            html.Div([html.H2(TITLE)], className="tl-page-head"),
            time_range.range_controls(
                HallIds.WINDOW,
                HallIds.RANGE_START,
                HallIds.RANGE_END,
                HallIds.RANGE_MESSAGE,
                value=query.get("range") or DEFAULT_RANGE,
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
            dcc.Graph(id=HallIds.SETPOINTS, className="tl-graph-wide"),
            html.H3("Pod and rack drill-down"),
            html.Div(
                [
                    dcc.Dropdown(
                        id=HallIds.POD,
                        options=_pod_options(ctx),
                        value=_int_or_none(query.get("pod")),
                        placeholder="pod (or click its row on the heat map)",
                        className="tl-point",
                    ),
                    dcc.Dropdown(
                        id=HallIds.RACK,
                        options=[],
                        value=None,
                        placeholder="every rack of the pod, or one rack",
                        className="tl-point",
                    ),
                ],
                className="tl-page-head",
            ),
            dcc.Graph(id=HallIds.DRILL, className="tl-graph-wide"),
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


def _int_or_none(text: str | None) -> int | None:
    try:
        return None if text is None else int(text)
    except ValueError:
        return None


def _pod_options(ctx: AppContext) -> list[dict[str, Any]]:
    try:
        return rack_drill.pod_options(ctx.historian().points("rack_inlet_c."))
    except DataUnavailableError:
        return []


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
        if can_go_stale(r.point) and (newest - r.time_s > stale_after_s or r.quality != "good")
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


def _temperatures(ctx: AppContext, names: list[str], rng: TimeRange) -> go.Figure:
    present = [(p, label) for p, label in pts.TEMPERATURES if p in names]
    if not present:
        return empty_figure("no supply/return temperature points")
    frame = series_in(ctx.historian(), [p for p, _ in present], rng)
    x, x_title = time_values(frame.index, ctx.config.clock)
    fig = go.Figure([go.Scatter(x=x, y=frame[p], name=label, mode="lines") for p, label in present])
    return style(fig, "Supply and return temperatures", y_title="°C").update_xaxes(title=x_title)


def _power_and_pue(ctx: AppContext, names: list[str], rng: TimeRange) -> tuple[go.Figure, ...]:
    frame = series_in(ctx.historian(), pts.power_points(names), rng)
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
        kpi = series_in(ctx.historian(), [pts.KPI_PUE], rng)[pts.KPI_PUE]
        kx, _ = time_values(kpi.index, ctx.config.clock)
        pue.add_trace(go.Scatter(x=kx, y=kpi, name="PUE (controller KPI)", mode="lines"))
    style(pue, "PUE", y_title="facility / IT").update_xaxes(title=x_title)
    return power, pue


def update(
    ctx: AppContext,
    choice: str | float | None,
    start: str | None = None,
    end: str | None = None,
    zoom: Any = None,
) -> tuple[Any, ...]:
    """(summary, heat map, temperatures, power, PUE, setpoint vs actual, the range's line,
    standing alarms, stale, events, who holds each writable point) for the chosen range
    (:func:`dashboards.time_range.chosen`; presets end at the hall's newest reading), the
    trends with the page's shared ``zoom`` (:mod:`dashboards.shared_zoom`) on them."""
    try:
        historian = ctx.historian()
        latest = historian.latest()
    except DataUnavailableError as exc:
        blank = empty_figure("no data")
        return notice(str(exc), kind="error"), blank, blank, blank, blank, blank, [], [], [], [], []
    if not latest:
        blank = empty_figure("no readings yet")
        return (
            notice("the historian holds no readings yet"),
            blank,
            blank,
            blank,
            blank,
            blank,
            [],
            [],
            [],
            [],
            [],
        )
    names = sorted(latest)
    newest_s = max(r.time_s for r in latest.values())
    clock = ctx.config.clock
    rng, range_line = time_range.chosen(
        choice, start, end, clock=clock, newest_s=newest_s, default=DEFAULT_RANGE
    )
    limit = ctx.config.inlet_alarm_c
    power, pue_fig = _power_and_pue(ctx, names, rng)

    inlets = [latest[p] for p in pts.rack_inlets(names) if latest[p].quality == "good"]
    hottest = max(inlets, key=lambda r: r.value, default=None)
    it_kw = sum(latest[p].value for p in pts.matching(names, pts.IT_POWER_PREFIX))
    facility = latest.get(pts.FACILITY_POWER)
    facility_kw = facility.value if facility is not None else float("nan")
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
    site_s = [r.time_s for name, r in latest.items() if is_site_point(name)]
    silent_s = ctx.feed.observe(max(site_s), ctx.now_s()) if site_s else 0.0
    try:
        states, _ = ctx.alarm_states()
        alarm_table: Component = html.Div(
            [
                evaluation_notice(ctx),
                standing_table(standing(states), clock, id_="hall-alarms-table"),
            ]
        )
    except (DataUnavailableError, HistorianError) as exc:
        alarm_table = notice(f"alarms cannot be read: {exc}", kind="error")
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
    marks = for_trends(ctx, historian, rng.start_or(-math.inf))
    temperatures = _temperatures(ctx, names, rng)
    setpoints = overlay_figure(series_in(historian, overlay_points(names), rng), clock)
    key = time_range.range_key(choice, start, end)
    for fig in (temperatures, power, pue_fig, setpoints):
        if fig.data:
            add_markers(fig, marks, clock, rng.start_or(-math.inf), rng.until_s)
            fig.update_layout(uirevision=key)
            shared_zoom.apply(fig, zoom)
    return (
        summary,
        _heatmap(latest, limit),
        temperatures,
        power,
        pue_fig,
        setpoints,
        range_line,
        alarm_table,
        stale_table,
        event_table,
        _holders(ctx, historian, latest),
    )


def drill(
    ctx: AppContext,
    pod: int | None,
    rack: str | None,
    choice: str | float | None,
    start: str | None = None,
    end: str | None = None,
    zoom: Any = None,
) -> go.Figure:
    """The inlet trends of ``pod``'s racks, or of ``rack`` alone, over the chosen range with
    the inlet limit (:mod:`dashboards.rack_drill`), bounded: the highest reading of each
    time bucket, so that no excursion is averaged away."""
    try:
        historian = ctx.historian()
        names = historian.points("rack_inlet_c.")
        latest = historian.latest(names)
    except DataUnavailableError as exc:
        return empty_figure(str(exc))
    if not latest:
        return empty_figure("no rack-inlet readings")
    newest_s = max(r.time_s for r in historian.latest().values())
    clock = ctx.config.clock
    rng, _ = time_range.chosen(
        choice, start, end, clock=clock, newest_s=newest_s, default=DEFAULT_RANGE
    )
    wanted = rack_drill.drill_points(names, pod, rack)
    frame = series_in(historian, wanted, rng, how="max") if wanted else pd.DataFrame()
    fig = rack_drill.drill_figure(frame, pod, rack, ctx.config.inlet_alarm_c, clock)
    if fig.data:
        marks = for_trends(ctx, historian, rng.start_or(-math.inf))
        add_markers(fig, marks, clock, rng.start_or(-math.inf), rng.until_s)
        fig.update_layout(uirevision=time_range.range_key(choice, start, end))
        shared_zoom.apply(fig, zoom)
    return fig


def set_callbacks(app: Dash, ctx: AppContext) -> None:
    @app.callback(
        Output(HallIds.SUMMARY, "children"),
        Output(HallIds.HEATMAP, "figure"),
        Output(HallIds.TEMPERATURES, "figure"),
        Output(HallIds.POWER, "figure"),
        Output(HallIds.PUE, "figure"),
        Output(HallIds.SETPOINTS, "figure"),
        Output(HallIds.RANGE_MESSAGE, "children"),
        Output(HallIds.ALARMS, "children"),
        Output(HallIds.STALE, "children"),
        Output(HallIds.EVENTS, "children"),
        Output(HallIds.HOLDERS, "children"),
        Input(HallIds.INTERVAL, "n_intervals"),
        *(Input(component, prop) for component, prop in RANGE_INPUTS),
        State(HallIds.ZOOM, "data"),
    )
    def _update(
        _: int | None, choice: str | None, start: str | None, end: str | None, zoom: Any
    ) -> tuple[Any, ...]:
        signed_in(ctx)
        return update(ctx, choice, start, end, None if time_range.changed(RANGE_INPUTS) else zoom)

    @app.callback(
        Output(HallIds.DRILL, "figure"),
        Input(HallIds.INTERVAL, "n_intervals"),
        Input(HallIds.POD, "value"),
        Input(HallIds.RACK, "value"),
        *(Input(component, prop) for component, prop in RANGE_INPUTS),
        State(HallIds.ZOOM, "data"),
    )
    def _drill(
        _: int | None,
        pod: int | None,
        rack: str | None,
        choice: str | None,
        start: str | None,
        end: str | None,
        zoom: Any,
    ) -> go.Figure:
        signed_in(ctx)
        return drill(
            ctx, pod, rack, choice, start, end, None if time_range.changed(RANGE_INPUTS) else zoom
        )

    @app.callback(
        Output(HallIds.POD, "value"),
        Input(HallIds.HEATMAP, "clickData"),
        prevent_initial_call=True,
    )
    def _clicked(click: dict[str, Any] | None) -> Any:
        signed_in(ctx)
        pod = rack_drill.pod_of_click(click)
        return no_update if pod is None else pod

    @app.callback(
        Output(HallIds.RACK, "options"),
        Output(HallIds.RACK, "value"),
        Input(HallIds.POD, "value"),
    )
    def _racks(pod: int | None) -> tuple[list[dict[str, Any]], None]:
        signed_in(ctx)
        try:
            names = ctx.historian().points("rack_inlet_c.")
        except DataUnavailableError:
            names = []
        return rack_drill.rack_options(names, pod), None

    time_range.set_callbacks(app, HallIds.WINDOW, HallIds.RANGE_START, HallIds.RANGE_END)
    shared_zoom.set_callbacks(app, HallIds.ZOOM, TIME_CHARTS, RANGE_INPUTS)

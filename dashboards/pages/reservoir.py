"""Reservoir: every policy with kind, version, state and its pre-evaluation KPIs against the
site's own control and the baselines; for the chosen one, its evaluations, history and
report plots."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pandas as pd
import plotly.graph_objects as go
from dash import Dash, Input, Output, State, dcc, html
from dash.development.base_component import Component
from plotly.subplots import make_subplots

from control import approval
from control.reservoir import Reservoir, ReservoirError, ordered_kpis
from dashboards.auth import SessionUser
from dashboards.context import AppContext, DataUnavailableError
from dashboards.figures import empty_figure, notice, number, style, table
from dashboards.ids import FrameIds, ReservoirIds
from dashboards.reservoir_view import per_scenario, policy_rows
from dashboards.savings import DEFINITION, SAVING_COLUMN
from dashboards.session import signed_in
from dashboards.site_time import SiteClock

PATH = "/reservoir"
TITLE = "Policy reservoir"
SERIES_FILE = "series.parquet"
MAX_IMAGE_BYTES = 5 * 1024 * 1024
"""Report images larger than this are listed, not shown."""


def default_policy(ctx: AppContext) -> str | None:
    """The policy the page opens on when the address names none: the one in control, else
    the newest registered (so the page is never half blank while the reservoir holds one)."""
    try:
        with ctx.reservoir() as res:
            live = res.list(state="live")
            records = live or res.list()
    except DataUnavailableError:
        return None
    if not records:
        return None
    return max(records, key=lambda r: r.created_at).ref if not live else live[0].ref


def layout(ctx: AppContext, user: SessionUser, query: Mapping[str, str]) -> Component:
    chosen = query.get("policy") or default_policy(ctx)
    return html.Div(
        [
            dcc.Interval(
                id=ReservoirIds.INTERVAL, interval=int(max(ctx.config.refresh_s, 10) * 1000)
            ),
            html.H2(TITLE),
            html.Div(id=ReservoirIds.TABLE),
            html.Div(
                [
                    html.H3("Policy"),
                    dcc.Dropdown(
                        id=ReservoirIds.POLICY,
                        options=[] if chosen is None else [chosen],
                        value=chosen,
                        placeholder="choose a policy",
                        className="tl-point",
                    ),
                ],
                className="tl-page-head",
            ),
            html.Div(id=ReservoirIds.NOTICE),
            html.Div(id=ReservoirIds.DETAIL),
            dcc.Graph(id=ReservoirIds.PLOTS, className="tl-graph-wide"),
            html.Div(id=ReservoirIds.IMAGES),
        ]
    )


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:+.2f} %"


def overview(ctx: AppContext) -> tuple[Any, list[dict[str, str]]]:
    """(the table of every policy, the policy chooser's options)."""
    try:
        with ctx.reservoir() as res:
            rows = policy_rows(res)
    except DataUnavailableError as exc:
        return notice(str(exc), kind="error"), []
    if not rows:
        return notice("the reservoir holds no policies yet"), []
    base_refs = list(rows[0].savings_vs_baselines_pct)
    columns = ["policy", "kind", "state", "twin scenarios", "cooling (kWh)", "PUE"]
    columns += ["K·h > 27 °C", "max inlet (°C)", SAVING_COLUMN]
    columns += [f"saving vs {b}" for b in base_refs]
    body = [
        [
            dcc.Link(r.ref, href=f"{PATH}?policy={r.ref}"),
            r.kind,
            html.Span(r.state, className=f"tl-state tl-state-{r.state}"),
            str(r.scenarios),
            number(r.cooling_kwh, 0),
            number(r.pue, 3),
            number(r.violation_kh_above_27, 2),
            number(r.max_inlet_c, 2),
            _pct(r.savings_vs_site_control_pct),
            *[_pct(r.savings_vs_baselines_pct[b]) for b in base_refs],
        ]
        for r in rows
    ]
    options = [{"label": f"{r.ref} ({r.state})", "value": r.ref} for r in rows]
    return html.Div([table(columns, body), notice(DEFINITION)]), options


def policy_from_search(search: str | None) -> str | None:
    """The ``policy`` of a ``?policy=NAME@V`` query, if any."""
    values = parse_qs((search or "").lstrip("?")).get("policy")
    return values[0] if values else None


def _fields(res: Reservoir, ref: str, clock: SiteClock) -> html.Div:
    record = res.get(ref)
    current = res.current_hash(record.ref)
    verified = (
        "verified"
        if current == record.artifact_hash
        else ("MISSING" if current is None else "CHANGED since registration")
    )
    rows = [
        ("kind", record.kind),
        ("state", record.state),
        ("sha256", f"{record.artifact_hash[:16]}… ({verified})"),
        ("parent", record.parent or "—"),
        ("training scenarios", ", ".join(record.training_scenarios) or "—"),
        ("description", record.description or "—"),
        ("created", clock.wall_text(record.created_at)),
    ]
    rows += [(f"hyper-parameter {k}", str(v)) for k, v in sorted(record.hyperparameters.items())]
    return html.Div([html.H3(record.ref), table(["field", "value"], rows)])


def _evaluations(res: Reservoir, ref: str) -> html.Div:
    evaluations = res.evaluations(ref)
    if not evaluations:
        return html.Div([html.H3("Evaluations"), notice("no evaluations yet")])
    names = ordered_kpis({k for e in evaluations for k in e.kpis})[:8]
    rows = [
        [str(e.id), e.on, e.scenario, *[number(e.kpis.get(k), 3) for k in names]]
        for e in evaluations
    ]
    return html.Div([html.H3("Evaluations"), table(["id", "on", "scenario", *names], rows)])


def _comparison(res: Reservoir, ref: str) -> html.Div:
    others, rows = per_scenario(res, ref)
    if not rows:
        return html.Div()
    columns = ["scenario", "cooling (kWh)"]
    for other in others:
        columns += [f"{other} (kWh)", f"saving vs {other}"]
    body = []
    for row in rows:
        cells = [row.scenario, number(row.cooling_kwh, 0)]
        for other in others:
            theirs = row.others_kwh[other]
            saving = (
                None
                if theirs is None or row.cooling_kwh is None or theirs <= 0
                else (theirs - row.cooling_kwh) / theirs * 100.0
            )
            cells += [number(theirs, 0), _pct(saving)]
        body.append(cells)
    title = (
        "Cooling energy in the twin against the site's own control, the baselines and the "
        "live policy"
    )
    return html.Div([html.H3(title), table(columns, body)])


def _history(res: Reservoir, ref: str, clock: SiteClock) -> html.Div:
    rows = [
        (
            clock.wall_text(h.at),
            h.actor,
            approval.change_text(h),
            h.reason,
            (h.artifact_hash or "—")[:12],
        )
        for h in reversed(res.history(ref))
    ]
    return html.Div([html.H3("History"), table(["at", "who", "change", "why", "sha256"], rows)])


def _hours(frame: pd.DataFrame, duration_h: float | None) -> pd.Series:
    """Hours from the run's start of each period: from ``time_h`` where the run kept it
    (the plant), else from the period count and the run's duration (the twin)."""
    if "time_h" in frame.columns and frame["time_h"].notna().all():
        hours: pd.Series = frame["time_h"] - float(frame["time_h"].iloc[0])
        return hours
    period_h = (duration_h or 0.0) / max(len(frame), 1) or 1.0
    return pd.Series(range(len(frame)), index=frame.index, dtype=float) * period_h


def report_plots(res: Reservoir, ref: str) -> go.Figure:
    """Per scenario of the policy's evaluations: cooling energy per control period and the
    hottest rack inlet, from the series each report kept."""
    runs: list[tuple[str, pd.DataFrame]] = []
    for e in res.evaluations(ref):
        path = None if e.report_dir is None else e.report_dir / SERIES_FILE
        if path is not None and path.is_file():
            frame = pd.read_parquet(path)
            if {"cooling_kwh", "max_inlet_c"} <= set(frame.columns):
                frame["hours"] = _hours(frame, e.kpis.get("duration_h"))
                runs.append((f"{e.scenario} ({e.on})", frame))
    if not runs:
        return empty_figure(f"{ref}: no report series ({SERIES_FILE}) stored with its evaluations")
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08)
    for label, frame in runs:
        hours = frame["hours"]
        fig.add_trace(
            go.Scatter(
                x=hours, y=frame["cooling_kwh"], name=label, mode="lines", legendgroup=label
            ),
            row=1,
            col=1,
        )
        fig.add_trace(
            go.Scatter(
                x=hours,
                y=frame["max_inlet_c"],
                name=label,
                mode="lines",
                legendgroup=label,
                showlegend=False,
            ),
            row=2,
            col=1,
        )
    fig.add_hline(y=27.0, line={"dash": "dash", "color": "#c00", "width": 1}, row=2, col=1)
    fig.update_yaxes(title_text="cooling (kWh / period)", row=1, col=1)
    fig.update_yaxes(title_text="hottest inlet (°C)", row=2, col=1)
    fig.update_xaxes(title_text="hours from the scenario's start", row=2, col=1)
    return style(fig, f"{ref}: pre-evaluation runs", height=520)


def report_images(res: Reservoir, ref: str) -> list[Component]:
    """The PNG plots kept in the policy's report folders."""
    out: list[Component] = []
    for e in res.evaluations(ref):
        if e.report_dir is None or not e.report_dir.is_dir():
            continue
        for png in sorted(Path(e.report_dir).rglob("*.png")):
            caption = f"{e.scenario} ({e.on}): {png.name}"
            if png.stat().st_size > MAX_IMAGE_BYTES:
                out.append(notice(f"{caption}: too large to show ({png})"))
                continue
            data = base64.b64encode(png.read_bytes()).decode("ascii")
            out.append(
                html.Figure(
                    [
                        html.Img(src=f"data:image/png;base64,{data}", className="tl-report-image"),
                        html.Figcaption(caption),
                    ]
                )
            )
    return out


def detail(ctx: AppContext, ref: str | None) -> tuple[Any, Any, go.Figure, Any]:
    """(notice, detail, plots, images) for the policy ``ref``; a clear notice and nothing
    else for an unknown one."""
    if not ref:
        return (
            notice("choose a policy to see its evidence"),
            [],
            empty_figure("no policy chosen"),
            [],
        )
    try:
        with ctx.reservoir() as res:
            fields = _fields(res, ref, ctx.config.clock)
            canonical = res.get(ref).ref
            body = [
                fields,
                _evaluations(res, canonical),
                _comparison(res, canonical),
                _history(res, canonical, ctx.config.clock),
            ]
            return [], body, report_plots(res, canonical), report_images(res, canonical)
    except (ReservoirError, DataUnavailableError) as exc:
        return notice(str(exc), kind="error"), [], empty_figure("no such policy"), []


def set_callbacks(app: Dash, ctx: AppContext) -> None:
    @app.callback(
        Output(ReservoirIds.TABLE, "children"),
        Output(ReservoirIds.POLICY, "options"),
        Input(ReservoirIds.INTERVAL, "n_intervals"),
    )
    def _overview(_: int | None) -> tuple[Any, list[dict[str, str]]]:
        signed_in(ctx)
        return overview(ctx)

    @app.callback(
        Output(ReservoirIds.NOTICE, "children"),
        Output(ReservoirIds.DETAIL, "children"),
        Output(ReservoirIds.PLOTS, "figure"),
        Output(ReservoirIds.IMAGES, "children"),
        Input(ReservoirIds.POLICY, "value"),
        State(FrameIds.URL, "search"),
    )
    def _detail(ref: str | None, search: str | None) -> tuple[Any, Any, go.Figure, Any]:
        signed_in(ctx)
        # The address names the policy when the chooser has none (e.g. an unknown one).
        return detail(ctx, ref or policy_from_search(search))

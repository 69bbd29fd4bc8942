"""Shadow: the policy in shadow (else the last one that was) — what it would have written
beside what the site did, per writable setpoint, and the twin's forecast under both, on the
site's time base; a summary table; and the operator's step that takes it live, behind a
confirmation in the browser and the reservoir's rule of how many operators must approve
(:func:`control.approval.promote`). Anyone signed in can see the page; only an operator can
promote, and the server checks that on every request (:mod:`dashboards.actions`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import plotly.graph_objects as go
from dash import Dash, Input, Output, State, dcc, html
from dash.development.base_component import Component

from control import approval
from dashboards.actions import act, decided
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
)
from dashboards.ids import ShadowIds
from dashboards.markers import add_markers, for_trends
from dashboards.session import current_session, if_signed_in, signed_in
from dashboards.shadow_view import (
    FORECASTS,
    LABELS,
    ForecastComparison,
    SetpointComparison,
    ShadowWindow,
    compare_forecasts,
    compare_setpoints,
    mean_or_nan,
    shadow_policy,
    shadow_window,
)

PATH = "/shadow"
TITLE = "Shadow"
PROMOTE_QUESTION = (
    "Promote the policy in shadow to live? It will write the setpoints from the next control "
    "period, behind the shield and the watchdog. Your approval is recorded under your name; "
    "where the site needs more than one operator, it goes live when a different operator "
    "confirms."
)


def layout(ctx: AppContext, user: SessionUser, query: Mapping[str, str]) -> Component:
    viewer = not user.is_operator
    role_note = (
        notice(f"{user.name} is a viewer: you can see the comparison but not promote")
        if viewer
        else html.Div()
    )
    return html.Div(
        [
            dcc.Interval(id=ShadowIds.INTERVAL, interval=int(ctx.config.refresh_s * 1000)),
            dcc.Store(id=ShadowIds.POLICY),
            dcc.Store(id=ShadowIds.DECIDED),
            html.H2(TITLE),
            html.Div(id=ShadowIds.CARDS, className="tl-cards"),
            html.H3("Candidate vs the site, over the shadow window"),
            html.Div(id=ShadowIds.SUMMARY),
            html.Div(id=ShadowIds.FIGURES, className="tl-grid"),
            html.H3("Promote to live"),
            role_note,
            html.Div(
                [
                    dcc.Textarea(
                        id=ShadowIds.REASON,
                        placeholder=(
                            "reason, kept in the audit log (required; at most "
                            f"{ctx.config.max_reason_chars} characters)"
                        ),
                        maxLength=ctx.config.max_reason_chars,
                        className="tl-reason",
                        disabled=viewer,
                    ),
                    dcc.ConfirmDialogProvider(
                        html.Button(
                            "Promote to live",
                            id=ShadowIds.PROMOTE_BUTTON,
                            disabled=viewer,
                            className="tl-button",
                        ),
                        id=ShadowIds.PROMOTE,
                        message=PROMOTE_QUESTION,
                    ),
                ],
                className="tl-decide",
            ),
            html.Div(id=ShadowIds.MESSAGE, role="status"),
        ]
    )


def _setpoint_figure(
    ctx: AppContext, c: SetpointComparison, window: ShadowWindow, marks: list[Any]
) -> go.Figure:
    label, unit = LABELS[c.field]
    if c.periods == 0:
        return empty_figure(f"{label}: no shadow readings")
    clock = ctx.config.clock
    traces: list[go.Scatter] = []
    for column, name, dash_style in (
        ("candidate", f"{window.ref} would have written", "solid"),
        ("written", "TwinLoop wrote (live policy)", "dot"),
        ("measured", "site measured", "dash"),
    ):
        series = thin(c.frame[column].dropna())
        if series.empty:
            continue
        x, _ = time_values(series.index, clock)
        shape = "hv" if column != "measured" else "linear"
        traces.append(
            go.Scatter(
                x=x,
                y=series,
                name=name,
                mode="lines",
                line={"dash": dash_style, "shape": shape},
            )
        )
    fig = go.Figure(traces)
    style(fig, f"{label} setpoint", y_title=unit).update_xaxes(title=clock.axis_title())
    fig.update_layout(uirevision=f"{window.ref}-{c.field}")  # keep the zoom across refreshes
    return add_markers(fig, marks, clock, window.start_s, window.end_s)


def _forecast_figure(
    ctx: AppContext, c: ForecastComparison, window: ShadowWindow, marks: list[Any]
) -> go.Figure:
    _, label, unit, _ = next(f for f in FORECASTS if f[0] == c.name)
    if c.frame["candidate"].dropna().empty:
        return empty_figure(f"{label}: no twin forecast under the candidate's setpoints")
    clock = ctx.config.clock
    traces: list[go.Scatter] = []
    for column, name, dash_style in (
        ("candidate", f"twin forecast under {window.ref}", "solid"),
        ("applied", "twin forecast under what ran", "dot"),
        ("measured", "measured", "dash"),
    ):
        series = thin(c.frame[column].dropna())
        if series.empty:
            continue
        x, _ = time_values(series.index, clock)
        traces.append(go.Scatter(x=x, y=series, name=name, mode="lines", line={"dash": dash_style}))
    fig = go.Figure(traces)
    style(fig, f"Twin's forecast: {label}", y_title=unit).update_xaxes(title=clock.axis_title())
    fig.update_layout(uirevision=f"{window.ref}-{c.name}")
    return add_markers(fig, marks, clock, window.start_s, window.end_s)


def summary_rows(
    setpoints: list[SetpointComparison], forecasts: list[ForecastComparison]
) -> list[tuple[str, ...]]:
    """One row per setpoint (periods, means, mean and largest difference) and per twin
    forecast (the candidate's minus what ran)."""
    rows: list[tuple[str, ...]] = []
    for c in setpoints:
        label, unit = LABELS[c.field]
        diff = c.difference()
        at = c.frame["candidate"].notna()
        rows.append(
            (
                f"{label} ({unit})",
                str(c.periods),
                number(mean_or_nan(c.frame["candidate"]), 2),
                number(mean_or_nan(c.frame["site_did"][at]), 2),
                number(mean_or_nan(diff), 2),
                number(float(diff.abs().max()) if len(diff) else None, 2),
            )
        )
    for f in forecasts:
        _, label, unit, _ = next(x for x in FORECASTS if x[0] == f.name)
        both = f.frame[["candidate", "applied"]].dropna()
        diff = both["candidate"] - both["applied"]
        rows.append(
            (
                f"twin forecast: {label} ({unit})",
                str(len(both)),
                number(mean_or_nan(both["candidate"]), 2),
                number(mean_or_nan(both["applied"]), 2),
                number(mean_or_nan(diff), 2),
                number(float(diff.abs().max()) if len(diff) else None, 2),
            )
        )
    return rows


SUMMARY_COLUMNS = (
    "setpoint",
    "periods in shadow",
    "candidate (mean)",
    "site did (mean)",
    "mean difference",
    "largest difference",
)


def _cards(ctx: AppContext, window: ShadowWindow | None, ref: str, state: str) -> list[Any]:
    clock = ctx.config.clock
    cards: list[Any] = [card("policy", ref), card("state", state)]
    if window is not None:
        until = "now (still in shadow)" if window.ongoing else time_text(window.end_s, clock)
        cards += [
            card("in shadow since", time_text(window.start_s, clock)),
            card("until", until),
        ]
    try:
        with ctx.reservoir() as res:
            if state in ("shadow", "standby"):
                status = approval.go_live_status(res, ref)
                who = ", ".join(status.approved_by) or "nobody yet"
                cards.append(
                    card(
                        "approvals to go live",
                        f"{len(status.approved_by)} of {status.required} ({who})",
                    )
                )
    except (DataUnavailableError, approval.ApprovalError) as exc:
        cards.append(notice(str(exc), kind="error"))
    return cards


def view(ctx: AppContext) -> tuple[Any, Any, Any, str | None]:
    """(cards, summary, figures, the policy shown)."""
    try:
        with ctx.reservoir() as res:
            record = shadow_policy(res)
    except DataUnavailableError as exc:
        return notice(str(exc), kind="error"), [], [], None
    if record is None:
        return notice("no policy has been in shadow yet"), [], [], None
    try:
        historian = ctx.historian()
        window = shadow_window(historian, record)
    except DataUnavailableError as exc:
        return (
            _cards(ctx, None, record.ref, record.state),
            notice(str(exc), kind="error"),
            [],
            record.ref,
        )
    cards = _cards(ctx, window, record.ref, record.state)
    if window is None:
        text = f"the live loop has not run {record.ref} in shadow yet (no shadow readings)"
        return cards, notice(text), [], record.ref
    setpoints = compare_setpoints(historian, window)
    forecasts = compare_forecasts(historian, window)
    summary = table(SUMMARY_COLUMNS, summary_rows(setpoints, forecasts), id_="shadow-summary-table")
    marks = for_trends(ctx, historian, window.start_s)
    figures = [
        dcc.Graph(figure=_setpoint_figure(ctx, c, window, marks), className="tl-graph")
        for c in setpoints
    ] + [
        dcc.Graph(figure=_forecast_figure(ctx, c, window, marks), className="tl-graph")
        for c in forecasts
    ]
    return cards, summary, figures, record.ref


def decide(
    ctx: AppContext, session: dict[str, Any], ref: str | None, reason: str | None
) -> tuple[Any, Any, Any]:
    """(message, reason box, decision stamp) after a confirmed "Promote to live"."""
    outcome = act(ctx, session, "promote_live", ref, reason)
    return decided(outcome, ctx.now_s())


def refresh(ctx: AppContext, session: dict[str, Any]) -> tuple[Any, ...]:
    """(cards, summary, figures, policy); nothing without a valid session."""
    return if_signed_in(ctx, session, 4, lambda: view(ctx))


def set_callbacks(app: Dash, ctx: AppContext) -> None:
    @app.callback(
        Output(ShadowIds.MESSAGE, "children"),
        Output(ShadowIds.REASON, "value"),
        Output(ShadowIds.DECIDED, "data"),
        Input(ShadowIds.PROMOTE, "submit_n_clicks"),  # confirmed in the browser's dialog
        State(ShadowIds.POLICY, "data"),
        State(ShadowIds.REASON, "value"),
        prevent_initial_call=True,
    )
    def _decide(_: int | None, ref: str | None, reason: str | None) -> tuple[Any, Any, Any]:
        # No session check here: the action itself answers an expired one with a message.
        return decide(ctx, current_session(), ref, reason)

    @app.callback(
        Output(ShadowIds.CARDS, "children"),
        Output(ShadowIds.SUMMARY, "children"),
        Output(ShadowIds.FIGURES, "children"),
        Output(ShadowIds.POLICY, "data"),
        Input(ShadowIds.INTERVAL, "n_intervals"),
        Input(ShadowIds.DECIDED, "data"),
    )
    def _refresh(_: int | None, __: float | None) -> tuple[Any, ...]:
        signed_in(ctx)
        return refresh(ctx, current_session())

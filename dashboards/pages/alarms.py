"""Alarms: what stands (active or unacknowledged) by severity, what is shelved and until when,
and the alarm log's history; an operator acknowledges, shelves (with a reason) and takes
alarms off the shelf. The model is :mod:`control.alarms`; the live service evaluates it
(:mod:`control.alarm_loop`) and this page only reads the log, says when the service last
evaluated (plainly, when none does: an archived run, a stopped service) and appends the
operators' answers; the server checks the role on every answer
(:mod:`dashboards.alarm_actions`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

import dash
from dash import Dash, Input, Output, State, dcc, html
from dash.development.base_component import Component

from connectors.historian import ALARM_SEVERITIES, AlarmRecord, HistorianError
from control.alarms import AlarmState, standing
from dashboards.actions import decided
from dashboards.alarm_actions import SHELF_HOURS, answer
from dashboards.auth import SessionUser
from dashboards.context import AppContext, DataUnavailableError
from dashboards.figures import card, notice, table
from dashboards.ids import AlarmIds
from dashboards.session import current_session, if_signed_in, signed_in
from dashboards.site_time import SiteClock

PATH = "/alarms"
TITLE = "Alarms"
HISTORY_ROWS = 100
_BUTTONS = {AlarmIds.ACK: "ack", AlarmIds.SHELVE: "shelve", AlarmIds.UNSHELVE: "unshelve"}


def layout(ctx: AppContext, user: SessionUser, query: Mapping[str, str]) -> Component:
    chosen = query.get("alarm")  # ?alarm=KEY: chosen to answer
    viewer = not user.is_operator
    role_note = (
        notice(f"{user.name} is a viewer: you can see the alarms but not answer them")
        if viewer
        else html.Div()
    )
    return html.Div(
        [
            dcc.Interval(id=AlarmIds.INTERVAL, interval=int(ctx.config.refresh_s * 1000)),
            dcc.Store(id=AlarmIds.ANSWERED),
            html.H2(TITLE),
            html.Div(id=AlarmIds.EVALUATION),
            html.Div(id=AlarmIds.COUNTS, className="tl-cards"),
            html.H3("Standing: active or not yet acknowledged"),
            html.Div(id=AlarmIds.STANDING),
            html.H3("Answer"),
            role_note,
            html.Div(
                [
                    dcc.Dropdown(
                        id=AlarmIds.CHOSEN,
                        options=[] if chosen is None else [chosen],
                        value=[] if chosen is None else [chosen],
                        multi=True,
                        placeholder="alarms to answer",
                        className="tl-point",
                    ),
                    dcc.Dropdown(
                        id=AlarmIds.HOURS,
                        options=[{"label": f"shelve for {h:g} h", "value": h} for h in SHELF_HOURS],
                        value=SHELF_HOURS[0],
                        clearable=False,
                        className="tl-window",
                        disabled=viewer,
                    ),
                    dcc.Textarea(
                        id=AlarmIds.REASON,
                        placeholder=(
                            "reason, kept in the alarm log (required to shelve; at most "
                            f"{ctx.config.max_reason_chars} characters)"
                        ),
                        maxLength=ctx.config.max_reason_chars,
                        className="tl-reason",
                        disabled=viewer,
                    ),
                    html.Div(
                        [
                            html.Button(
                                "Acknowledge",
                                id=AlarmIds.ACK,
                                disabled=viewer,
                                className="tl-button",
                            ),
                            html.Button(
                                "Shelve", id=AlarmIds.SHELVE, disabled=viewer, className="tl-button"
                            ),
                            html.Button(
                                "Unshelve",
                                id=AlarmIds.UNSHELVE,
                                disabled=viewer,
                                className="tl-button",
                            ),
                        ],
                        className="tl-buttons",
                    ),
                ],
                className="tl-decide",
            ),
            html.Div(id=AlarmIds.MESSAGE, role="status"),
            html.H3("Shelved"),
            html.Div(id=AlarmIds.SHELVED),
            html.H3("History (the alarm log, newest first)"),
            html.Div(id=AlarmIds.HISTORY),
        ]
    )


def evaluation_notice(ctx: AppContext) -> Component:
    """Who evaluates the alarms and when it last did; an error where no live service does
    (none ever ran on this historian, or its newest evaluation is older than
    ``evaluation_late_after_s`` of wall time)."""
    try:
        evaluation = ctx.evaluation()
    except (DataUnavailableError, HistorianError) as exc:
        return notice(f"alarms cannot be read: {exc}", kind="error")
    if evaluation is None:
        return notice(
            "no live service has evaluated the alarms of this historian: alarms are evaluated "
            "by the live service (twinloop serve), and this dashboard raises none",
            kind="error",
        )
    at = ctx.config.clock.text(evaluation.time_s)
    late_s = ctx.now_s() - evaluation.wall_s
    if late_s > ctx.config.evaluation_late_after_s:
        return notice(
            f"no live service is evaluating the alarms: the newest evaluation, at {at}, ran "
            f"{late_s:,.0f} s ago; alarms are evaluated by the live service (twinloop serve), "
            "nothing new is raised until it runs",
            kind="error",
        )
    return notice(f"alarms are evaluated by the live service; newest evaluation at {at}")


def standing_table(
    states: Sequence[AlarmState], clock: SiteClock, *, id_: str | None = None
) -> Component:
    """The standing alarms, most severe and newest first (also on the hall)."""
    if not states:
        return notice("no standing alarms", kind="ok")
    return table(
        ["raised", "severity", "alarm", "message", "state", "acknowledged"],
        [
            (
                clock.text(s.raised_s),
                html.Span(s.severity, className=f"tl-sev tl-sev-{s.severity}"),
                dcc.Link(s.key, href=f"{PATH}?alarm={quote(s.key)}"),
                s.message,
                s.status,
                "—" if s.acked_s is None else f"{s.acked_by}, {clock.text(s.acked_s)}",
            )
            for s in states
        ],
        id_=id_,
        wrap=("message",),
    )


def _history(records: Sequence[AlarmRecord], clock: SiteClock) -> Component:
    if not records:
        return notice("the alarm log is empty", kind="ok")
    return table(
        ["at", "alarm", "action", "severity", "who", "message", "shelved until"],
        [
            (
                clock.text(r.time_s),
                r.key,
                r.action,
                r.severity,
                r.actor,
                r.message,
                "—" if r.until_s is None else clock.text(r.until_s),
            )
            for r in records
        ],
        id_="alarms-history-table",
        wrap=("message",),
    )


def view(ctx: AppContext) -> tuple[Any, Any, Any, Any, list[dict[str, str]], Any]:
    """(severity counts, standing, shelved, history, the alarms one can answer, who
    evaluates them and when it last did)."""
    clock = ctx.config.clock
    try:
        states, _ = ctx.alarm_states()
        history = ctx.historian().alarm_records(limit=HISTORY_ROWS, newest_first=True)
    except (DataUnavailableError, HistorianError) as exc:
        error = notice(str(exc), kind="error")
        return error, [], [], [], [], evaluation_notice(ctx)
    shown = standing(states)
    counts = [
        card(
            severity,
            f"{sum(1 for s in shown if s.severity == severity)} standing",
            alarm=severity in ("critical", "high") and any(s.severity == severity for s in shown),
        )
        for severity in ALARM_SEVERITIES
    ]
    unacked = sum(1 for s in shown if not s.acked)
    counts.append(card("unacknowledged", str(unacked), alarm=unacked > 0))
    shelved = sorted((s for s in states.values() if s.shelved), key=lambda s: s.key)
    shelved_table = (
        table(
            ["alarm", "severity", "state", "shelved by", "until", "why"],
            [
                (
                    s.key,
                    s.severity,
                    s.status,
                    s.shelved_by or "—",
                    "—" if s.shelved_until_s is None else clock.text(s.shelved_until_s),
                    s.shelve_reason,
                )
                for s in shelved
            ],
            id_="alarms-shelved-table",
            wrap=("why",),
        )
        if shelved
        else notice("nothing is shelved", kind="ok")
    )
    options = [
        {"label": f"{s.key} ({s.severity}, {s.status})", "value": s.key} for s in [*shown, *shelved]
    ]
    return (
        counts,
        standing_table(shown, clock, id_="alarms-standing-table"),
        shelved_table,
        _history(history, clock),
        options,
        evaluation_notice(ctx),
    )


def respond(
    ctx: AppContext,
    session: dict[str, Any],
    trigger: str | None,
    keys: list[str] | None,
    hours: float | None,
    reason: str | None,
) -> tuple[Any, Any, Any]:
    """(message, reason box, answer stamp) after the button ``trigger`` was pressed."""
    action = _BUTTONS.get(AlarmIds(trigger)) if trigger in set(_BUTTONS) else None
    if action is None:
        return dash.no_update, dash.no_update, dash.no_update
    outcome = answer(ctx, session, action, keys, hours=hours, reason=reason)
    return decided(outcome, ctx.now_s())


def refresh(ctx: AppContext, session: dict[str, Any]) -> tuple[Any, ...]:
    """The tables; nothing without a valid session."""
    return if_signed_in(ctx, session, 6, lambda: view(ctx))


def set_callbacks(app: Dash, ctx: AppContext) -> None:
    @app.callback(
        Output(AlarmIds.MESSAGE, "children"),
        Output(AlarmIds.REASON, "value"),
        Output(AlarmIds.ANSWERED, "data"),
        Input(AlarmIds.ACK, "n_clicks"),
        Input(AlarmIds.SHELVE, "n_clicks"),
        Input(AlarmIds.UNSHELVE, "n_clicks"),
        State(AlarmIds.CHOSEN, "value"),
        State(AlarmIds.HOURS, "value"),
        State(AlarmIds.REASON, "value"),
        prevent_initial_call=True,
    )
    def _respond(*args: Any) -> tuple[Any, Any, Any]:
        # No session check here: the answer itself meets an expired one with a message.
        return respond(ctx, current_session(), dash.ctx.triggered_id, *args[-3:])

    @app.callback(
        Output(AlarmIds.COUNTS, "children"),
        Output(AlarmIds.STANDING, "children"),
        Output(AlarmIds.SHELVED, "children"),
        Output(AlarmIds.HISTORY, "children"),
        Output(AlarmIds.CHOSEN, "options"),
        Output(AlarmIds.EVALUATION, "children"),
        Input(AlarmIds.INTERVAL, "n_intervals"),
        Input(AlarmIds.ANSWERED, "data"),
    )
    def _refresh(_: int | None, __: float | None) -> tuple[Any, ...]:
        signed_in(ctx)
        return refresh(ctx, current_session())

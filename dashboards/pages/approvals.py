"""Approvals: who is in control, the queue of policies awaiting an operator, approve / reject
/ promote with a reason, one-click rollback, and the audit log (gate decisions and setpoint
writes). Only an operator can act; the server checks that on every action. A promotion and a
rollback ask for confirmation in the browser first (a shadow policy is best promoted from the
Shadow page, beside its comparison with the site)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dash
from dash import Dash, Input, Output, State, dcc, html
from dash.development.base_component import Component

from control import approval
from control.reservoir import PolicyRecord
from dashboards.actions import act, decided
from dashboards.auth import SessionUser
from dashboards.context import AppContext, DataUnavailableError
from dashboards.figures import notice, number, table, time_text
from dashboards.ids import ApprovalIds
from dashboards.reservoir_view import policy_rows
from dashboards.savings import SAVING_COLUMN
from dashboards.session import current_session, if_signed_in, signed_in

PATH = "/approvals"
TITLE = "Approvals"
ACTIONABLE = ("pre_evaluated", "approved", "shadow", "standby")
"""States an operator can move a policy on from (approve/reject, promote; a standby policy
goes live again when none is live)."""
AUDIT_ROWS = 50
PROMOTE_QUESTION = (
    "Promote the chosen policy one step? An approved policy goes into shadow (it computes on "
    "live data, never writes); a policy in shadow or standing by goes live and writes the "
    "setpoints from the next control period. Where the site needs more than one operator to "
    "go live, your promotion is recorded as an approval and a different operator confirms."
)
ROLLBACK_QUESTION = (
    "Roll back now? The policy standing by takes control, or, if none is, the site's own "
    "control: the setpoints go back to the site's at safe rates (at once if a rack inlet is "
    "over its limit). The rollback is recorded under your name."
)
_BUTTONS = {
    ApprovalIds.APPROVE: "approve",
    ApprovalIds.REJECT: "reject",
    ApprovalIds.PROMOTE: "promote",
    ApprovalIds.ROLLBACK: "rollback",
}


def layout(ctx: AppContext, user: SessionUser, query: Mapping[str, str]) -> Component:
    chosen = query.get("policy")
    viewer = not user.is_operator
    buttons = [
        html.Button("Approve", id=ApprovalIds.APPROVE, disabled=viewer, className="tl-button"),
        html.Button("Reject", id=ApprovalIds.REJECT, disabled=viewer, className="tl-button"),
        dcc.ConfirmDialogProvider(
            html.Button(
                "Promote (approved → shadow → live)",
                id=ApprovalIds.PROMOTE_BUTTON,
                disabled=viewer,
                className="tl-button",
            ),
            id=ApprovalIds.PROMOTE,
            message=PROMOTE_QUESTION,
        ),
        dcc.ConfirmDialogProvider(
            html.Button(
                "Roll back now",
                id=ApprovalIds.ROLLBACK_BUTTON,
                disabled=viewer,
                className="tl-button tl-button-danger",
            ),
            id=ApprovalIds.ROLLBACK,
            message=ROLLBACK_QUESTION,
        ),
    ]
    role_note = (
        notice(f"{user.name} is a viewer: you can see the queue but not act on it")
        if viewer
        else html.Div()
    )
    return html.Div(
        [
            dcc.Interval(id=ApprovalIds.INTERVAL, interval=int(ctx.config.refresh_s * 1000)),
            dcc.Store(id=ApprovalIds.DECIDED),
            html.H2(TITLE),
            html.Div(id=ApprovalIds.CONTROL, className="tl-cards"),
            html.H3("Awaiting an operator"),
            html.Div(id=ApprovalIds.PENDING),
            html.H3("Decide"),
            role_note,
            html.Div(
                [
                    dcc.Dropdown(
                        id=ApprovalIds.POLICY,
                        options=[] if chosen is None else [chosen],
                        value=chosen,
                        placeholder="policy to act on",
                        className="tl-point",
                    ),
                    dcc.Textarea(
                        id=ApprovalIds.REASON,
                        placeholder=(
                            "reason, kept in the audit log (required, except to roll back; "
                            f"at most {ctx.config.max_reason_chars} characters)"
                        ),
                        maxLength=ctx.config.max_reason_chars,
                        className="tl-reason",
                        disabled=viewer,
                    ),
                    html.Div(buttons, className="tl-buttons"),
                ],
                className="tl-decide",
            ),
            html.Div(id=ApprovalIds.MESSAGE, role="status"),
            html.H3("Audit log: gate decisions"),
            html.Div(id=ApprovalIds.DECISIONS),
            html.H3("Audit log: setpoint writes"),
            html.Div(id=ApprovalIds.WRITES),
        ]
    )


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:+.2f} %"


def _control(live: PolicyRecord | None, records: list[PolicyRecord]) -> list[Component]:
    shadows = [r.ref for r in records if r.state == "shadow"]
    standby = [r.ref for r in records if r.state == "standby"]
    return [
        html.Div(
            [
                html.Div("in control", className="tl-card-label"),
                html.Div(
                    live.ref if live is not None else "the site's own control",
                    id="approvals-in-control",
                    className="tl-card-value",
                ),
            ],
            className="tl-card",
        ),
        html.Div(
            [
                html.Div("in shadow", className="tl-card-label"),
                html.Div(", ".join(shadows) or "—", className="tl-card-value"),
            ],
            className="tl-card",
        ),
        html.Div(
            [
                html.Div("standing by (a rollback returns to it)", className="tl-card-label"),
                html.Div(
                    ", ".join(standby) or "— (a rollback returns to the site)",
                    id="approvals-standby",
                    className="tl-card-value",
                ),
            ],
            className="tl-card",
        ),
    ]


def view(ctx: AppContext) -> tuple[Any, Any, list[dict[str, str]], Any, Any]:
    """(control, pending queue, actionable policies, gate decisions, setpoint writes)."""
    try:
        with ctx.reservoir() as res:
            records = res.list()
            live = approval.in_control(res)
            pending = approval.pending(res)
            rows = {r.ref: r for r in policy_rows(res)}
            history = list(reversed(res.history()))[:AUDIT_ROWS]
            reasons = {h.policy: h.reason for h in res.history() if h.to_state == "pre_evaluated"}
    except DataUnavailableError as exc:
        error = notice(str(exc), kind="error")
        return error, [], [], [], []
    queue = (
        table(
            [
                "policy",
                "kind",
                "twin scenarios",
                "cooling (kWh)",
                "K·h > 27 °C",
                "max inlet (°C)",
                SAVING_COLUMN,
                "gate 1",
            ],
            [
                [
                    dcc.Link(r.ref, href=f"/reservoir?policy={r.ref}"),
                    r.kind,
                    str(rows[r.ref].scenarios),
                    number(rows[r.ref].cooling_kwh, 0),
                    number(rows[r.ref].violation_kh_above_27, 2),
                    number(rows[r.ref].max_inlet_c, 2),
                    _pct(rows[r.ref].savings_vs_site_control_pct),
                    reasons.get(r.ref, "—"),
                ]
                for r in pending
            ],
            id_="approvals-pending-table",
            wrap=("gate 1",),
        )
        if pending
        else notice("no policies are waiting for approval", kind="ok")
    )
    options = [
        {"label": f"{r.ref} ({r.state})", "value": r.ref} for r in records if r.state in ACTIONABLE
    ]
    decisions = table(
        ["at", "policy", "who", "change", "why", "sha256"],
        [
            (
                ctx.config.clock.wall_text(h.at),
                h.policy,
                h.actor,
                approval.change_text(h),
                h.reason,
                (h.artifact_hash or "—")[:12],
            )
            for h in history
        ],
        id_="approvals-decisions-table",
        wrap=("why",),
    )
    try:
        audit = ctx.historian().audit(limit=AUDIT_ROWS)
        writes: Any = (
            table(
                ["time", "command", "field", "value", "expires", "actor", "outcome", "detail"],
                [
                    (
                        time_text(a.time_s, ctx.config.clock),
                        a.command_id,
                        a.field,
                        f"{a.value:g}",
                        time_text(a.expires_at_s, ctx.config.clock),
                        a.actor,
                        a.outcome,
                        a.detail,
                    )
                    for a in audit
                ],
                wrap=("detail",),
            )
            if audit
            else notice("no setpoint writes recorded")
        )
    except DataUnavailableError as exc:
        writes = notice(str(exc), kind="error")
    return _control(live, records), queue, options, decisions, writes


def decide(
    ctx: AppContext,
    session: dict[str, Any],
    trigger: str | None,
    ref: str | None,
    reason: str | None,
) -> tuple[Any, Any, Any]:
    """(message, reason box, decision stamp) after the button ``trigger`` was pressed: the
    action's outcome as a message; the reason box cleared and the stamp moved on (so that
    the tables refresh) only when something changed."""
    action = _BUTTONS.get(ApprovalIds(trigger)) if trigger in set(_BUTTONS) else None
    if action is None:
        return dash.no_update, dash.no_update, dash.no_update
    outcome = act(ctx, session, action, ref, reason)
    return decided(outcome, ctx.now_s())


def refresh(ctx: AppContext, session: dict[str, Any]) -> tuple[Any, ...]:
    """(control, queue, options, decisions, writes); nothing without a valid session."""
    return if_signed_in(ctx, session, 5, lambda: view(ctx))


def set_callbacks(app: Dash, ctx: AppContext) -> None:
    @app.callback(
        Output(ApprovalIds.MESSAGE, "children"),
        Output(ApprovalIds.REASON, "value"),
        Output(ApprovalIds.DECIDED, "data"),
        Input(ApprovalIds.APPROVE, "n_clicks"),
        Input(ApprovalIds.REJECT, "n_clicks"),
        Input(ApprovalIds.PROMOTE, "submit_n_clicks"),  # confirmed in the browser's dialog
        Input(ApprovalIds.ROLLBACK, "submit_n_clicks"),  # confirmed in the browser's dialog
        State(ApprovalIds.POLICY, "value"),
        State(ApprovalIds.REASON, "value"),
        prevent_initial_call=True,
    )
    def _decide(*args: Any) -> tuple[Any, Any, Any]:
        # No session check here: the action itself answers an expired one with a message.
        return decide(ctx, current_session(), dash.ctx.triggered_id, args[-2], args[-1])

    @app.callback(
        Output(ApprovalIds.CONTROL, "children"),
        Output(ApprovalIds.PENDING, "children"),
        Output(ApprovalIds.POLICY, "options"),
        Output(ApprovalIds.DECISIONS, "children"),
        Output(ApprovalIds.WRITES, "children"),
        Input(ApprovalIds.INTERVAL, "n_intervals"),
        Input(ApprovalIds.DECIDED, "data"),
    )
    def _refresh(_: int | None, __: float | None) -> tuple[Any, ...]:
        signed_in(ctx)
        return refresh(ctx, current_session())

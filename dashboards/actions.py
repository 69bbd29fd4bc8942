"""The operator's decisions from the dashboard: checked here (a valid session, the operator
role read again from the users file, a reason — except for a rollback, which is one click —
of at most ``max_reason_chars`` characters, and a policy), then handed to
:mod:`control.approval`, which records who, when, why and the artifact's hash.

Nothing here trusts the page: a viewer's request, a forged one, one from an expired session
or one without a reason (or with one over the limit) is refused with a message and changes
nothing. A rollback is never held back by its reason: one over the limit is cut to it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

from control import approval
from control.reservoir import Reservoir, ReservoirError
from dashboards.auth import AuthError, require_operator
from dashboards.context import AppContext, DataUnavailableError

logger = logging.getLogger(__name__)

Action = Literal["approve", "reject", "promote", "promote_live", "rollback"]
ACTIONS: tuple[Action, ...] = get_args(Action)
_DOING = {"promote_live": "promote policies to live"}
"""What the role check says the user tried (default: ``{action} policies``)."""
ONE_CLICK_ROLLBACK = "one-click rollback from the dashboard (no reason typed)"
"""The reason recorded for a rollback clicked with the reason box empty."""


@dataclass(frozen=True)
class Outcome:
    """What an action did, as one sentence for the operator."""

    ok: bool
    message: str


def act(
    ctx: AppContext, session: Mapping[str, Any], action: str, ref: str | None, reason: str | None
) -> Outcome:
    """Carry out ``action`` on the policy ``ref`` (ignored for a rollback) for the user of
    ``session``; see the module docstring."""
    if action not in ACTIONS:
        return Outcome(False, f"unknown action {action!r} (known: {', '.join(ACTIONS)})")
    try:
        user = require_operator(
            session,
            now_s=ctx.now_s(),
            action=_DOING.get(action, f"{action} policies"),
            users=ctx.users,
        )
    except AuthError as exc:
        logger.warning("dashboard: %s refused: %s", action, exc)
        return Outcome(False, f"{action} refused: {exc}")
    why = (reason or "").strip()
    limit = ctx.config.max_reason_chars
    if len(why) > limit and action == "rollback":  # never hold a rollback back: cut it
        cut = f" … (cut at {limit} characters)"
        why = why[: max(0, limit - len(cut))] + cut
    elif len(why) > limit:
        return Outcome(
            False,
            f"{action} refused: the reason has {len(why):,} characters; "
            f"at most {limit:,} are kept in the audit log (shorten it)",
        )
    if not why and action == "rollback":  # one click in an emergency: the reason can wait
        why = ONE_CLICK_ROLLBACK
    if not why:
        return Outcome(False, f"{action} refused: give a reason (it is kept in the audit log)")
    target = (ref or "").strip()
    if action != "rollback" and not target:
        return Outcome(False, f"{action} refused: choose a policy first")
    try:
        with ctx.reservoir() as res:
            if action == "rollback":
                now = approval.rollback(res, operator=user.name, reason=why)
                in_control = now.ref if now is not None else "the site's own control"
                message = f"rolled back by {user.name}: {in_control} is now in control"
            elif action in ("promote", "promote_live"):
                message = _promote(res, target, user.name, why, live_only=action == "promote_live")
            else:
                step = {"approve": approval.approve, "reject": approval.reject}[action]
                record = step(res, target, operator=user.name, reason=why)
                message = f"{record.ref} is now {record.state} ({action} by {user.name})"
    except (approval.ApprovalError, ReservoirError, DataUnavailableError) as exc:
        logger.warning("dashboard: %s of %r by %s refused: %s", action, target, user.name, exc)
        return Outcome(False, f"{action} refused: {exc}")
    logger.info("dashboard: %s", message)
    return Outcome(True, message)


def _promote(res: Reservoir, ref: str, who: str, why: str, *, live_only: bool) -> str:
    """Promote ``ref`` one step (``live_only``: only a shadow or standby policy, to live);
    the message says whether it moved or an approval to go live was recorded."""
    before = res.get(ref)
    if live_only and before.state not in ("shadow", "standby"):
        raise approval.ApprovalError(
            f"policy {before.ref} is {before.state}; only a policy in shadow (or standing by) "
            "is promoted to live"
        )
    record = approval.promote(res, before.ref, operator=who, reason=why)
    if record.state != before.state:
        return f"{record.ref} is now {record.state} (promote by {who})"
    status = approval.go_live_status(res, record.ref)
    return (
        f"{record.ref} stays {record.state}: {who}'s approval to go live is recorded "
        f"({len(status.approved_by)} of {status.required}); it goes live when a different "
        "operator confirms"
    )


def decided(outcome: Outcome, now_s: float) -> tuple[Any, Any, Any]:
    """A page's (message, reason box, decision stamp) after an operator's action: the
    reason box is cleared and the stamp moved (the page refreshes) only when it worked."""
    import dash

    from dashboards.figures import notice

    message = notice(outcome.message, kind="ok" if outcome.ok else "error")
    if not outcome.ok:
        return message, dash.no_update, dash.no_update
    return message, "", now_s

"""The operator's answers to alarms from the dashboard: acknowledge, shelve (with a reason,
for a number of hours on the site's clock), take off the shelf. Checked here like every
other action (a valid session, the operator role read again from the users file, a bounded
reason), then appended to the historian's alarm log with who and when; a viewer's request,
a forged or expired one is refused with a message and changes nothing."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

from connectors.historian import HistorianError
from connectors.historian_store import AlarmRecord
from dashboards.actions import Outcome
from dashboards.auth import AuthError, require_operator
from dashboards.context import AppContext, DataUnavailableError

logger = logging.getLogger(__name__)

SHELF_HOURS: tuple[float, ...] = (1.0, 8.0, 24.0)
"""The shelf lengths offered (hours of the site's clock)."""
MAX_SHELF_H = 7 * 24.0


def _site_now_s(ctx: AppContext) -> float:
    """The newest reading's time: "now" on the site's time base."""
    latest = ctx.historian().latest()
    if not latest:
        raise DataUnavailableError("the historian holds no readings yet")
    return max(r.time_s for r in latest.values())


def answer(
    ctx: AppContext,
    session: Mapping[str, Any],
    action: str,
    keys: Sequence[str] | None,
    *,
    hours: float | None = None,
    reason: str | None = None,
) -> Outcome:
    """Carry out ``action`` ("ack", "shelve" or "unshelve") on the alarms ``keys`` for the
    user of ``session`` (see the module docstring)."""
    if action not in ("ack", "shelve", "unshelve"):
        return Outcome(False, f"unknown alarm action {action!r} (known: ack, shelve, unshelve)")
    verb = {"ack": "acknowledge", "shelve": "shelve", "unshelve": "unshelve"}[action]
    try:
        user = require_operator(
            session, now_s=ctx.now_s(), action=f"{verb} alarms", users=ctx.users
        )
    except AuthError as exc:
        logger.warning("dashboard: alarm %s refused: %s", action, exc)
        return Outcome(False, f"{verb} refused: {exc}")
    chosen = [k for k in dict.fromkeys(keys or []) if k]
    if not chosen:
        return Outcome(False, f"{verb} refused: choose an alarm first")
    why = (reason or "").strip()
    limit = ctx.config.max_reason_chars
    if len(why) > limit:
        return Outcome(
            False, f"{verb} refused: the reason has {len(why):,} characters; at most {limit:,}"
        )
    if action == "shelve":
        if not why:
            return Outcome(False, "shelve refused: give a reason (it is kept in the alarm log)")
        if hours is None or not (math.isfinite(hours) and 0 < hours <= MAX_SHELF_H):
            return Outcome(
                False, f"shelve refused: a shelf lasts more than 0 and at most {MAX_SHELF_H:g} h"
            )
    try:
        store = ctx.alarm_log()
        states = ctx.alarms.states(store)
        now_s = _site_now_s(ctx)
        records: list[AlarmRecord] = []
        for key in chosen:
            state = states.get(key)
            if state is None:
                return Outcome(False, f"{verb} refused: no alarm {key!r}")
            if action == "ack" and state.acked:
                return Outcome(False, f"{verb} refused: {key} is already acknowledged")
            if action == "unshelve" and not state.shelved:
                return Outcome(False, f"{verb} refused: {key} is not shelved")
            records.append(
                AlarmRecord(
                    now_s,
                    key,
                    action,
                    state.severity,
                    why or verb + "d",
                    user.name,
                    ctx.now_s(),
                    None if action != "shelve" else now_s + float(hours or 0.0) * 3600.0,
                )
            )
        ctx.alarms.record(store, records)
    except (DataUnavailableError, HistorianError) as exc:
        logger.warning("dashboard: alarm %s by %s refused: %s", action, user.name, exc)
        return Outcome(False, f"{verb} refused: {exc}")
    what = ", ".join(chosen)
    if action == "shelve":
        message = f"{what} shelved for {hours:g} h by {user.name}"
    else:
        message = f"{what} {verb}d by {user.name}"
    logger.info("dashboard: %s", message)
    return Outcome(True, message)

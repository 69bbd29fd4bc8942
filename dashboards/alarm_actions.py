"""The operator's answers to alarms from the dashboard: acknowledge, shelve (with a reason,
for a number of hours on the site's clock), take off the shelf. Checked here like every
other action (a valid session, the operator role read again from the users file, a bounded
reason), then appended to the historian's alarm log with who and when; a viewer's request,
a forged or expired one is refused with a message and changes nothing.

The live service evaluates the alarms and appends to the same log, usually from another
process: an answer is appended only if the log still holds the records it was checked
against (``expect_rows``). If the service appended meanwhile, the answer is checked again on
the new log; if an alarm it names has changed (a new occurrence, a worse severity), it is
refused: the operator has not seen what they would answer."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

from connectors.historian import AlarmLogChangedError, AlarmRecord, HistorianError
from control.alarms import AlarmState, alarm_states
from dashboards.actions import Outcome
from dashboards.auth import AuthError, require_operator
from dashboards.context import AppContext, DataUnavailableError

logger = logging.getLogger(__name__)

SHELF_HOURS: tuple[float, ...] = (1.0, 8.0, 24.0)
"""The shelf lengths offered (hours of the site's clock)."""
MAX_SHELF_H = 7 * 24.0
TRIES = 3
"""Times an answer is checked again when the live service appended meanwhile."""


def _occurrence(state: AlarmState) -> tuple[str, float]:
    """Which occurrence of an alarm an operator answers: a raise after a clear, or a worse
    severity, is another."""
    return state.severity, state.raised_s


def _site_now_s(ctx: AppContext) -> float:
    """The newest reading's time: "now" on the site's time base."""
    latest = ctx.historian().latest()
    if not latest:
        raise DataUnavailableError("the historian holds no readings yet")
    return max(r.time_s for r in latest.values())


def _records(
    states: Mapping[str, AlarmState],
    chosen: Sequence[str],
    seen: Mapping[str, tuple[str, float]] | None,
    *,
    action: str,
    verb: str,
    user: str,
    now_s: float,
    wall_s: float,
    reason: str,
    hours: float | None,
) -> list[AlarmRecord] | str:
    """The records that answer the alarms ``chosen`` as ``states`` stand (``seen``: the
    occurrences a first check found), or why the answer is refused."""
    records: list[AlarmRecord] = []
    for key in chosen:
        state = states.get(key)
        if state is None:
            return f"{verb} refused: no alarm {key!r}"
        if seen is not None and seen.get(key) != _occurrence(state):
            return f"{verb} refused: {key} was raised again meanwhile; look again"
        if action == "ack" and state.acked:
            return f"{verb} refused: {key} is already acknowledged"
        if action == "unshelve" and not state.shelved:
            return f"{verb} refused: {key} is not shelved"
        until_s = None if action != "shelve" else now_s + float(hours or 0.0) * 3600.0
        records.append(
            AlarmRecord(
                now_s, key, action, state.severity, reason or verb + "d", user, wall_s, until_s
            )
        )
    return records


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
        seen: dict[str, tuple[str, float]] | None = None
        for _ in range(TRIES):
            states, rows = alarm_states(store)
            now_s = _site_now_s(ctx)
            records = _records(
                states,
                chosen,
                seen,
                action=action,
                verb=verb,
                user=user.name,
                now_s=now_s,
                wall_s=ctx.now_s(),
                reason=why,
                hours=hours,
            )
            if isinstance(records, str):
                return Outcome(False, records)
            seen = {key: _occurrence(states[key]) for key in chosen}
            try:
                store.add_alarm_records(records, expect_rows=rows)
            except AlarmLogChangedError:
                continue  # the live service appended meanwhile: check again
            break
        else:
            return Outcome(False, f"{verb} refused: the alarm log keeps changing; try again")
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

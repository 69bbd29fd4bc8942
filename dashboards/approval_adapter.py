"""Gate 2 moves over :meth:`control.reservoir.Reservoir.transition`, with the signatures of
the shared contract for ``control.approval`` (pending / approve / reject / promote / rollback,
``ApprovalError``): the dashboard's stand-in while that module is not in the tree.

Every move is one reservoir transition, so the reservoir's history records who, when, why
and the artifact's hash, and its rules (legal moves, intact artifacts, no oracle deployed,
one live policy) hold.
"""

from __future__ import annotations

import logging

from control.reservoir import PolicyRecord, Reservoir, ReservoirError

logger = logging.getLogger(__name__)


class ApprovalError(ValueError):
    """A refused decision: bad reference, missing reason, illegal move, changed artifact."""


def _reason(reason: str) -> str:
    if not isinstance(reason, str) or not reason.strip():
        raise ApprovalError("a decision needs a reason")
    return reason.strip()


def _move(reservoir: Reservoir, ref: str, to: str, operator: str, reason: str) -> PolicyRecord:
    why = _reason(reason)
    try:
        return reservoir.transition(ref, to, actor=operator, reason=why)
    except ReservoirError as exc:
        raise ApprovalError(str(exc)) from None


def pending(reservoir: Reservoir) -> list[PolicyRecord]:
    """Pre-evaluated policies awaiting an operator."""
    return reservoir.list(state="pre_evaluated")


def approve(reservoir: Reservoir, ref: str, *, operator: str, reason: str) -> PolicyRecord:
    return _move(reservoir, ref, "approved", operator, reason)


def reject(reservoir: Reservoir, ref: str, *, operator: str, reason: str) -> PolicyRecord:
    return _move(reservoir, ref, "rejected", operator, reason)


def promote(reservoir: Reservoir, ref: str, *, operator: str, reason: str) -> PolicyRecord:
    """approved → shadow, shadow → live."""
    try:
        state = reservoir.get(ref).state
    except ReservoirError as exc:
        raise ApprovalError(str(exc)) from None
    targets = {"approved": "shadow", "shadow": "live"}
    if state not in targets:
        raise ApprovalError(f"{ref} is {state}: only an approved or shadow policy is promoted")
    return _move(reservoir, ref, targets[state], operator, reason)


def rollback(reservoir: Reservoir, *, operator: str, reason: str) -> PolicyRecord | None:
    """The live policy (else the shadow one) → rolled_back; the site's own control takes
    over (a retired policy cannot come back). Returns the policy now in control: None."""
    why = _reason(reason)
    deployed = reservoir.list(state="live") or reservoir.list(state="shadow")
    if not deployed:
        raise ApprovalError("nothing to roll back: no policy is live or in shadow")
    for record in deployed:
        _move(reservoir, record.ref, "rolled_back", operator, why)
    return None

"""Loop 2 of the dual loop: an operator verifies what gate 1 proposed, then deploys it.

Over :class:`~control.reservoir.Reservoir`: ``pre_evaluated`` policies wait for an operator
(:func:`pending`), who approves or rejects each with a reason; an approved policy is promoted
to ``shadow`` (it computes on live data, never writes) and from there to ``live``. Every
decision lands in the reservoir's append-only history with who, when, why and the
artifact's hash at that moment, and the reservoir refuses any policy whose artifact changed
since registration from going ``approved``, ``shadow`` or ``live``. This module adds the
operator's rules on top:

* nothing is deployed without a human's approval on record: promotion checks the history
  for an ``approved`` decision by an operator (not an automatic actor), and that the
  artifact still has the hash recorded at that decision;
* at most one policy shadows at a time (the live controller compares one candidate with the
  plant);
* going live may need the approvals of more than one operator (the reservoir's rule,
  :func:`rules`; one by default, :func:`set_promotion_approvers`): with two, the first
  operator's promotion is recorded in the history as an approval to go live (the policy
  stays where it is) and the policy goes live only when a *different* operator confirms;
  the same operator twice is refused;
* :func:`rollback` takes the live policy (or, with none live, the shadowing one) out of
  service: ``rolled_back``. Rolling back a shadow leaves the live policy in control; rolling
  back the live policy hands control to the previous live policy, which has stood by since
  it was replaced (its artifact is checked again first), or, if there is none, it is no
  longer intact, or the operator asks for it, to the site's own control.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass

from control.reservoir import HistoryRecord, PolicyRecord, Reservoir, ReservoirError
from twinloop.errors import TwinLoopError

logger = logging.getLogger(__name__)

AUTOMATIC_ACTORS: frozenset[str] = frozenset({"gate1", "watchdog", "live"})
"""Actors that are software, not people: their decisions never count as an approval."""
RULES_FILE = "approval_rules.json"
"""The operators' rules of a reservoir, in its root folder (absent: the defaults)."""
MAX_PROMOTION_APPROVERS = 5


class ApprovalError(TwinLoopError, ValueError):
    """A gate-2 request refused: bad ref, missing reason, illegal move, tampered artifact…"""


def _text(what: str, value: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ApprovalError(f"{what} is required (a non-empty text)")
    return value.strip()


def _operator(operator: str) -> str:
    who = _text("operator", operator)
    if who in AUTOMATIC_ACTORS:
        raise ApprovalError(f"operator {who!r} is reserved for TwinLoop's automatic actors")
    return who


@dataclass(frozen=True)
class ApprovalRules:
    """How many distinct operators must approve before a policy goes live."""

    promotion_approvers: int = 1

    def __post_init__(self) -> None:
        n = self.promotion_approvers
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_PROMOTION_APPROVERS:
            raise ApprovalError(
                f"promotion approvers must be a whole number from 1 to "
                f"{MAX_PROMOTION_APPROVERS}, got {n!r}"
            )


def rules(reservoir: Reservoir) -> ApprovalRules:
    """The reservoir's rules (:data:`RULES_FILE` in its root; the defaults without one)."""
    path = reservoir.root / RULES_FILE
    if not path.is_file():
        return ApprovalRules()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ApprovalError(f"approval rules {path}: cannot read them ({exc})") from None
    if not isinstance(data, dict) or set(data) - {"promotion_approvers"}:
        raise ApprovalError(
            f'approval rules {path}: expected {{"promotion_approvers": N}}, got {data!r}'
        )
    try:
        return ApprovalRules(**data)
    except ApprovalError as exc:
        raise ApprovalError(f"approval rules {path}: {exc}") from None


def set_promotion_approvers(reservoir: Reservoir, approvers: int, *, actor: str) -> ApprovalRules:
    """Require ``approvers`` distinct operators' approvals to go live from now on; the
    change is written to the reservoir's access log under ``actor``."""
    who = _text("actor", actor)
    new = ApprovalRules(promotion_approvers=approvers)
    old = rules(reservoir)
    path = reservoir.root / RULES_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"promotion_approvers": new.promotion_approvers}) + "\n", "utf-8")
    os.replace(tmp, path)
    if new != old:
        reservoir.record_access(
            user=who,
            action="set promotion approvers",
            policy=None,
            method="config",
            granted=True,
            detail=f"{new.promotion_approvers} (was {old.promotion_approvers})",
        )
        logger.warning(
            "going live now needs %d operator approval(s) (was %d; set by %s)",
            new.promotion_approvers,
            old.promotion_approvers,
            who,
        )
    return new


def _get(reservoir: Reservoir, ref: str) -> PolicyRecord:
    try:
        return reservoir.get(ref)
    except ReservoirError as exc:
        raise ApprovalError(str(exc)) from None


def _move(
    reservoir: Reservoir, ref: str, to_state: str, *, actor: str, reason: str
) -> PolicyRecord:
    try:
        return reservoir.transition(ref, to_state, actor=actor, reason=reason)
    except ReservoirError as exc:
        raise ApprovalError(str(exc)) from None


def pending(reservoir: Reservoir) -> list[PolicyRecord]:
    """Policies that passed loop 1 and await an operator's decision, oldest first."""
    return sorted(reservoir.list(state="pre_evaluated"), key=lambda r: (r.created_at, r.ref))


def approval_of(reservoir: Reservoir, ref: str) -> HistoryRecord | None:
    """The operator's approval of a policy version on record (None if there is none)."""
    record = _get(reservoir, ref)
    approvals = [
        h
        for h in reservoir.history(record.ref)
        if h.to_state == "approved" and h.actor not in AUTOMATIC_ACTORS
    ]
    return approvals[-1] if approvals else None


def approve(reservoir: Reservoir, ref: str, *, operator: str, reason: str) -> PolicyRecord:
    """pre_evaluated → approved, by ``operator`` for ``reason``."""
    who, why = _operator(operator), _text("reason", reason)
    record = _get(reservoir, ref)
    if record.state != "pre_evaluated":
        raise ApprovalError(
            f"policy {record.ref} is {record.state}; only a pre_evaluated policy can be approved"
        )
    return _move(reservoir, record.ref, "approved", actor=who, reason=why)


def reject(reservoir: Reservoir, ref: str, *, operator: str, reason: str) -> PolicyRecord:
    """pre_evaluated or approved → rejected, by ``operator`` for ``reason``."""
    who, why = _operator(operator), _text("reason", reason)
    record = _get(reservoir, ref)
    if record.state not in ("pre_evaluated", "approved"):
        raise ApprovalError(
            f"policy {record.ref} is {record.state}; only a pre_evaluated or approved policy "
            "can be rejected (roll back a shadow or live one)"
        )
    return _move(reservoir, record.ref, "rejected", actor=who, reason=why)


def go_live_approvals(reservoir: Reservoir, ref: str) -> list[HistoryRecord]:
    """The operators' approvals to go live on record since the policy reached its current
    state (history rows that did not move it), oldest first; a move starts afresh."""
    found: list[HistoryRecord] = []
    for h in reservoir.history(_get(reservoir, ref).ref):
        if h.from_state != h.to_state:
            found = []
        elif h.actor not in AUTOMATIC_ACTORS:
            found.append(h)
    return found


def change_text(h: HistoryRecord) -> str:
    """A history row's change for a table: ``shadow → live``, or ``stays shadow`` for a
    decision that did not move the policy (an approval to go live)."""
    if h.from_state is not None and h.from_state == h.to_state:
        return f"stays {h.to_state}"
    return f"{h.from_state or '—'} → {h.to_state}"


@dataclass(frozen=True)
class GoLiveStatus:
    """Who has approved a shadow or standby policy going live, and how many must."""

    approved_by: tuple[str, ...]
    required: int

    @property
    def missing(self) -> int:
        return max(0, self.required - len(self.approved_by))


def go_live_status(reservoir: Reservoir, ref: str) -> GoLiveStatus:
    names = dict.fromkeys(h.actor for h in go_live_approvals(reservoir, ref))
    return GoLiveStatus(tuple(names), rules(reservoir).promotion_approvers)


def promote(
    reservoir: Reservoir, ref: str, *, operator: str, reason: str, approvers: int | None = None
) -> PolicyRecord:
    """approved → shadow, shadow → live, or standby → live again (the live one it replaces
    goes to standby). Going live needs ``approvers`` distinct operators (default: the
    reservoir's :func:`rules`): until they are on record, an operator's promotion is
    recorded as an approval to go live and the policy stays where it is (the record
    returned says so by its state); the same operator's second approval is refused."""
    who, why = _operator(operator), _text("reason", reason)
    record = _get(reservoir, ref)
    steps = {"approved": "shadow", "shadow": "live", "standby": "live"}
    if record.state not in steps:
        raise ApprovalError(
            f"policy {record.ref} is {record.state}; only an approved policy goes to shadow "
            "and only a shadow or standby policy goes live"
        )
    approval = approval_of(reservoir, record.ref)
    if approval is None:
        raise ApprovalError(f"policy {record.ref} has no operator's approval on record")
    current = reservoir.current_hash(record.ref)
    if current != approval.artifact_hash:
        now_text = "missing" if current is None else f"sha256 {current[:12]}"
        approved_text = (approval.artifact_hash or "none")[:12]
        raise ApprovalError(
            f"policy {record.ref}: artifact changed since its approval by {approval.actor} "
            f"(approved sha256 {approved_text}, now {now_text}): refusing {steps[record.state]}"
        )
    target = steps[record.state]
    if target == "shadow":
        others = [r.ref for r in reservoir.list(state="shadow") if r.ref != record.ref]
        if others:
            raise ApprovalError(
                f"policy {others[0]} is already in shadow; promote it or roll it back first"
            )
    else:
        needed = (
            rules(reservoir).promotion_approvers
            if approvers is None
            else ApprovalRules(approvers).promotion_approvers
        )
        earlier = list(dict.fromkeys(h.actor for h in go_live_approvals(reservoir, record.ref)))
        names = list(dict.fromkeys([*earlier, who]))
        if len(names) < needed and who in earlier:
            raise ApprovalError(
                f"{who} has already approved {record.ref} going live ({len(earlier)} of "
                f"{needed} approvals): a different operator must confirm it"
            )
        if len(names) < needed:
            try:
                reservoir.record_decision(
                    record.ref,
                    state=record.state,
                    actor=who,
                    reason=f"approval {len(names)} of {needed} to go live: {why}",
                )
            except ReservoirError as exc:
                raise ApprovalError(str(exc)) from None
            logger.info(
                "%s: approval %d of %d to go live by %s", record.ref, len(names), needed, who
            )
            return _get(reservoir, record.ref)
        if needed > 1:
            why = f"{why} (approved to go live by {', '.join(names)})"
    return _move(reservoir, record.ref, target, actor=who, reason=why)


def in_control(reservoir: Reservoir) -> PolicyRecord | None:
    """The live policy, or None when the site's own control runs."""
    live = reservoir.list(state="live")
    return live[0] if live else None


def standby(reservoir: Reservoir) -> PolicyRecord | None:
    """The previous live policy, ready to take over again on a rollback (None if none)."""
    waiting = reservoir.list(state="standby")
    return waiting[0] if waiting else None


def _resume_standby(reservoir: Reservoir, *, actor: str, rolled_back: str) -> None:
    """After ``rolled_back`` left live: the standby policy goes live again, unless its
    artifact changed (then it is retired and the site's own control runs)."""
    previous = standby(reservoir)
    if previous is None:
        return
    why = f"resumes control after the rollback of {rolled_back}"
    try:
        reservoir.transition(previous.ref, "live", actor=actor, reason=why)
    except ReservoirError as exc:
        logger.error("standby %s cannot resume: %s", previous.ref, exc)
        _move(
            reservoir,
            previous.ref,
            "retired",
            actor=actor,
            reason=f"could not resume after the rollback of {rolled_back}: {exc}",
        )


def rollback(
    reservoir: Reservoir, *, operator: str, reason: str, to_site: bool = False
) -> PolicyRecord | None:
    """The live policy (else the shadow one) → rolled_back; the policy now in control, or
    None for the site's own control (see the module docstring). ``to_site`` leaves the
    standby policy standing by and hands control to the site. ``operator`` may be the
    ``watchdog`` here: an automatic rollback is recorded under that name."""
    who, why = _text("operator", operator), _text("reason", reason)
    target = in_control(reservoir)
    if target is None:
        shadows = reservoir.list(state="shadow")
        if not shadows:
            raise ApprovalError("nothing to roll back: no policy is live or in shadow")
        target = shadows[0]
    _move(reservoir, target.ref, "rolled_back", actor=who, reason=why)
    if target.state == "live" and not to_site:
        _resume_standby(reservoir, actor=who, rolled_back=target.ref)
    now = in_control(reservoir)
    logger.warning(
        "%s rolled back by %s (%s); in control: %s",
        target.ref,
        who,
        why,
        now.ref if now else "the site's own control",
    )
    return now


def rollback_policy(
    reservoir: Reservoir, ref: str, *, operator: str, reason: str
) -> PolicyRecord | None:
    """Roll back one named shadow or live policy (the watchdog's targeted rollback, e.g. of
    a shadow policy that crashed while another is live); the policy now in control (a live
    one's standby resumes, as in :func:`rollback`)."""
    who, why = _text("operator", operator), _text("reason", reason)
    record = _get(reservoir, ref)
    if record.state not in ("shadow", "live"):
        raise ApprovalError(
            f"policy {record.ref} is {record.state}; only a shadow or live policy is rolled back"
        )
    _move(reservoir, record.ref, "rolled_back", actor=who, reason=why)
    if record.state == "live":
        _resume_standby(reservoir, actor=who, rolled_back=record.ref)
    logger.warning("%s rolled back by %s (%s)", record.ref, who, why)
    return in_control(reservoir)

"""The lifecycle of a policy: its legal moves and the history row that records each one.

::

    candidate → pre_evaluated → approved → shadow → live → retired | rolled_back
                pre_evaluated, approved → rejected;  shadow → rolled_back
                live → standby → live (again) | retired
                any state not yet final → retired

At most one policy is live and at most one stands by: going live puts the previous live
policy on ``standby`` (the one a rollback returns to) and retires an older standby, in the
same transaction.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping

from control.reservoir import chain
from control.reservoir.records import PolicyState, ReservoirError

TRANSITIONS: Mapping[PolicyState, frozenset[PolicyState]] = {
    "candidate": frozenset({"pre_evaluated", "retired"}),
    "pre_evaluated": frozenset({"approved", "rejected", "retired"}),
    "approved": frozenset({"shadow", "rejected", "retired"}),
    "shadow": frozenset({"live", "rolled_back", "retired"}),
    "live": frozenset({"standby", "retired", "rolled_back"}),
    "standby": frozenset({"live", "retired"}),
    "retired": frozenset(),
    "rejected": frozenset(),
    "rolled_back": frozenset(),
}
"""The legal moves from each state; the last three are final. ``standby`` is the policy a
newer one replaced live: approved and intact, it takes over again if its successor is rolled
back (at most one policy is on standby; an older one is retired)."""

DEPLOYED_STATES: frozenset[PolicyState] = frozenset({"approved", "shadow", "live"})
"""States that need an intact artifact and a deployable kind (not ``oracle``)."""


def check_move(policy: str, current: PolicyState, target: PolicyState) -> None:
    """Refuse a move :data:`TRANSITIONS` does not allow, naming the moves that are."""
    if target not in TRANSITIONS[current]:
        allowed = ", ".join(sorted(TRANSITIONS[current])) or "none, it is final"
        raise ReservoirError(
            f"policy {policy}: illegal transition {current} → {target} (from {current}: {allowed})"
        )


def move(
    db: sqlite3.Connection,
    policy_id: int,
    from_state: PolicyState,
    to_state: PolicyState,
    *,
    actor: str,
    reason: str,
    at: str,
    digest: str | None,
) -> None:
    """Write the history row of a move (chained to the last), then the policy's new state (a
    trigger refuses the state without the row)."""
    chain.append(
        db,
        policy_id=policy_id,
        event="transition",
        from_state=from_state,
        to_state=to_state,
        actor=actor,
        reason=reason,
        at=at,
        artifact_hash=digest,
    )
    db.execute("UPDATE policies SET state = ? WHERE id = ?", (to_state, policy_id))


def stand_down(
    db: sqlite3.Connection,
    going_live: int,
    policy: str,
    *,
    actor: str,
    reason: str,
    at: str,
    hash_of: Callable[[sqlite3.Row], str | None],
) -> tuple[str, ...]:
    """Before ``policy`` (row id ``going_live``) goes live: the live one steps down to
    ``standby`` (or is retired if its artifact, hashed now by ``hash_of``, is no longer
    intact) and an older standby is retired. Returns what moved, for the log."""
    moved: list[str] = []
    standby = db.execute("SELECT * FROM policies WHERE state = 'standby'").fetchone()
    if standby is not None and int(standby["id"]) != going_live:
        ref = f"{standby['name']}@{standby['version']}"
        move(
            db,
            int(standby["id"]),
            "standby",
            "retired",
            actor=actor,
            reason=f"superseded: {policy} going live makes a newer standby ({reason})",
            at=at,
            digest=hash_of(standby),
        )
        moved.append(f"{ref}: standby → retired (superseded)")
    previous = db.execute("SELECT * FROM policies WHERE state = 'live'").fetchone()
    if previous is not None:
        ref = f"{previous['name']}@{previous['version']}"
        digest = hash_of(previous)
        intact = digest == previous["artifact_hash"]
        to_state: PolicyState = "standby" if intact else "retired"
        why = f"replaced by {policy} going live: {reason}"
        if not intact:
            why += " (its artifact changed: it cannot stand by)"
        move(
            db, int(previous["id"]), "live", to_state, actor=actor, reason=why, at=at, digest=digest
        )
        moved.append(f"{ref}: live → {to_state} (replaced by {policy})")
    return tuple(moved)

"""Gate 2: operators approve, reject, promote and roll back over a real reservoir; nothing
unapproved or tampered with is deployed, and every decision is on record."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from control.approval import (
    RULES_FILE,
    ApprovalError,
    approval_of,
    approve,
    change_text,
    go_live_status,
    in_control,
    pending,
    promote,
    reject,
    rollback,
    rollback_policy,
    rules,
    set_promotion_approvers,
    standby,
)
from control.reservoir import Reservoir

KPIS = {"cooling_kwh": 40_000.0, "pue": 1.3, "violation_kh_above_27": 0.0}


@pytest.fixture
def reservoir(tmp_path: Path) -> Iterator[Reservoir]:
    with Reservoir(tmp_path / "reservoir") as res:
        yield res


def _candidate(res: Reservoir, tmp_path: Path, name: str, *, pre_evaluated: bool = True) -> str:
    artifact = tmp_path / f"{name}.zip"
    artifact.write_bytes(f"weights of {name}".encode())
    record = res.register(name, "drl", artifact, hyperparameters={}, training_scenarios=["w"])
    res.add_evaluation(record.ref, on="twin", scenario="hot-week", kpis=KPIS)
    if pre_evaluated:
        res.transition(record.ref, "pre_evaluated", actor="gate1", reason="gate 1 passed")
    return record.ref


def _deploy(res: Reservoir, ref: str) -> None:
    approve(res, ref, operator="alice", reason="KPIs checked")
    promote(res, ref, operator="alice", reason="shadow first")
    promote(res, ref, operator="alice", reason="shadow matched the twin")


def _replaced(res: Reservoir, tmp_path: Path) -> tuple[str, str]:
    """a went live, then b replaced it: a stands by."""
    a, b = _candidate(res, tmp_path, "a"), _candidate(res, tmp_path, "b")
    _deploy(res, a)
    _deploy(res, b)
    return a, b


def test_pending_lists_pre_evaluated_only(reservoir: Reservoir, tmp_path: Path) -> None:
    a = _candidate(reservoir, tmp_path, "a")
    _candidate(reservoir, tmp_path, "b", pre_evaluated=False)
    c = _candidate(reservoir, tmp_path, "c")
    assert [r.ref for r in pending(reservoir)] == [a, c]
    approve(reservoir, a, operator="alice", reason="fine")
    assert [r.ref for r in pending(reservoir)] == [c]


def test_full_path_records_who_when_why_and_hash(reservoir: Reservoir, tmp_path: Path) -> None:
    ref = _candidate(reservoir, tmp_path, "ppo")
    digest = reservoir.get(ref).artifact_hash
    assert approve(reservoir, ref, operator="alice", reason="saves 6 %").state == "approved"
    assert promote(reservoir, ref, operator="bob", reason="try in shadow").state == "shadow"
    assert promote(reservoir, ref, operator="bob", reason="shadow good").state == "live"
    rows = [h for h in reservoir.history(ref) if h.event == "transition"][1:]
    assert [(h.to_state, h.actor, h.reason) for h in rows] == [
        ("approved", "alice", "saves 6 %"),
        ("shadow", "bob", "try in shadow"),
        ("live", "bob", "shadow good"),
    ]
    assert all(h.artifact_hash == digest and h.at for h in rows)
    approval = approval_of(reservoir, ref)
    assert approval is not None and approval.actor == "alice"
    assert in_control(reservoir) is not None


def test_unapproved_policy_cannot_go_shadow_or_live(reservoir: Reservoir, tmp_path: Path) -> None:
    ref = _candidate(reservoir, tmp_path, "ppo")
    with pytest.raises(ApprovalError, match="only an approved policy goes to shadow"):
        promote(reservoir, ref, operator="mallory", reason="skip the operator")
    raw = _candidate(reservoir, tmp_path, "raw", pre_evaluated=False)
    with pytest.raises(ApprovalError, match="candidate"):
        promote(reservoir, raw, operator="mallory", reason="straight to live")
    assert reservoir.get(ref).state == "pre_evaluated"
    assert in_control(reservoir) is None


def test_automatic_actor_cannot_approve(reservoir: Reservoir, tmp_path: Path) -> None:
    ref = _candidate(reservoir, tmp_path, "ppo")
    with pytest.raises(ApprovalError, match="reserved"):
        approve(reservoir, ref, operator="gate1", reason="self-approval")
    # An approval written past this module by an automatic actor does not count either.
    reservoir.transition(ref, "approved", actor="watchdog", reason="not a person")
    with pytest.raises(ApprovalError, match="no operator's approval"):
        promote(reservoir, ref, operator="alice", reason="go")


def test_artifact_changed_after_approval_cannot_be_promoted(
    reservoir: Reservoir, tmp_path: Path
) -> None:
    ref = _candidate(reservoir, tmp_path, "ppo")
    approve(reservoir, ref, operator="alice", reason="ok")
    path = reservoir.artifact_path(ref)
    assert path is not None
    path.write_bytes(b"swapped weights")
    with pytest.raises(ApprovalError, match="artifact changed"):
        promote(reservoir, ref, operator="alice", reason="shadow")
    assert reservoir.get(ref).state == "approved"
    # And once in shadow, tampering blocks going live too.
    path.write_bytes(b"weights of ppo")
    promote(reservoir, ref, operator="alice", reason="shadow")
    path.write_bytes(b"swapped again")
    with pytest.raises(ApprovalError, match="artifact changed"):
        promote(reservoir, ref, operator="alice", reason="live")
    assert reservoir.get(ref).state == "shadow"


def test_reject_and_bad_requests(reservoir: Reservoir, tmp_path: Path) -> None:
    ref = _candidate(reservoir, tmp_path, "ppo")
    with pytest.raises(ApprovalError, match="reason is required"):
        reject(reservoir, ref, operator="alice", reason="  ")
    with pytest.raises(ApprovalError, match="operator is required"):
        approve(reservoir, ref, operator="", reason="x")
    with pytest.raises(ApprovalError, match="unknown policy 'nope'"):
        approve(reservoir, "nope", operator="alice", reason="x")
    with pytest.raises(ApprovalError, match="bad policy reference"):
        approve(reservoir, "ppo@x@y", operator="alice", reason="x")
    assert reject(reservoir, ref, operator="alice", reason="too risky").state == "rejected"
    with pytest.raises(ApprovalError, match="rejected"):
        approve(reservoir, ref, operator="alice", reason="changed my mind")


def test_one_shadow_at_a_time(reservoir: Reservoir, tmp_path: Path) -> None:
    a, b = _candidate(reservoir, tmp_path, "a"), _candidate(reservoir, tmp_path, "b")
    for ref in (a, b):
        approve(reservoir, ref, operator="alice", reason="ok")
    promote(reservoir, a, operator="alice", reason="shadow")
    with pytest.raises(ApprovalError, match="a@1 is already in shadow"):
        promote(reservoir, b, operator="alice", reason="shadow too")


def test_rollback_of_live_returns_to_site_and_of_shadow_keeps_live(
    reservoir: Reservoir, tmp_path: Path
) -> None:
    with pytest.raises(ApprovalError, match="nothing to roll back"):
        rollback(reservoir, operator="alice", reason="panic")
    a, b = _candidate(reservoir, tmp_path, "a"), _candidate(reservoir, tmp_path, "b")
    _deploy(reservoir, a)
    approve(reservoir, b, operator="alice", reason="ok")
    promote(reservoir, b, operator="alice", reason="shadow")
    now = rollback(reservoir, operator="alice", reason="a is fine, drop b")
    assert reservoir.get(b).state == "shadow"  # the live one goes first
    assert now is None and reservoir.get(a).state == "rolled_back"
    # With no live policy, the shadow one is rolled back next.
    assert rollback(reservoir, operator="watchdog", reason="divergence") is None
    assert reservoir.get(b).state == "rolled_back"
    last = reservoir.history(b)[-1]
    assert (last.actor, last.reason, last.to_state) == ("watchdog", "divergence", "rolled_back")


def test_rollback_after_a_replacement_returns_to_the_previous_policy(
    reservoir: Reservoir, tmp_path: Path
) -> None:
    a, b = _candidate(reservoir, tmp_path, "a"), _candidate(reservoir, tmp_path, "b")
    _deploy(reservoir, a)
    _deploy(reservoir, b)  # b replaces a: a stands by
    assert reservoir.get(a).state == "standby" and standby(reservoir).ref == a  # type: ignore[union-attr]
    c = _candidate(reservoir, tmp_path, "c")
    approve(reservoir, c, operator="alice", reason="ok")
    promote(reservoir, c, operator="alice", reason="shadow")
    now = rollback(reservoir, operator="alice", reason="b misbehaves")
    assert now is not None and now.ref == a
    assert reservoir.get(b).state == "rolled_back" and standby(reservoir) is None
    resumed = reservoir.history(a)[-1]
    assert (resumed.from_state, resumed.to_state, resumed.actor) == ("standby", "live", "alice")
    assert f"rollback of {b}" in resumed.reason
    assert resumed.artifact_hash == reservoir.get(a).artifact_hash
    assert reservoir.get(c).state == "shadow"  # the shadow is untouched
    # Nothing stands by behind a: the next rollback returns to the site's own control.
    assert rollback(reservoir, operator="alice", reason="a too") is None
    assert reservoir.get(a).state == "rolled_back" and reservoir.get(c).state == "shadow"


def test_rollback_to_the_site_leaves_the_previous_policy_standing_by(
    reservoir: Reservoir, tmp_path: Path
) -> None:
    a, _ = _replaced(reservoir, tmp_path)
    assert rollback(reservoir, operator="alice", reason="plant work", to_site=True) is None
    assert reservoir.get(a).state == "standby"
    # Later the operator puts it back by hand (its approval and hash are checked again).
    assert promote(reservoir, a, operator="bob", reason="work done").state == "live"
    assert in_control(reservoir).ref == a  # type: ignore[union-attr]


def test_a_standby_policy_does_not_resume_while_another_is_live(
    reservoir: Reservoir, tmp_path: Path
) -> None:
    a, b = _replaced(reservoir, tmp_path)
    with pytest.raises(ApprovalError, match=f"{b} is live: roll it back first"):
        promote(reservoir, a, operator="bob", reason="prefer a")
    assert reservoir.get(a).state == "standby" and reservoir.get(b).state == "live"


def test_a_tampered_standby_is_retired_and_the_site_takes_over(
    reservoir: Reservoir, tmp_path: Path
) -> None:
    a, b = _replaced(reservoir, tmp_path)
    stored = reservoir.artifact_path(a)
    assert stored is not None
    stored.write_bytes(b"weights of a, patched after approval")
    now = rollback_policy(reservoir, b, operator="watchdog", reason="inlet above 27 degC")
    assert now is None and reservoir.get(a).state == "retired"
    assert "could not resume" in reservoir.history(a)[-1].reason
    assert "artifact changed" in reservoir.history(a)[-1].reason


def test_the_watchdogs_rollback_resumes_the_previous_policy(
    reservoir: Reservoir, tmp_path: Path
) -> None:
    a, b = _replaced(reservoir, tmp_path)
    now = rollback_policy(reservoir, b, operator="watchdog", reason="stale data")
    assert now is not None and now.ref == a
    last = reservoir.history(a)[-1]
    assert (last.actor, last.to_state) == ("watchdog", "live")


def test_rollback_policy_targets_one_shadow_or_live_policy(
    reservoir: Reservoir, tmp_path: Path
) -> None:
    a, b = _candidate(reservoir, tmp_path, "a"), _candidate(reservoir, tmp_path, "b")
    _deploy(reservoir, a)
    approve(reservoir, b, operator="alice", reason="ok")
    with pytest.raises(ApprovalError, match="only a shadow or live policy"):
        rollback_policy(reservoir, b, operator="watchdog", reason="not deployed yet")
    promote(reservoir, b, operator="alice", reason="shadow")
    now = rollback_policy(reservoir, b, operator="watchdog", reason="shadow crashed")
    assert now is not None and now.ref == a
    assert reservoir.get(b).state == "rolled_back"
    assert reservoir.history(b)[-1].actor == "watchdog"


def test_two_approvers_a_first_approval_then_a_different_operator(
    reservoir: Reservoir, tmp_path: Path
) -> None:
    ref = _candidate(reservoir, tmp_path, "a")
    assert rules(reservoir).promotion_approvers == 1
    set_promotion_approvers(reservoir, 2, actor="admin")
    assert rules(reservoir).promotion_approvers == 2
    access = reservoir.access_log()[-1]
    assert (access.user, access.action, access.detail) == (
        "admin",
        "set promotion approvers",
        "2 (was 1)",
    )
    approve(reservoir, ref, operator="alice", reason="KPIs checked")
    assert promote(reservoir, ref, operator="alice", reason="to shadow").state == "shadow"

    # alice's promotion is a first approval on record; the policy stays in shadow.
    before = len(reservoir.history(ref))
    assert promote(reservoir, ref, operator="alice", reason="shadow looks right").state == "shadow"
    first = reservoir.history(ref)[-1]
    assert len(reservoir.history(ref)) == before + 1
    assert (first.from_state, first.to_state, first.actor) == ("shadow", "shadow", "alice")
    assert first.reason == "approval 1 of 2 to go live: shadow looks right"
    assert first.artifact_hash == reservoir.get(ref).artifact_hash
    assert change_text(first) == "stays shadow"
    assert change_text(reservoir.history(ref)[-2]) == "approved → shadow"
    status = go_live_status(reservoir, ref)
    assert (status.approved_by, status.required, status.missing) == (("alice",), 2, 1)
    assert in_control(reservoir) is None

    # The same operator twice is refused and changes nothing.
    with pytest.raises(
        ApprovalError, match=r"alice has already approved a@1 going live.*different"
    ):
        promote(reservoir, ref, operator="alice", reason="really")
    assert len(reservoir.history(ref)) == before + 1

    # A different operator's confirmation takes it live, naming both.
    assert promote(reservoir, ref, operator="bob", reason="agreed").state == "live"
    last = reservoir.history(ref)[-1]
    assert (last.from_state, last.to_state, last.actor) == ("shadow", "live", "bob")
    assert last.reason == "agreed (approved to go live by alice, bob)"
    reservoir.verify_history()  # the first approval is a link of the chain like any other


def test_first_approvals_start_afresh_after_a_move(reservoir: Reservoir, tmp_path: Path) -> None:
    set_promotion_approvers(reservoir, 2, actor="admin")
    a = _candidate(reservoir, tmp_path, "a")
    approve(reservoir, a, operator="alice", reason="ok")
    promote(reservoir, a, operator="alice", reason="shadow")
    promote(reservoir, a, operator="alice", reason="first")
    promote(reservoir, a, operator="bob", reason="second")  # live
    b = _candidate(reservoir, tmp_path, "b")
    approve(reservoir, b, operator="alice", reason="ok")
    promote(reservoir, b, operator="alice", reason="shadow")
    promote(reservoir, b, operator="carol", reason="first")
    promote(reservoir, b, operator="bob", reason="second")  # b live, a standing by
    assert standby(reservoir).ref == a  # type: ignore[union-attr]
    rollback(reservoir, operator="dave", reason="b drifts")  # a resumes (watchdog-like path)
    assert in_control(reservoir).ref == a  # type: ignore[union-attr]
    # Its old approvals to go live belong to its earlier shadow: none count now.
    assert go_live_status(reservoir, a).approved_by == ()


def test_lowering_the_rule_lets_the_first_approver_finish(
    reservoir: Reservoir, tmp_path: Path
) -> None:
    set_promotion_approvers(reservoir, 3, actor="admin")
    ref = _candidate(reservoir, tmp_path, "a")
    approve(reservoir, ref, operator="alice", reason="ok")
    promote(reservoir, ref, operator="alice", reason="shadow")
    promote(reservoir, ref, operator="alice", reason="first")
    promote(reservoir, ref, operator="bob", reason="second")
    assert reservoir.get(ref).state == "shadow"
    assert promote(reservoir, ref, operator="alice", reason="now", approvers=2).state == "live"


def test_bad_rules_are_refused(reservoir: Reservoir) -> None:
    for bad in (0, 6, 1.5, True):
        with pytest.raises(ApprovalError, match="whole number from 1 to 5"):
            set_promotion_approvers(reservoir, bad, actor="admin")  # type: ignore[arg-type]
    assert not (reservoir.root / RULES_FILE).exists()
    (reservoir.root / RULES_FILE).write_text('{"promotion_approvers": 0}', encoding="utf-8")
    with pytest.raises(ApprovalError, match=f"{RULES_FILE}: promotion approvers must be"):
        rules(reservoir)
    (reservoir.root / RULES_FILE).write_text("{not json", encoding="utf-8")
    with pytest.raises(ApprovalError, match="cannot read them"):
        rules(reservoir)

"""The approvals page's callback as a plain function: decisions reach the reservoir's
history with who and why; bad requests get a clear message and change nothing."""

from __future__ import annotations

import dash
import pytest

from control.reservoir import Reservoir
from dashboards.actions import ONE_CLICK_ROLLBACK
from dashboards.context import AppContext
from dashboards.ids import ApprovalIds
from dashboards.pages import approvals
from tests.dashboards.conftest import OPERATOR, VIEWER, Built, session_of, text_of

OLGA = session_of(OPERATOR, "operator")


def _snapshot(root: Built) -> tuple[list[tuple[str, str]], int]:
    with Reservoir(root.reservoir) as res:
        return [(r.ref, r.state) for r in res.list()], len(res.history())


def _click(
    ctx: AppContext,
    session: dict[str, object],
    button: ApprovalIds,
    ref: str | None,
    reason: str | None,
) -> tuple[str, tuple[object, ...]]:
    message, reason_out, _ = approvals.decide(ctx, session, button, ref, reason)
    return text_of(message), (message, reason_out, *approvals.refresh(ctx, session))


def test_view_shows_queue_control_and_audit(ctx: AppContext) -> None:
    assert approvals.decide(ctx, OLGA, None, None, None) == (dash.no_update,) * 3
    control, queue, options, decisions, writes = approvals.refresh(ctx, OLGA)
    assert "the site's own control" in text_of(control)
    queue_text = text_of(queue)
    assert "tr-candidate@1" in queue_text and "fixed-candidate@1" in queue_text
    assert "gate 1 passed on test" in queue_text
    assert [o["value"] for o in options] == ["fixed-candidate@1", "tr-candidate@1"]
    assert "gate1" in text_of(decisions) and "installer" in text_of(decisions)
    writes_text = text_of(writes)
    assert (
        "cmd-9" in writes_text
        and "refused" in writes_text
        and "outside the envelope" in writes_text
    )


def test_operator_approves_promotes_and_rolls_back(ctx: AppContext, data: Built) -> None:
    message, out = _click(ctx, OLGA, ApprovalIds.APPROVE, "tr-candidate@1", " evidence is good ")
    assert message == "tr-candidate@1 is now approved (approve by olga)"
    assert out[1] == ""  # the reason box is cleared after a decision
    with Reservoir(data.reservoir) as res:
        last = res.history("tr-candidate@1")[-1]
    assert (last.actor, last.reason, last.to_state) == ("olga", "evidence is good", "approved")
    assert last.artifact_hash == res_hash(data, "tr-candidate@1")

    message, _ = _click(ctx, OLGA, ApprovalIds.PROMOTE, "tr-candidate@1", "shadow first")
    assert message == "tr-candidate@1 is now shadow (promote by olga)"
    message, out = _click(ctx, OLGA, ApprovalIds.PROMOTE, "tr-candidate@1", "shadow matched")
    assert message == "tr-candidate@1 is now live (promote by olga)"
    assert "tr-candidate@1" in text_of(out[2])  # in control

    message, out = _click(ctx, OLGA, ApprovalIds.ROLLBACK, None, "inlets rising")
    assert "rolled back by olga" in message
    assert "the site's own control" in text_of(out[2])
    with Reservoir(data.reservoir) as res:
        assert res.get("tr-candidate@1").state == "rolled_back"
        assert res.history("tr-candidate@1")[-1].reason == "inlets rising"

    message, _ = _click(ctx, OLGA, ApprovalIds.REJECT, "fixed-candidate@1", "no better")
    assert message == "fixed-candidate@1 is now rejected (reject by olga)"


def res_hash(data: Built, ref: str) -> str:
    with Reservoir(data.reservoir) as res:
        return res.get(ref).artifact_hash


@pytest.mark.parametrize(
    ("session", "button", "ref", "reason", "expected"),
    [
        (
            OLGA,
            ApprovalIds.APPROVE,
            "tr-candidate@1",
            "   ",
            "approve refused: give a reason (it is kept in the audit log)",
        ),
        (
            OLGA,
            ApprovalIds.APPROVE,
            "tr-candidate@1",
            None,
            "approve refused: give a reason (it is kept in the audit log)",
        ),
        (
            OLGA,
            ApprovalIds.APPROVE,
            "ghost@1",
            "looks fine",
            "approve refused: unknown policy 'ghost'",
        ),
        (OLGA, ApprovalIds.APPROVE, None, "looks fine", "approve refused: choose a policy first"),
        (
            OLGA,
            ApprovalIds.PROMOTE,
            "fixed-setpoints@1",
            "go",
            "promote refused: policy fixed-setpoints@1 is candidate; only an approved policy goes "
            "to shadow and only a shadow or standby policy goes live",
        ),
        (
            OLGA,
            ApprovalIds.ROLLBACK,
            None,
            "panic",
            "rollback refused: nothing to roll back: no policy is live or in shadow",
        ),
        (
            session_of(VIEWER, "viewer"),
            ApprovalIds.APPROVE,
            "tr-candidate@1",
            "looks fine",
            "approve refused: victor is a viewer: only an operator may approve policies",
        ),
        (
            session_of(VIEWER, "operator"),
            ApprovalIds.ROLLBACK,
            None,
            "forged role",
            "rollback refused: victor is a viewer: only an operator may rollback policies",
        ),
        (
            session_of(OPERATOR, "operator", expires_at_s=1.0),
            ApprovalIds.APPROVE,
            "tr-candidate@1",
            "late",
            "approve refused: your session has expired; log in again",
        ),
        (
            {},
            ApprovalIds.REJECT,
            "tr-candidate@1",
            "anon",
            "reject refused: you are not logged in; log in first",
        ),
    ],
)
def test_bad_requests_are_refused_and_change_nothing(
    ctx: AppContext,
    data: Built,
    session: dict[str, object],
    button: ApprovalIds,
    ref: str | None,
    reason: str | None,
    expected: str,
) -> None:
    before = _snapshot(data)
    message, out = _click(ctx, session, button, ref, reason)
    assert message == expected
    assert out[1] is dash.no_update  # the reason typed is kept
    assert _snapshot(data) == before
    if "session" in expected or "logged in" in expected:
        assert all(part is dash.no_update for part in out[2:])  # and no data is shown


def test_rollback_is_one_click(ctx: AppContext, data: Built) -> None:
    for button, reason in ((ApprovalIds.APPROVE, "good"), (ApprovalIds.PROMOTE, "shadow")):
        _click(ctx, OLGA, button, "tr-candidate@1", reason)
    message, _ = _click(ctx, OLGA, ApprovalIds.ROLLBACK, None, "")
    assert message == "rolled back by olga: the site's own control is now in control"
    with Reservoir(data.reservoir) as res:
        last = res.history("tr-candidate@1")[-1]
    assert (last.to_state, last.actor, last.reason) == ("rolled_back", "olga", ONE_CLICK_ROLLBACK)


def test_rollback_returns_to_the_policy_standing_by(ctx: AppContext, data: Built) -> None:
    for ref in ("tr-candidate@1", "fixed-candidate@1"):
        for button, reason in (
            (ApprovalIds.APPROVE, "good"),
            (ApprovalIds.PROMOTE, "shadow"),
            (ApprovalIds.PROMOTE, "live"),
        ):
            _click(ctx, OLGA, button, ref, reason)
    control, _, options, *_ = approvals.refresh(ctx, OLGA)
    assert "fixed-candidate@1" in text_of(control) and "tr-candidate@1" in text_of(control)
    assert {"label": "tr-candidate@1 (standby)", "value": "tr-candidate@1"} in options
    message, out = _click(ctx, OLGA, ApprovalIds.ROLLBACK, None, "")
    assert message == "rolled back by olga: tr-candidate@1 is now in control"
    assert "a rollback returns to the site" in text_of(out[2])  # nothing stands by now
    with Reservoir(data.reservoir) as res:
        assert res.get("tr-candidate@1").state == "live"


def test_a_historian_made_after_the_app_is_picked_up(ctx: AppContext, data: Built) -> None:
    moved = data.historian.with_name("later.sqlite")
    data.historian.rename(moved)
    *_, writes = approvals.refresh(ctx, OLGA)
    assert "does not exist" in text_of(writes)
    moved.rename(data.historian)  # the live loop has started writing
    *_, writes = approvals.refresh(ctx, OLGA)
    assert "cmd-9" in text_of(writes)

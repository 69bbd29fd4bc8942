"""The history's hash chain: every row linked to the one before, checked at every move into
service; the attack of issue 17 (edit the artifact, drop the triggers, rewrite the stored
hashes with sqlite3) refused, naming the first broken record; what an anchor adds against
an attacker who recomputes the whole chain; and old reservoirs chained without losing a row."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from control import approval
from control.reservoir import (
    SCHEMA_VERSION,
    Reservoir,
    ReservoirError,
    TamperedHistoryError,
    hash_artifact,
)
from control.reservoir.chain import GENESIS, row_hash
from tests.control.reservoir.helpers import (
    PATHS,
    legacy_schema,
    raw_connection,
    register_policy,
    walk,
)

TRIGGERS = (
    "history_no_update",
    "history_no_delete",
    "history_chained",
    "policies_fixed",
    "policies_state_follows_history",
)


def _approved(res: Reservoir, model: Path, name: str = "ppo") -> str:
    ref = register_policy(res, name, model)
    walk(res, ref, ["pre_evaluated"])
    approval.approve(res, ref, operator="alice", reason="report reviewed")
    return ref


def _drop_triggers(raw: sqlite3.Connection) -> None:
    for trigger in TRIGGERS:
        raw.execute(f"DROP TRIGGER IF EXISTS {trigger}")


def _rechain(raw: sqlite3.Connection) -> None:
    """What an attacker who has this code does after an edit: recompute every hash."""
    raw.row_factory = sqlite3.Row
    prev = GENESIS
    for row in raw.execute("SELECT * FROM history ORDER BY id").fetchall():
        policy = raw.execute("SELECT * FROM policies WHERE id = ?", (row["policy_id"],)).fetchone()
        digest = row_hash(prev, row, policy)
        raw.execute(
            "UPDATE history SET prev_hash = ?, row_hash = ? WHERE id = ?", (prev, digest, row["id"])
        )
        prev = digest


def test_every_row_is_linked_to_the_one_before(reservoir: Reservoir, model: Path) -> None:
    a, b = register_policy(reservoir, "a", model), register_policy(reservoir, "b", model)
    walk(reservoir, a, PATHS["live"])
    walk(reservoir, b, PATHS["live"])  # a steps down to standby in the same transaction
    history = reservoir.history()
    assert all(h.row_hash is not None and len(h.row_hash) == 64 for h in history)
    assert len({h.row_hash for h in history}) == len(history)
    head = reservoir.verify_history()
    assert head == reservoir.head()
    assert (head.id, head.row_hash, head.records) == (
        history[-1].id,
        history[-1].row_hash,
        len(history),
    )
    assert reservoir.verify_history({history[2].id: str(history[2].row_hash)}) == head


def test_issue_17_attack_edit_the_artifact_drop_triggers_rewrite_the_hash(
    reservoir: Reservoir, model: Path
) -> None:
    """Issue 17: editing the artifact, dropping the triggers and rewriting the hash in the
    database promoted the edited policy as "verified". Now the promotion is refused."""
    other = _approved(reservoir, model, "sac")
    ref = _approved(reservoir, model)
    stored = reservoir.artifact_path(ref)
    assert stored is not None
    stored.write_bytes(b"weights v1 with a backdoor")
    forged = hash_artifact(stored)
    with raw_connection(reservoir) as raw:
        _drop_triggers(raw)
        raw.execute("UPDATE policies SET artifact_hash = ? WHERE name = 'ppo'", (forged,))
        raw.execute(
            "UPDATE history SET artifact_hash = ? WHERE policy_id = "
            "(SELECT id FROM policies WHERE name = 'ppo')",
            (forged,),
        )
    first = reservoir.history(ref)[0]
    assert reservoir.current_hash(ref) == reservoir.get(ref).artifact_hash  # the old check passes
    with pytest.raises(approval.ApprovalError, match=rf"history record #{first.id} \({ref} "):
        approval.promote(reservoir, ref, operator="alice", reason="shadow")
    with pytest.raises(TamperedHistoryError, match=f"#{first.id}"):
        reservoir.transition(ref, "shadow", actor="alice", reason="past the gate")
    assert reservoir.get(ref).state == "approved"
    assert not reservoir.verify(ref) and not reservoir.verify(other)
    # Nothing at all goes into service on that history, not even the untouched policy.
    with pytest.raises(approval.ApprovalError, match="history record"):
        approval.promote(reservoir, other, operator="alice", reason="shadow")


def _edit_reason(raw: sqlite3.Connection) -> None:
    raw.execute("UPDATE history SET reason = 'nothing to see' WHERE id = 2")


def _delete_a_row(raw: sqlite3.Connection) -> None:
    raw.execute("DELETE FROM history WHERE id = 2")


def _make_an_oracle_deployable(raw: sqlite3.Connection) -> None:
    raw.execute("UPDATE policies SET kind = 'drl' WHERE name = 'oracle'")


def _skip_the_gate(raw: sqlite3.Connection) -> None:
    raw.execute("UPDATE policies SET state = 'approved' WHERE name = 'oracle'")


def _forge_an_approval(raw: sqlite3.Connection) -> None:
    raw.execute(
        "INSERT INTO history (policy_id, event, from_state, to_state, actor, reason, at, "
        "artifact_hash, prev_hash, row_hash) SELECT id, 'transition', 'pre_evaluated', "
        "'approved', 'alice', 'ok', '2030-01-01', artifact_hash, "
        "(SELECT row_hash FROM history ORDER BY id DESC LIMIT 1), 'f' FROM policies "
        "WHERE name = 'oracle'"
    )


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (_edit_reason, r"history record #2 .*contents .* changed"),
        (_delete_a_row, r"history record #3 .*link to the record before"),
        (_make_an_oracle_deployable, r"history record #4 \(oracle@1 — → candidate"),
        (_skip_the_gate, r"policy oracle@1: state approved is not its history's pre_evaluated"),
        (_forge_an_approval, r"history record #7 \(oracle@1 pre_evaluated → approved"),
    ],
)
def test_any_edit_past_the_api_names_the_first_broken_record(
    reservoir: Reservoir,
    model: Path,
    edit: Callable[[sqlite3.Connection], None],
    message: str,
) -> None:
    ref = _approved(reservoir, model)  # rows 1-3
    oracle = register_policy(reservoir, "oracle", model, kind="oracle")  # row 4
    walk(reservoir, oracle, ["pre_evaluated"])  # row 5
    reservoir.transition(ref, "shadow", actor="alice", reason="ok")  # row 6
    with raw_connection(reservoir) as raw:
        _drop_triggers(raw)
        edit(raw)
    with pytest.raises(TamperedHistoryError, match=message):
        reservoir.verify_history()
    with pytest.raises(TamperedHistoryError, match=message):
        reservoir.transition(ref, "live", actor="alice", reason="ok")


def test_a_rollback_is_never_refused_for_a_broken_chain(reservoir: Reservoir, model: Path) -> None:
    ref = _approved(reservoir, model)
    approval.promote(reservoir, ref, operator="alice", reason="shadow")
    approval.promote(reservoir, ref, operator="alice", reason="live")
    with raw_connection(reservoir) as raw:
        _drop_triggers(raw)
        _edit_reason(raw)
    assert approval.rollback(reservoir, operator="watchdog", reason="trip") is None
    assert reservoir.get(ref).state == "rolled_back"


def test_a_recomputed_chain_passes_alone_and_fails_against_an_anchor(
    reservoir: Reservoir, model: Path
) -> None:
    """The limit, stated: a chain kept in the same file is recomputed by an attacker with
    write access; a head noted elsewhere before the edit catches it."""
    ref = _approved(reservoir, model)
    anchor = reservoir.verify_history()  # what `twinloop gate approve` showed the operator
    stored = reservoir.artifact_path(ref)
    assert stored is not None
    stored.write_bytes(b"weights v1 with a backdoor")
    with raw_connection(reservoir) as raw:
        _drop_triggers(raw)
        raw.execute("UPDATE policies SET artifact_hash = ?", (hash_artifact(stored),))
        raw.execute("UPDATE history SET artifact_hash = ?", (hash_artifact(stored),))
        _rechain(raw)
    assert reservoir.verify_history().records == anchor.records  # undetected without anchor
    with pytest.raises(TamperedHistoryError, match=rf"#{anchor.id} .*not the anchored"):
        reservoir.verify_history({anchor.id: anchor.row_hash})
    with pytest.raises(TamperedHistoryError, match="#99: anchored but absent"):
        reservoir.verify_history({99: anchor.row_hash})


def test_a_version_2_reservoir_is_chained_keeping_every_row(tmp_path: Path, model: Path) -> None:
    root = tmp_path / "old"
    with legacy_schema(2), Reservoir(root) as old:
        refs = [register_policy(old, name, model) for name in ("a", "b", "c", "d")]
        walk(old, refs[0], PATHS["standby"])
        walk(old, refs[1], PATHS["rejected"])
        walk(old, refs[2], PATHS["live"])
        history, states = old.history(), {r: old.get(r).state for r in refs}
        assert old.schema_version == 2
    with Reservoir(root) as new:
        assert new.schema_version == SCHEMA_VERSION
        assert new.history() == history and {r: new.get(r).state for r in refs} == states
        assert new.verify_history().records == len(history)
        walk(new, refs[3], PATHS["live"])  # the chain goes on from the migrated rows
        assert new.verify_history().records == len(new.history())
        with raw_connection(new) as raw, pytest.raises(sqlite3.IntegrityError, match="append-only"):
            raw.execute("UPDATE history SET row_hash = 'x'")


def test_a_broken_chain_is_a_reservoir_error(reservoir: Reservoir, model: Path) -> None:
    _approved(reservoir, model)
    with raw_connection(reservoir) as raw:
        _drop_triggers(raw)
        _edit_reason(raw)
    with pytest.raises(ReservoirError):
        reservoir.verify_history()

"""The state machine and its guards: every legal and illegal move, pre-evaluation needing
an evaluation in the twin, one live policy and the previous standing by, oracles and changed
artifacts never deployed."""

from __future__ import annotations

import itertools
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from control.reservoir import (
    STATES,
    TRANSITIONS,
    Reservoir,
    ReservoirError,
)
from tests.control.reservoir.helpers import KPIS, PATHS, raw_connection, register_policy, walk


def test_every_legal_transition_and_every_illegal_one(reservoir: Reservoir, model: Path) -> None:
    for i, (start, target) in enumerate(itertools.product(STATES, STATES)):
        ref = register_policy(reservoir, f"p{i}", model)
        walk(reservoir, ref, PATHS[start])
        assert reservoir.get(ref).state == start
        reservoir.add_evaluation(ref, on="twin", scenario="suite", kpis=KPIS)
        if target in TRANSITIONS[start]:
            record = reservoir.transition(ref, target, actor="alice", reason="because")
            assert record.state == target, (start, target)
            last = reservoir.history(ref)[-1]
            assert (last.from_state, last.to_state, last.actor, last.reason) == (
                start,
                target,
                "alice",
                "because",
            )
            assert last.artifact_hash == record.artifact_hash
            assert datetime.fromisoformat(last.at).utcoffset() == UTC.utcoffset(None)
        else:
            before = reservoir.history(ref)
            with pytest.raises(ReservoirError, match=f"illegal transition {start} → {target}"):
                reservoir.transition(ref, target, actor="alice", reason="because")
            assert reservoir.get(ref).state == start
            assert reservoir.history(ref) == before
        # Keep the next walk to live from moving this one.
        for record in reservoir.list(state="live") + reservoir.list(state="standby"):
            reservoir.transition(record.ref, "retired", actor="tester", reason="clean up")


def test_pre_evaluated_needs_an_evaluation_in_the_twin(reservoir: Reservoir, model: Path) -> None:
    ref = register_policy(reservoir, "ppo", model)
    with pytest.raises(ReservoirError, match="no evaluation in the twin"):
        reservoir.transition(ref, "pre_evaluated", actor="gate", reason="suite passed")
    reservoir.add_evaluation(ref, on="plant", scenario="week", kpis=KPIS)
    with pytest.raises(ReservoirError, match="no evaluation in the twin"):
        reservoir.transition(ref, "pre_evaluated", actor="gate", reason="suite passed")
    reservoir.add_evaluation(ref, on="twin", scenario="week", kpis=KPIS)
    assert reservoir.transition(ref, "pre_evaluated", actor="gate", reason="ok").state == (
        "pre_evaluated"
    )


def test_only_one_policy_is_live_and_the_previous_stands_by(
    reservoir: Reservoir, model: Path
) -> None:
    a, b = register_policy(reservoir, "a", model), register_policy(reservoir, "b", model)
    walk(reservoir, a, PATHS["live"])
    walk(reservoir, b, PATHS["shadow"])
    reservoir.transition(b, "live", actor="operator", reason="beats a by 8 %")

    assert [r.ref for r in reservoir.list(state="live")] == [b]
    assert reservoir.get(a).state == "standby"
    replaced, promoted = reservoir.history()[-2:]
    assert (replaced.policy, replaced.from_state, replaced.to_state) == (a, "live", "standby")
    assert replaced.actor == "operator" and "replaced by b@1" in replaced.reason
    assert (promoted.policy, promoted.from_state, promoted.to_state) == (b, "shadow", "live")
    assert replaced.at == promoted.at
    history = reservoir.history()
    with raw_connection(reservoir) as raw:
        # Even past the API, two live rows break a unique index (with the history row first).
        raw.execute("BEGIN")
        policy_id = raw.execute("SELECT id FROM policies WHERE name = 'a'").fetchone()[0]
        raw.execute(  # linked to the last row (as the chain's trigger asks), hash aside
            "INSERT INTO history (policy_id, event, from_state, to_state, actor, reason, at, "
            "prev_hash, row_hash) VALUES (?, 'transition', 'retired', 'live', 'x', 'x', 'x', "
            "(SELECT row_hash FROM history ORDER BY id DESC LIMIT 1), 'x')",
            (policy_id,),
        )
        with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
            raw.execute("UPDATE policies SET state = 'live' WHERE id = ?", (policy_id,))
        raw.execute("ROLLBACK")
    assert reservoir.history() == history and reservoir.get(a).state == "standby"

    # A third going live: b stands by, a (the older standby) is retired; one standby only.
    c = register_policy(reservoir, "c", model)
    walk(reservoir, c, PATHS["live"])
    states = {ref: reservoir.get(ref).state for ref in (a, b, c)}
    assert states == {a: "retired", b: "standby", c: "live"}
    assert "superseded" in reservoir.history(a)[-1].reason


def test_a_replaced_policy_whose_artifact_changed_is_retired_not_kept_standing_by(
    reservoir: Reservoir, model: Path
) -> None:
    a, b = register_policy(reservoir, "a", model), register_policy(reservoir, "b", model)
    walk(reservoir, a, PATHS["live"])
    stored = reservoir.artifact_path(a)
    assert stored is not None
    stored.write_bytes(b"weights v1 with a backdoor")
    walk(reservoir, b, PATHS["live"])
    assert reservoir.get(a).state == "retired"
    assert "artifact changed" in reservoir.history(a)[-1].reason


def test_oracle_is_never_deployable(reservoir: Reservoir, model: Path) -> None:
    ref = register_policy(reservoir, "oracle-mpc", model, kind="oracle")
    walk(reservoir, ref, ["pre_evaluated"])
    for target in ("approved", "shadow", "live"):
        with pytest.raises(ReservoirError, match=r"oracle.*never deployable"):
            reservoir.transition(ref, target, actor="operator", reason="looks great")
    assert reservoir.get(ref).state == "pre_evaluated"
    assert reservoir.transition(ref, "rejected", actor="operator", reason="upper bound").state == (
        "rejected"
    )


def test_tampered_artifact_fails_verify_and_blocks_promotion(
    reservoir: Reservoir, model: Path
) -> None:
    ref = register_policy(reservoir, "ppo", model)
    walk(reservoir, ref, ["pre_evaluated"])
    stored = reservoir.artifact_path(ref)
    assert stored is not None and reservoir.verify(ref)

    stored.write_bytes(b"weights v1 with a backdoor")
    assert not reservoir.verify(ref)
    with pytest.raises(ReservoirError, match="artifact changed since registration"):
        reservoir.transition(ref, "approved", actor="operator", reason="ok")
    assert reservoir.get(ref).state == "pre_evaluated"

    stored.write_bytes(b"weights v1")  # put back exactly: the hash says so
    assert reservoir.verify(ref)
    walk(reservoir, ref, ["approved", "shadow"])
    stored.unlink()
    assert not reservoir.verify(ref) and reservoir.current_hash(ref) is None
    with pytest.raises(ReservoirError, match="now missing"):
        reservoir.transition(ref, "live", actor="operator", reason="go")
    # Taking a policy out stays possible, and the history keeps what was there at that moment.
    reservoir.transition(ref, "rolled_back", actor="watchdog", reason="artifact gone")
    assert reservoir.history(ref)[-1].artifact_hash is None

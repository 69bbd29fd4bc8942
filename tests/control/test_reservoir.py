"""The policy reservoir on real SQLite files: versions, artifacts and their hashes, the
state machine and its guards, the append-only history, two handles and two processes on one
root, the comparison table, and the errors bad input gets."""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import closing, contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest

from control.reservoir import (
    DB_FILE,
    SCHEMA_VERSION,
    STATES,
    TRANSITIONS,
    Reservoir,
    ReservoirError,
    canonical_json,
    hash_artifact,
)

KPIS = {"cooling_kwh": 41_000.0, "pue": 1.25, "violation_kh_above_27": 0.0, "max_inlet_c": 26.1}
PATHS: dict[str, list[str]] = {
    "candidate": [],
    "pre_evaluated": ["pre_evaluated"],
    "approved": ["pre_evaluated", "approved"],
    "shadow": ["pre_evaluated", "approved", "shadow"],
    "live": ["pre_evaluated", "approved", "shadow", "live"],
    "standby": ["pre_evaluated", "approved", "shadow", "live", "<replaced>"],
    "retired": ["retired"],
    "rejected": ["pre_evaluated", "rejected"],
    "rolled_back": ["pre_evaluated", "approved", "shadow", "rolled_back"],
}
"""A legal way from candidate to each state (``<replaced>``: another policy goes live and is
rolled back at once, leaving this one standing by with none live)."""


@pytest.fixture
def reservoir(tmp_path: Path) -> Iterator[Reservoir]:
    with Reservoir(tmp_path / "reservoir") as res:
        yield res


@pytest.fixture
def model(tmp_path: Path) -> Path:
    path = tmp_path / "model.zip"
    path.write_bytes(b"weights v1")
    return path


def _register(res: Reservoir, name: str, artifact: Path, kind: str = "drl") -> str:
    return res.register(
        name, kind, artifact, hyperparameters={"lr": 3e-4}, training_scenarios=["mild"]
    ).ref


def _walk(res: Reservoir, ref: str, states: list[str]) -> None:
    for state in states:
        if state == "<replaced>":
            successor = res.register(
                f"after-{ref.replace('@', '-')}",
                "rule",
                None,
                hyperparameters={"k": 1},
                training_scenarios=[],
            ).ref
            _walk(res, successor, PATHS["live"])
            res.transition(successor, "rolled_back", actor="tester", reason="to leave standby")
            continue
        if state == "pre_evaluated":
            res.add_evaluation(ref, on="twin", scenario="suite", kpis=KPIS)
        res.transition(ref, state, actor="tester", reason=f"to {state}")


@contextmanager
def _raw(res: Reservoir) -> Iterator[sqlite3.Connection]:
    """A plain second connection to the database, in autocommit mode, closed after."""
    with closing(sqlite3.connect(res.root / DB_FILE, isolation_level=None)) as raw:
        yield raw


# --------------------------------------------------------------------------- registering
def test_versions_increment_per_name_and_record_lineage(reservoir: Reservoir, model: Path) -> None:
    first = reservoir.register(
        "ppo-a",
        "drl",
        model,
        hyperparameters={"lr": 3e-4, "net": [64, 64]},
        training_scenarios=["twin-train-mild", "twin-fault-fouling"],
        description="first try",
    )
    second = reservoir.register(
        "ppo-a", "drl", model, hyperparameters={}, training_scenarios=[], parent="ppo-a@1"
    )
    other = reservoir.register(
        "mpc.v2", "mpc", model, hyperparameters={}, training_scenarios=[], parent="ppo-a"
    )
    third = reservoir.register("ppo-a", "drl", model, hyperparameters={}, training_scenarios=[])

    assert [first.version, second.version, third.version, other.version] == [1, 2, 3, 1]
    assert (first.parent, second.parent, other.parent) == (None, "ppo-a@1", "ppo-a@2")
    assert first.state == "candidate"
    assert first.hyperparameters == {"lr": 3e-4, "net": [64, 64]}
    assert first.training_scenarios == ("twin-train-mild", "twin-fault-fouling")
    assert first.description == "first try"
    assert datetime.fromisoformat(first.created_at).utcoffset() == UTC.utcoffset(None)
    assert reservoir.get("ppo-a") == third
    assert reservoir.get("ppo-a@1") == first
    assert [r.ref for r in reservoir.list()] == ["mpc.v2@1", "ppo-a@1", "ppo-a@2", "ppo-a@3"]
    assert [r.ref for r in reservoir.list(kind="mpc")] == ["mpc.v2@1"]
    registered = reservoir.history("ppo-a@1")
    assert [(h.event, h.from_state, h.to_state) for h in registered] == [
        ("registered", None, "candidate")
    ]
    assert registered[0].artifact_hash == first.artifact_hash


def test_file_artifact_is_copied_and_hashed_over_its_bytes(
    reservoir: Reservoir, model: Path
) -> None:
    record = reservoir.register("ppo", "drl", model, hyperparameters={}, training_scenarios=[])
    stored = reservoir.artifact_path("ppo")
    assert stored is not None
    assert stored == reservoir.root / "artifacts" / "ppo" / "1" / "model.zip"
    assert stored.read_bytes() == b"weights v1"
    assert record.artifact_hash == hashlib.sha256(b"weights v1").hexdigest()

    model.write_bytes(b"the source changes later")  # the reservoir keeps its own copy
    assert reservoir.verify("ppo")
    again = reservoir.register("ppo", "drl", model, hyperparameters={}, training_scenarios=[])
    assert again.artifact_hash != record.artifact_hash
    assert reservoir.get("ppo@1").artifact_hash == record.artifact_hash
    assert not list((reservoir.root / ".staging").iterdir())


def test_folder_artifact_hash_is_stable_and_covers_paths_and_contents(
    reservoir: Reservoir, tmp_path: Path
) -> None:
    agent = tmp_path / "agent"
    (agent / "sub").mkdir(parents=True)
    (agent / "policy.pt").write_bytes(b"\x00\x01weights")
    (agent / "sub" / "config.json").write_text('{"gamma": 0.99}', encoding="utf-8")
    a = reservoir.register("sac", "drl", agent, hyperparameters={}, training_scenarios=[])
    b = reservoir.register("sac", "drl", agent, hyperparameters={}, training_scenarios=[])
    assert a.artifact_hash == b.artifact_hash == hash_artifact(agent)
    stored = reservoir.artifact_path("sac@1")
    assert stored is not None and (stored / "sub" / "config.json").is_file()

    moved = tmp_path / "renamed"
    (moved / "sub").mkdir(parents=True)
    (moved / "policy.pt").write_bytes(b"\x00\x01weights")
    (moved / "sub" / "config.json").write_text('{"gamma": 0.99}', encoding="utf-8")
    assert hash_artifact(moved) == a.artifact_hash  # where the folder lies does not count
    (moved / "sub" / "config.json").rename(moved / "config.json")
    assert hash_artifact(moved) != a.artifact_hash  # a file's path inside it does


def test_rule_policy_without_artifact_hashes_its_hyperparameters(reservoir: Reservoir) -> None:
    params = {"supply_air_c": 18.0, "chw_supply_c": 7.0}
    record = reservoir.register(
        "fixed-setpoints", "rule", None, hyperparameters=params, training_scenarios=[]
    )
    expected = hashlib.sha256(canonical_json(params).encode("utf-8")).hexdigest()
    assert record.artifact is None and reservoir.artifact_path(record.ref) is None
    assert record.artifact_hash == expected
    assert reservoir.verify(record.ref)
    _walk(reservoir, record.ref, PATHS["live"])
    assert reservoir.get(record.ref).state == "live"


def test_leftover_artifact_from_a_crash_is_moved_aside(reservoir: Reservoir, model: Path) -> None:
    leftover = reservoir.root / "artifacts" / "ppo" / "1"
    leftover.mkdir(parents=True)
    (leftover / "half.zip").write_bytes(b"half")
    _register(reservoir, "ppo", model)
    assert reservoir.verify("ppo@1")
    orphans = list((reservoir.root / ".orphans").iterdir())
    assert len(orphans) == 1 and (orphans[0] / "half.zip").read_bytes() == b"half"


def test_failed_registration_leaves_nothing_behind(reservoir: Reservoir, model: Path) -> None:
    with _raw(reservoir) as raw:  # a real failure inside the transaction, after the copy
        raw.execute(
            "CREATE TRIGGER fail BEFORE INSERT ON history WHEN NEW.actor = 'crash' "
            "BEGIN SELECT RAISE(ABORT, 'boom'); END"
        )
    with pytest.raises(sqlite3.IntegrityError, match="boom"):
        reservoir.register(
            "ppo", "drl", model, hyperparameters={}, training_scenarios=[], actor="crash"
        )
    assert reservoir.list() == []
    assert not (reservoir.root / "artifacts" / "ppo" / "1").exists()
    assert not list((reservoir.root / ".staging").iterdir())
    assert _register(reservoir, "ppo", model) == "ppo@1"


# --------------------------------------------------------------------------- transitions
def test_every_legal_transition_and_every_illegal_one(reservoir: Reservoir, model: Path) -> None:
    for i, (start, target) in enumerate(itertools.product(STATES, STATES)):
        ref = _register(reservoir, f"p{i}", model)
        _walk(reservoir, ref, PATHS[start])
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
    ref = _register(reservoir, "ppo", model)
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
    a, b = _register(reservoir, "a", model), _register(reservoir, "b", model)
    _walk(reservoir, a, PATHS["live"])
    _walk(reservoir, b, PATHS["shadow"])
    reservoir.transition(b, "live", actor="operator", reason="beats a by 8 %")

    assert [r.ref for r in reservoir.list(state="live")] == [b]
    assert reservoir.get(a).state == "standby"
    replaced, promoted = reservoir.history()[-2:]
    assert (replaced.policy, replaced.from_state, replaced.to_state) == (a, "live", "standby")
    assert replaced.actor == "operator" and "replaced by b@1" in replaced.reason
    assert (promoted.policy, promoted.from_state, promoted.to_state) == (b, "shadow", "live")
    assert replaced.at == promoted.at
    history = reservoir.history()
    with _raw(reservoir) as raw:
        # Even past the API, two live rows break a unique index (with the history row first).
        raw.execute("BEGIN")
        policy_id = raw.execute("SELECT id FROM policies WHERE name = 'a'").fetchone()[0]
        raw.execute(
            "INSERT INTO history (policy_id, event, from_state, to_state, actor, reason, at) "
            "VALUES (?, 'transition', 'retired', 'live', 'x', 'x', 'x')",
            (policy_id,),
        )
        with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
            raw.execute("UPDATE policies SET state = 'live' WHERE id = ?", (policy_id,))
        raw.execute("ROLLBACK")
    assert reservoir.history() == history and reservoir.get(a).state == "standby"

    # A third going live: b stands by, a (the older standby) is retired; one standby only.
    c = _register(reservoir, "c", model)
    _walk(reservoir, c, PATHS["live"])
    states = {ref: reservoir.get(ref).state for ref in (a, b, c)}
    assert states == {a: "retired", b: "standby", c: "live"}
    assert "superseded" in reservoir.history(a)[-1].reason


def test_a_replaced_policy_whose_artifact_changed_is_retired_not_kept_standing_by(
    reservoir: Reservoir, model: Path
) -> None:
    a, b = _register(reservoir, "a", model), _register(reservoir, "b", model)
    _walk(reservoir, a, PATHS["live"])
    stored = reservoir.artifact_path(a)
    assert stored is not None
    stored.write_bytes(b"weights v1 with a backdoor")
    _walk(reservoir, b, PATHS["live"])
    assert reservoir.get(a).state == "retired"
    assert "artifact changed" in reservoir.history(a)[-1].reason


def test_a_version_1_reservoir_migrates_to_standby_keeping_everything(
    tmp_path: Path, model: Path
) -> None:
    import control.reservoir as module

    root = tmp_path / "old"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(module, "_MIGRATIONS", module._MIGRATIONS[:1])
        mp.setattr(module, "SCHEMA_VERSION", 1)
        with Reservoir(root) as old:
            a, b = _register(old, "a", model), _register(old, "b", model)
            _walk(old, a, PATHS["live"])
            old.add_evaluation(b, on="plant", scenario="week", kpis=KPIS)
            history, evaluations = old.history(), old.evaluations(b)
            assert old.schema_version == 1
    with Reservoir(root) as new:
        assert new.schema_version == SCHEMA_VERSION
        assert new.history() == history and new.evaluations(b) == evaluations
        assert new.get(a).state == "live" and new.verify(a)
        _walk(new, b, PATHS["live"])
        assert new.get(a).state == "standby"
        with _raw(new) as raw:  # the rebuilt table kept its triggers
            with pytest.raises(sqlite3.IntegrityError, match="cannot be deleted"):
                raw.execute("DELETE FROM policies")
            assert raw.execute("PRAGMA foreign_key_check").fetchall() == []


def test_oracle_is_never_deployable(reservoir: Reservoir, model: Path) -> None:
    ref = _register(reservoir, "oracle-mpc", model, kind="oracle")
    _walk(reservoir, ref, ["pre_evaluated"])
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
    ref = _register(reservoir, "ppo", model)
    _walk(reservoir, ref, ["pre_evaluated"])
    stored = reservoir.artifact_path(ref)
    assert stored is not None and reservoir.verify(ref)

    stored.write_bytes(b"weights v1 with a backdoor")
    assert not reservoir.verify(ref)
    with pytest.raises(ReservoirError, match="artifact changed since registration"):
        reservoir.transition(ref, "approved", actor="operator", reason="ok")
    assert reservoir.get(ref).state == "pre_evaluated"

    stored.write_bytes(b"weights v1")  # put back exactly: the hash says so
    assert reservoir.verify(ref)
    _walk(reservoir, ref, ["approved", "shadow"])
    stored.unlink()
    assert not reservoir.verify(ref) and reservoir.current_hash(ref) is None
    with pytest.raises(ReservoirError, match="now missing"):
        reservoir.transition(ref, "live", actor="operator", reason="go")
    # Taking a policy out stays possible, and the history keeps what was there at that moment.
    reservoir.transition(ref, "rolled_back", actor="watchdog", reason="artifact gone")
    assert reservoir.history(ref)[-1].artifact_hash is None


def test_tampered_rule_hyperparameters_fail_verify(reservoir: Reservoir) -> None:
    ref = reservoir.register(
        "fixed", "rule", None, hyperparameters={"supply_air_c": 18.0}, training_scenarios=[]
    ).ref
    with _raw(reservoir) as raw:  # the trigger guards the row; drop it as an attacker would
        raw.execute("DROP TRIGGER policies_fixed")
        raw.execute("UPDATE policies SET hyperparameters = '{\"supply_air_c\":30.0}'")
    assert not reservoir.verify(ref)


# --------------------------------------------------------------------------- append-only
def test_history_and_rows_cannot_be_changed_or_deleted(reservoir: Reservoir, model: Path) -> None:
    ref = _register(reservoir, "ppo", model)
    _walk(reservoir, ref, ["pre_evaluated"])
    before = reservoir.history()
    refused = {
        "UPDATE history SET reason = 'nothing happened'": "append-only",
        "DELETE FROM history": "append-only",
        "UPDATE evaluations SET kpis = '{}'": "cannot be changed",
        "DELETE FROM evaluations": "cannot be deleted",
        "DELETE FROM policies": "cannot be deleted",
        "UPDATE policies SET artifact_hash = 'x'": "only its state",
        "UPDATE policies SET state = 'live'": "only with a history row",
    }
    with _raw(reservoir) as raw:
        for statement, message in refused.items():
            with pytest.raises(sqlite3.IntegrityError, match=message):
                raw.execute(statement)
    assert reservoir.history() == before
    assert reservoir.get(ref).state == "pre_evaluated"
    assert len(reservoir.evaluations(ref)) == 1


def test_database_is_in_wal_mode_with_a_schema_version(reservoir: Reservoir) -> None:
    assert reservoir.schema_version == SCHEMA_VERSION
    with _raw(reservoir) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        (version,) = raw.execute("SELECT MAX(version) FROM schema_version").fetchone()
    assert version == SCHEMA_VERSION
    reservoir.close()
    with Reservoir(reservoir.root) as again:  # reopening migrates nothing
        assert again.schema_version == SCHEMA_VERSION
    with _raw(reservoir) as raw:
        raw.execute("INSERT INTO schema_version VALUES (99, 'future')")
    with pytest.raises(ReservoirError, match="schema version 99 is newer"):
        Reservoir(reservoir.root)


# --------------------------------------------------------------------------- sharing
def test_two_handles_on_one_root_see_each_others_writes(tmp_path: Path, model: Path) -> None:
    with Reservoir(tmp_path / "r") as one, Reservoir(tmp_path / "r") as two:
        _register(one, "ppo", model)
        assert two.get("ppo").version == 1
        two.add_evaluation("ppo", on="twin", scenario="week", kpis=KPIS)
        one.transition("ppo", "pre_evaluated", actor="gate", reason="suite passed")
        assert two.get("ppo").state == "pre_evaluated"
        assert _register(two, "ppo", model) == "ppo@2"
        assert [r.ref for r in one.list()] == ["ppo@1", "ppo@2"]
        assert [h.to_state for h in two.history("ppo@1")] == ["candidate", "pre_evaluated"]


def test_two_processes_registering_at_once_get_distinct_versions(
    tmp_path: Path, model: Path
) -> None:
    root = tmp_path / "r"
    Reservoir(root).close()
    script = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        from control.reservoir import Reservoir
        with Reservoir(Path({str(root)!r})) as res:
            for i in range(5):
                res.register("ppo", "drl", Path({str(model)!r}),
                             hyperparameters={{"by": sys.argv[1]}}, training_scenarios=[])
        """
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", script, tag], stderr=subprocess.PIPE, text=True)
        for tag in ("a", "b")
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
    with Reservoir(root) as res:
        records = res.list()
        assert [r.version for r in records] == list(range(1, 11))
        assert sorted(r.hyperparameters["by"] for r in records) == ["a"] * 5 + ["b"] * 5
        assert all(res.verify(r.ref) for r in records)
        assert len(res.history()) == 10


# --------------------------------------------------------------------------- evaluations
def test_evaluations_are_kept_with_a_copy_of_their_report(
    reservoir: Reservoir, model: Path, tmp_path: Path
) -> None:
    ref = _register(reservoir, "ppo", model)
    report = tmp_path / "report"
    report.mkdir()
    (report / "kpis.json").write_text(json.dumps(KPIS), encoding="utf-8")
    first = reservoir.add_evaluation(
        ref, on="twin", scenario="week", kpis={**KPIS, "fan_kwh": 3}, report_dir=report
    )
    second = reservoir.add_evaluation(ref, on="plant", scenario="week", kpis={"pue": 1.3})
    (report / "kpis.json").write_text("changed", encoding="utf-8")

    assert reservoir.evaluations(ref) == [first, second]
    assert first.kpis == {**KPIS, "fan_kwh": 3.0} and first.on == "twin"
    assert first.report_dir is not None
    assert json.loads((first.report_dir / "kpis.json").read_text(encoding="utf-8")) == KPIS
    assert second.report_dir is None
    assert datetime.fromisoformat(second.created_at).utcoffset() == UTC.utcoffset(None)


def test_compare_gives_one_row_per_policy_target_and_scenario(
    reservoir: Reservoir, model: Path
) -> None:
    a = _register(reservoir, "ppo", model)
    b = reservoir.register("fixed", "rule", None, hyperparameters={}, training_scenarios=[]).ref
    reservoir.add_evaluation(a, on="twin", scenario="hot", kpis={**KPIS, "pue": 1.40})
    reservoir.add_evaluation(a, on="twin", scenario="hot", kpis={**KPIS, "pue": 1.20})  # rerun
    reservoir.add_evaluation(a, on="plant", scenario="hot", kpis={"pue": 1.22, "zeta": 1.0})
    reservoir.add_evaluation(b, on="twin", scenario="hot", kpis={"max_inlet_c": 27.5, "pue": 1.3})

    table = reservoir.compare(["ppo", b])
    assert list(table.columns) == [
        "policy",
        "kind",
        "on",
        "scenario",
        "cooling_kwh",
        "pue",
        "violation_kh_above_27",
        "max_inlet_c",
        "zeta",
    ]
    rows = [tuple(r) for r in table[["policy", "kind", "on", "scenario"]].itertuples(index=False)]
    assert rows == [
        ("ppo@1", "drl", "twin", "hot"),
        ("ppo@1", "drl", "plant", "hot"),
        ("fixed@1", "rule", "twin", "hot"),
    ]
    assert table["pue"].tolist() == [1.20, 1.22, 1.3]  # the latest run of a repeat counts
    assert table["cooling_kwh"].isna().tolist() == [False, True, True]
    assert table["zeta"].isna().tolist() == [True, False, True]
    plant = reservoir.compare([a, b], on="plant")
    assert plant["policy"].tolist() == ["ppo@1"] and list(plant.columns)[4:] == ["pue", "zeta"]


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("name", ["", "a b", "../up", ".hidden", "-v", "a@1", "a/b", "x" * 101])
def test_bad_names_are_refused(reservoir: Reservoir, name: str) -> None:
    with pytest.raises(ReservoirError, match="bad policy name"):
        reservoir.register(name, "rule", None, hyperparameters={}, training_scenarios=[])
    assert reservoir.list() == []


def test_bad_input_gets_a_message_naming_the_problem(
    reservoir: Reservoir, model: Path, tmp_path: Path
) -> None:
    def register(**overrides: object) -> None:
        args: dict[str, object] = {
            "name": "p",
            "kind": "drl",
            "artifact": model,
            "hyperparameters": {},
            "training_scenarios": [],
        }
        args.update(overrides)
        reservoir.register(**args)  # type: ignore[arg-type]

    with pytest.raises(ReservoirError, match="unknown policy kind 'genetic'"):
        register(kind="genetic")
    with pytest.raises(ReservoirError, match="unknown policy 'ghost'"):
        register(parent="ghost@1")
    with pytest.raises(ReservoirError, match="needs an artifact"):
        register(artifact=None)
    with pytest.raises(ReservoirError, match="no such file or folder"):
        register(artifact=tmp_path / "missing.zip")
    with pytest.raises(ReservoirError, match="not JSON"):
        register(hyperparameters={"lr": math.nan})
    with pytest.raises(ReservoirError, match="list of names"):
        register(training_scenarios="mild")
    assert reservoir.list() == [] and not (reservoir.root / "artifacts" / "p").exists()

    ref = _register(reservoir, "p", model)
    with pytest.raises(ReservoirError, match="unknown policy 'nobody'"):
        reservoir.get("nobody")
    with pytest.raises(ReservoirError, match="has no version 7 \\(latest: 1\\)"):
        reservoir.verify("p@7")
    with pytest.raises(ReservoirError, match="bad policy reference"):
        reservoir.get("p@latest")
    with pytest.raises(ReservoirError, match="unknown policy state 'deployed'"):
        reservoir.transition(ref, "deployed", actor="a", reason="r")
    with pytest.raises(ReservoirError, match="reason must be a non-empty text"):
        reservoir.transition(ref, "retired", actor="a", reason="  ")
    with pytest.raises(ReservoirError, match="actor must be a non-empty text"):
        reservoir.transition(ref, "retired", actor="", reason="r")
    with pytest.raises(ReservoirError, match="unknown evaluation target 'sky'"):
        reservoir.add_evaluation(ref, on="sky", scenario="s", kpis=KPIS)
    with pytest.raises(ReservoirError, match="not finite"):
        reservoir.add_evaluation(ref, on="twin", scenario="s", kpis={"pue": math.inf})
    with pytest.raises(ReservoirError, match="unknown policy state 'on'"):
        reservoir.list(state="on")
    assert reservoir.get(ref).state == "candidate" and reservoir.evaluations(ref) == []
    assert len(reservoir.history(ref)) == 1


def test_read_only_open_refuses_a_root_without_a_reservoir(tmp_path: Path) -> None:
    with pytest.raises(ReservoirError, match="no reservoir at"):
        Reservoir(tmp_path / "nowhere", create=False)
    assert not (tmp_path / "nowhere").exists()
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / DB_FILE).write_bytes(b"not a database at all" * 100)
    with pytest.raises(ReservoirError, match="junk"):
        Reservoir(tmp_path / "junk")

"""The reservoir's files on real SQLite roots: artifacts copied in and hashed (files,
folders, a rule's hyper-parameters), leftovers of a crash moved aside, a failed registration
leaving nothing behind, and evaluation reports kept as copies."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from control.reservoir import (
    Reservoir,
    canonical_json,
    hash_artifact,
)
from tests.control.reservoir.helpers import KPIS, PATHS, raw_connection, register_policy, walk


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
    walk(reservoir, record.ref, PATHS["live"])
    assert reservoir.get(record.ref).state == "live"


def test_leftover_artifact_from_a_crash_is_moved_aside(reservoir: Reservoir, model: Path) -> None:
    leftover = reservoir.root / "artifacts" / "ppo" / "1"
    leftover.mkdir(parents=True)
    (leftover / "half.zip").write_bytes(b"half")
    register_policy(reservoir, "ppo", model)
    assert reservoir.verify("ppo@1")
    orphans = list((reservoir.root / ".orphans").iterdir())
    assert len(orphans) == 1 and (orphans[0] / "half.zip").read_bytes() == b"half"


def test_failed_registration_leaves_nothing_behind(reservoir: Reservoir, model: Path) -> None:
    with raw_connection(reservoir) as raw:  # a real failure inside the transaction, after the copy
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
    assert register_policy(reservoir, "ppo", model) == "ppo@1"


def test_tampered_rule_hyperparameters_fail_verify(reservoir: Reservoir) -> None:
    ref = reservoir.register(
        "fixed", "rule", None, hyperparameters={"supply_air_c": 18.0}, training_scenarios=[]
    ).ref
    with raw_connection(
        reservoir
    ) as raw:  # the trigger guards the row; drop it as an attacker would
        raw.execute("DROP TRIGGER policies_fixed")
        raw.execute("UPDATE policies SET hyperparameters = '{\"supply_air_c\":30.0}'")
    assert not reservoir.verify(ref)


def test_evaluations_are_kept_with_a_copy_of_their_report(
    reservoir: Reservoir, model: Path, tmp_path: Path
) -> None:
    ref = register_policy(reservoir, "ppo", model)
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

"""The schema on real SQLite files: migration of a version-1 reservoir, triggers that keep
history and rows unchanged, WAL mode and the schema version."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from control.reservoir import (
    SCHEMA_VERSION,
    Reservoir,
    ReservoirError,
)
from tests.control.reservoir.helpers import (
    KPIS,
    PATHS,
    legacy_schema,
    raw_connection,
    register_policy,
    walk,
)


def test_a_version_1_reservoir_migrates_to_standby_keeping_everything(
    tmp_path: Path, model: Path
) -> None:
    root = tmp_path / "old"
    with legacy_schema(1), Reservoir(root) as old:
        a, b = register_policy(old, "a", model), register_policy(old, "b", model)
        walk(old, a, PATHS["live"])
        old.add_evaluation(b, on="plant", scenario="week", kpis=KPIS)
        history, evaluations = old.history(), old.evaluations(b)
        assert old.schema_version == 1
    with Reservoir(root) as new:
        assert new.schema_version == SCHEMA_VERSION
        assert new.history() == history and new.evaluations(b) == evaluations
        assert new.get(a).state == "live" and new.verify(a)
        assert new.verify_history().records == len(history)
        walk(new, b, PATHS["live"])
        assert new.get(a).state == "standby"
        with raw_connection(new) as raw:  # the rebuilt table kept its triggers
            with pytest.raises(sqlite3.IntegrityError, match="cannot be deleted"):
                raw.execute("DELETE FROM policies")
            assert raw.execute("PRAGMA foreign_key_check").fetchall() == []


def test_history_and_rows_cannot_be_changed_or_deleted(reservoir: Reservoir, model: Path) -> None:
    ref = register_policy(reservoir, "ppo", model)
    walk(reservoir, ref, ["pre_evaluated"])
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
    with raw_connection(reservoir) as raw:
        for statement, message in refused.items():
            with pytest.raises(sqlite3.IntegrityError, match=message):
                raw.execute(statement)
    assert reservoir.history() == before
    assert reservoir.get(ref).state == "pre_evaluated"
    assert len(reservoir.evaluations(ref)) == 1


def test_database_is_in_wal_mode_with_a_schema_version(reservoir: Reservoir) -> None:
    assert reservoir.schema_version == SCHEMA_VERSION
    with raw_connection(reservoir) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        (version,) = raw.execute("SELECT MAX(version) FROM schema_version").fetchone()
    assert version == SCHEMA_VERSION
    reservoir.close()
    with Reservoir(reservoir.root) as again:  # reopening migrates nothing
        assert again.schema_version == SCHEMA_VERSION
    with raw_connection(reservoir) as raw:
        raw.execute("INSERT INTO schema_version VALUES (99, 'future')")
    with pytest.raises(ReservoirError, match="schema version 99 is newer"):
        Reservoir(reservoir.root)


def test_the_access_log_is_append_only(reservoir: Reservoir) -> None:
    reservoir.record_access(
        user="x" * 500,
        action="approve",
        policy="ppo",
        method="password",
        granted=False,
        detail="wrong",
    )
    reservoir.record_access(
        user="ann", action="approve", policy=None, method="token", granted=True, detail="ok"
    )
    first, second = reservoir.access_log()
    assert (len(first.user), first.outcome, second.outcome) == (200, "refused", "granted")
    with raw_connection(reservoir) as raw:
        for statement in ("UPDATE access_log SET outcome = 'granted'", "DELETE FROM access_log"):
            with pytest.raises(sqlite3.IntegrityError, match="append-only"):
                raw.execute(statement)
    assert reservoir.access_log() == [first, second]

"""Shared by the reservoir's tests: KPIs to record, a legal way to each state, and helpers
that register a policy, walk it along a path of states and open a raw second connection."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import pytest

from control.reservoir import DB_FILE, Reservoir

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


def register_policy(res: Reservoir, name: str, artifact: Path, kind: str = "drl") -> str:
    return res.register(
        name, kind, artifact, hyperparameters={"lr": 3e-4}, training_scenarios=["mild"]
    ).ref


def walk(res: Reservoir, ref: str, states: list[str]) -> None:
    for state in states:
        if state == "<replaced>":
            successor = res.register(
                f"after-{ref.replace('@', '-')}",
                "rule",
                None,
                hyperparameters={"k": 1},
                training_scenarios=[],
            ).ref
            walk(res, successor, PATHS["live"])
            res.transition(successor, "rolled_back", actor="tester", reason="to leave standby")
            continue
        if state == "pre_evaluated":
            res.add_evaluation(ref, on="twin", scenario="suite", kpis=KPIS)
        res.transition(ref, state, actor="tester", reason=f"to {state}")


@contextmanager
def raw_connection(res: Reservoir) -> Iterator[sqlite3.Connection]:
    """A plain second connection to the database, in autocommit mode, closed after."""
    with closing(sqlite3.connect(res.root / DB_FILE, isolation_level=None)) as raw:
        yield raw


@contextmanager
def legacy_schema(version: int) -> Iterator[None]:
    """Inside, the reservoir writes schema ``version`` as the TwinLoop of that schema did:
    its migrations only, and history rows without the hash chain (it came with schema 3)."""
    from control.reservoir import chain, schema

    def plain_insert(db: sqlite3.Connection, **values: Any) -> int:
        return schema.insert(db, "history", **values)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(schema, "MIGRATIONS", schema.MIGRATIONS[:version])
        mp.setattr(schema, "SCHEMA_VERSION", version)
        if version < 3:
            mp.setattr(chain, "append", plain_insert)
            mp.setattr(chain, "verify_chain", lambda *args, **kwargs: None)
        yield

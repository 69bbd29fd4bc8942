"""The history's hash chain: each history row carries the hash of the row before it, and its
own hash covers its contents and the fixed fields of its policy (name, version, kind, the
artifact's path and registered SHA-256, hyper-parameters, lineage…).

Editing a history row, deleting or inserting one in the middle, or changing a policy's
registered hash (even with the triggers dropped) breaks the chain at the first row it
touches; :func:`verify_chain` names that row. It also checks that every policy has a history
that starts with its registration and that its state is its last row's.

What a chain kept in the same file cannot do: an attacker who can write the file and run
this code can recompute every hash after an edit (or append rows that were never decided).
Such a rewrite changes the hash of every row from the edited one on, so a head recorded
elsewhere before the edit (:class:`ChainHead`, printed to the operator by every decision of
``twinloop gate`` and checked by ``twinloop reservoir verify --anchor``) exposes it; a row
appended after the last anchor is not detected. See docs/architecture.md.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from control.reservoir.records import ReservoirError, canonical_json

GENESIS = "0" * 64
"""The ``prev_hash`` of the first history row."""

_DOMAIN = b"twinloop reservoir history v1\n"
_ROW_FIELDS = (
    "id",
    "policy_id",
    "event",
    "from_state",
    "to_state",
    "actor",
    "reason",
    "at",
    "artifact_hash",
)
_POLICY_FIELDS = (
    "id",
    "name",
    "version",
    "kind",
    "artifact",
    "artifact_hash",
    "hyperparameters",
    "training_scenarios",
    "parent_id",
    "description",
    "created_at",
)
_HISTORY_WITH_POLICY = """
    SELECT h.*, p.id AS p_id, p.name AS p_name, p.version AS p_version, p.kind AS p_kind,
           p.artifact AS p_artifact, p.artifact_hash AS p_artifact_hash,
           p.hyperparameters AS p_hyperparameters,
           p.training_scenarios AS p_training_scenarios, p.parent_id AS p_parent_id,
           p.description AS p_description, p.created_at AS p_created_at
    FROM history h LEFT JOIN policies p ON p.id = h.policy_id
"""


class TamperedHistoryError(ReservoirError):
    """The reservoir's history does not hold together: a row, or a policy's fixed fields,
    changed after they were written. The message names the first broken record."""


@dataclass(frozen=True)
class ChainHead:
    """The last history row: its id, its hash, and how many rows the chain holds."""

    id: int
    row_hash: str
    records: int

    @property
    def anchor(self) -> str:
        """``ID:HASH``, the form ``twinloop reservoir verify --anchor`` takes."""
        return f"{self.id}:{self.row_hash}"

    def __str__(self) -> str:
        return f"{self.records} records, head #{self.id} sha256 {self.row_hash}"


def row_hash(prev_hash: str, row: Mapping[str, Any], policy: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of a history row chained to ``prev_hash``: the row's fields and its
    policy's fixed fields, as canonical JSON."""
    payload = {
        "prev": prev_hash,
        "row": {field: row[field] for field in _ROW_FIELDS},
        "policy": {field: policy[field] for field in _POLICY_FIELDS},
    }
    return hashlib.sha256(_DOMAIN + canonical_json(payload).encode("utf-8")).hexdigest()


def last_hash(db: sqlite3.Connection) -> str:
    """The hash a new history row chains to: the last row's, or :data:`GENESIS`."""
    row = db.execute("SELECT row_hash FROM history ORDER BY id DESC LIMIT 1").fetchone()
    return GENESIS if row is None or row[0] is None else str(row[0])


def append(db: sqlite3.Connection, **values: Any) -> int:
    """Insert one history row (every column but ``id``, ``prev_hash`` and ``row_hash``)
    chained to the last; its id. Call inside a write transaction."""
    policy = db.execute("SELECT * FROM policies WHERE id = ?", (values["policy_id"],)).fetchone()
    if policy is None:
        raise ReservoirError(f"history: no policy with id {values['policy_id']}")
    next_id = int(db.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM history").fetchone()[0])
    row = {field: values.get(field) for field in _ROW_FIELDS} | {"id": next_id}
    prev = last_hash(db)
    columns = {**values, "id": next_id, "prev_hash": prev, "row_hash": row_hash(prev, row, policy)}
    names, marks = ", ".join(columns), ", ".join("?" * len(columns))
    db.execute(f"INSERT INTO history ({names}) VALUES ({marks})", tuple(columns.values()))
    return next_id


def chain_existing(db: sqlite3.Connection) -> None:
    """Chain the rows of a history written before the chain existed, in id order (the
    migration to schema 3; the trigger that refuses updates is dropped around it)."""
    prev = GENESIS
    for row in db.execute(_HISTORY_WITH_POLICY + " ORDER BY h.id").fetchall():
        digest = row_hash(prev, row, _policy_of(row))
        db.execute(
            "UPDATE history SET prev_hash = ?, row_hash = ? WHERE id = ?", (prev, digest, row["id"])
        )
        prev = digest


def _policy_of(row: sqlite3.Row) -> dict[str, Any]:
    if row["p_id"] is None:
        raise TamperedHistoryError(
            f"history record #{row['id']}: its policy (id {row['policy_id']}) does not exist"
        )
    return {field: row[f"p_{field}"] for field in _POLICY_FIELDS}


def _describe(row: sqlite3.Row) -> str:
    policy = f"{row['p_name']}@{row['p_version']}" if row["p_id"] is not None else "?"
    change = f"{row['from_state'] or '—'} → {row['to_state']}"
    return f"history record #{row['id']} ({policy} {change} by {row['actor']} at {row['at']})"


def verify_chain(db: sqlite3.Connection, anchors: Mapping[int, str] | None = None) -> ChainHead:
    """Check the whole history; its head. :class:`TamperedHistoryError` naming the first
    broken record otherwise: a row whose link or hash does not match, a row whose hash is not
    the one an anchor (``{id: hash}`` recorded earlier) says, a policy without a history
    that starts with its registration, or one whose state is not its last row's."""
    wanted = dict(anchors or {})
    prev, head, count = GENESIS, 0, 0
    last_state: dict[int, str] = {}
    for row in db.execute(_HISTORY_WITH_POLICY + " ORDER BY h.id"):
        policy = _policy_of(row)
        if row["prev_hash"] != prev:
            raise TamperedHistoryError(
                f"{_describe(row)}: its link to the record before does not match (a record was "
                "removed, inserted or rewritten before it)"
            )
        if row["row_hash"] != row_hash(prev, row, policy):
            raise TamperedHistoryError(
                f"{_describe(row)}: its contents or its policy's registered fields changed "
                "after it was written"
            )
        expected = wanted.pop(int(row["id"]), None)
        if expected is not None and expected != row["row_hash"]:
            raise TamperedHistoryError(
                f"{_describe(row)}: its hash is not the anchored {expected[:12]}…: the history "
                "was rewritten from there or before"
            )
        _check_first(row, last_state)
        last_state[int(row["policy_id"])] = str(row["to_state"])
        prev, head, count = str(row["row_hash"]), int(row["id"]), count + 1
    if wanted:
        missing = min(wanted)
        raise TamperedHistoryError(
            f"history record #{missing}: anchored but absent (the history holds {count} records)"
        )
    _check_states(db, last_state)
    return ChainHead(head, prev, count)


def _check_first(row: sqlite3.Row, last_state: Mapping[int, str]) -> None:
    first = int(row["policy_id"]) not in last_state
    if first and (row["event"] != "registered" or row["artifact_hash"] != row["p_artifact_hash"]):
        raise TamperedHistoryError(
            f"{_describe(row)}: the policy's first record is not its registration with its "
            "registered hash"
        )
    if not first and row["event"] == "registered":
        raise TamperedHistoryError(f"{_describe(row)}: a second registration")


def _check_states(db: sqlite3.Connection, last_state: Mapping[int, str]) -> None:
    for policy in db.execute("SELECT id, name, version, state FROM policies ORDER BY id"):
        ref = f"{policy['name']}@{policy['version']}"
        recorded = last_state.get(int(policy["id"]))
        if recorded is None:
            raise TamperedHistoryError(f"policy {ref}: no history record (not registered)")
        if recorded != policy["state"]:
            raise TamperedHistoryError(
                f"policy {ref}: state {policy['state']} is not its history's {recorded} "
                "(changed past the history)"
            )

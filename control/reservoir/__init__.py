"""The policy reservoir: a registry of every policy TwinLoop has trained or written.

Each policy version is kept with its kind, artifact (copied in, SHA-256 hashed), training
scenarios, hyper-parameters, lineage (``parent``), evaluations (KPIs on the twin or the
plant, with a copy of their report folder) and its approval state, and every change of state
is written to an append-only history: who, when, why, and the artifact's hash at that moment;
each history row carries the hash of the one before, and nothing is approved, shadowed or
put live on a history whose chain is broken.

The embedded store is one SQLite file in WAL mode beside a folder of artifacts::

    <root>/reservoir.sqlite
    <root>/artifacts/<name>/<version>/<artifact file or folder>
    <root>/reports/<name>/<version>/<evaluation id>/<report files>

Nothing stored is ever lost: files are copied to a staging folder and moved into place with
:func:`os.replace` inside the database transaction that records them, and triggers refuse to
delete any row, to change history or evaluations, and to change a policy other than its
state, which moves only together with a history row.

A policy is pre-evaluated only once it has an evaluation in the twin. At most one policy is
live: promoting one puts the previous on standby in the same transaction (the policy a
rollback returns to; at most one stands by, an older one is retired). An oracle (the MPC that
sees the plant's truth) is an upper bound and never deployable, and no policy whose artifact
changed since registration may be approved, shadowed or put live.

The modules:

- :mod:`~control.reservoir.records`: kinds, states, the records read back (policies,
  evaluations, history rows, the access log's rows: who tried to act at the gate, granted or
  refused), input checks, :class:`ReservoirError`;
- :mod:`~control.reservoir.lifecycle`: the legal moves (:data:`TRANSITIONS`) and how a
  move, and the stand-down when a policy goes live, are written;
- :mod:`~control.reservoir.chain`: the history's hash chain, its check and its head;
- :mod:`~control.reservoir.schema`: the SQLite tables, triggers and migrations;
- :mod:`~control.reservoir.artifacts`: the store's folders, hashing, staged copies;
- :mod:`~control.reservoir.store`: :class:`Reservoir`, which uses them all.

This package's names below are its interface; callers import them from here.
"""

from control.reservoir.artifacts import DB_FILE, hash_artifact
from control.reservoir.chain import ChainHead, TamperedHistoryError
from control.reservoir.lifecycle import DEPLOYED_STATES, TRANSITIONS
from control.reservoir.records import (
    EVALUATED_ON,
    KEY_KPIS,
    KINDS,
    STATES,
    AccessRecord,
    EvaluatedOn,
    EvaluationRecord,
    HistoryRecord,
    PolicyKind,
    PolicyRecord,
    PolicyState,
    ReservoirError,
    canonical_json,
    ordered_kpis,
)
from control.reservoir.schema import SCHEMA_VERSION
from control.reservoir.store import Reservoir, default_root

__all__ = [
    "DB_FILE",
    "DEPLOYED_STATES",
    "EVALUATED_ON",
    "KEY_KPIS",
    "KINDS",
    "SCHEMA_VERSION",
    "STATES",
    "TRANSITIONS",
    "AccessRecord",
    "ChainHead",
    "EvaluatedOn",
    "EvaluationRecord",
    "HistoryRecord",
    "PolicyKind",
    "PolicyRecord",
    "PolicyState",
    "Reservoir",
    "ReservoirError",
    "TamperedHistoryError",
    "canonical_json",
    "default_root",
    "hash_artifact",
    "ordered_kpis",
]

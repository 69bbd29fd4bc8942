"""The policy reservoir: a registry of every policy TwinLoop has trained or written.

Each policy version is kept with its kind, artifact (copied in, SHA-256 hashed), training
scenarios, hyper-parameters, lineage (``parent``), evaluations (KPIs on the twin or the
plant, with a copy of their report folder) and its approval state, and every change of state
is written to an append-only history: who, when, why, and the artifact's hash at that moment.

The embedded store is one SQLite file in WAL mode beside a folder of artifacts::

    <root>/reservoir.sqlite
    <root>/artifacts/<name>/<version>/<artifact file or folder>
    <root>/reports/<name>/<version>/<evaluation id>/<report files>

Nothing stored is ever lost: files are copied to a staging folder and moved into place with
:func:`os.replace` inside the database transaction that records them, and triggers refuse to
delete any row, to change history or evaluations, and to change a policy other than its
state, which moves only together with a history row. The lifecycle of a policy::

    candidate → pre_evaluated → approved → shadow → live → retired | rolled_back
                pre_evaluated, approved → rejected;  shadow → rolled_back
                live → standby → live (again) | retired
                any state not yet final → retired

A policy is pre-evaluated only once it has an evaluation in the twin. At most one policy is
live: promoting one puts the previous on standby in the same transaction (the policy a
rollback returns to; at most one stands by, an older one is retired). An oracle (the MPC that
sees the plant's truth) is an upper bound and never deployable, and no policy whose artifact
changed since registration may be approved, shadowed or put live.
"""

from __future__ import annotations

import builtins
import getpass
import hashlib
import json
import logging
import math
import numbers
import os
import re
import shutil
import sqlite3
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, cast, get_args

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger(__name__)

PolicyKind = Literal["rule", "drl", "mpc", "oracle"]
PolicyState = Literal[
    "candidate",
    "pre_evaluated",
    "approved",
    "shadow",
    "live",
    "standby",
    "retired",
    "rejected",
    "rolled_back",
]
EvaluatedOn = Literal["twin", "plant"]

KINDS: tuple[PolicyKind, ...] = get_args(PolicyKind)
STATES: tuple[PolicyState, ...] = get_args(PolicyState)
EVALUATED_ON: tuple[EvaluatedOn, ...] = get_args(EvaluatedOn)

TRANSITIONS: Mapping[PolicyState, frozenset[PolicyState]] = {
    "candidate": frozenset({"pre_evaluated", "retired"}),
    "pre_evaluated": frozenset({"approved", "rejected", "retired"}),
    "approved": frozenset({"shadow", "rejected", "retired"}),
    "shadow": frozenset({"live", "rolled_back", "retired"}),
    "live": frozenset({"standby", "retired", "rolled_back"}),
    "standby": frozenset({"live", "retired"}),
    "retired": frozenset(),
    "rejected": frozenset(),
    "rolled_back": frozenset(),
}
"""The legal moves from each state; the last three are final. ``standby`` is the policy a
newer one replaced live: approved and intact, it takes over again if its successor is rolled
back (at most one policy is on standby; an older one is retired)."""

DEPLOYED_STATES: frozenset[PolicyState] = frozenset({"approved", "shadow", "live"})
"""States that need an intact artifact and a deployable kind (not ``oracle``)."""

KEY_KPIS: tuple[str, ...] = ("cooling_kwh", "pue", "violation_kh_above_27", "max_inlet_c")
"""KPIs that lead a comparison table, in this order; any others follow alphabetically."""

DB_FILE = "reservoir.sqlite"
ARTIFACTS_DIR = "artifacts"
REPORTS_DIR = "reports"
_STAGING_DIR = ".staging"
_ORPHANS_DIR = ".orphans"
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}")
_REF = re.compile(r"(?P<name>[^@]+)@(?P<version>[0-9]+)")
_CHUNK = 1 << 20


class ReservoirError(ValueError):
    """A request the reservoir refuses; the message names the policy and the problem."""


def default_root() -> Path:
    """``$TWINLOOP_HOME/reservoir`` when ``TWINLOOP_HOME`` is set, else ``runs/reservoir``."""
    home = os.environ.get("TWINLOOP_HOME")
    return (Path(home) if home else Path("runs")) / "reservoir"


# --------------------------------------------------------------------------- records
@dataclass(frozen=True)
class PolicyRecord:
    """One registered version of a policy, as stored."""

    name: str
    version: int
    kind: PolicyKind
    state: PolicyState
    artifact_hash: str
    """SHA-256 (hex) of the artifact, or of the canonical JSON hyper-parameters if none."""
    artifact: str | None
    """Path of the stored artifact relative to the reservoir's root; None for none."""
    hyperparameters: Mapping[str, Any]
    training_scenarios: tuple[str, ...]
    parent: str | None
    """``name@version`` of the policy this one was derived from."""
    description: str
    created_at: str

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ReservoirError(f"policy {self.ref}: unknown kind {self.kind!r}")
        if self.state not in STATES:
            raise ReservoirError(f"policy {self.ref}: unknown state {self.state!r}")

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"


@dataclass(frozen=True)
class EvaluationRecord:
    """KPIs of one policy version on one scenario, in the twin or on the plant."""

    id: int
    policy: str
    on: EvaluatedOn
    scenario: str
    kpis: Mapping[str, float]
    report_dir: Path | None
    """The reservoir's copy of the report folder, if one was given."""
    created_at: str

    def __post_init__(self) -> None:
        if self.on not in EVALUATED_ON:
            raise ReservoirError(f"evaluation {self.id}: 'on' is {self.on!r}, not twin or plant")


@dataclass(frozen=True)
class HistoryRecord:
    """One row of the append-only history: a registration or a change of state."""

    id: int
    policy: str
    event: Literal["registered", "transition"]
    from_state: PolicyState | None
    to_state: PolicyState
    actor: str
    reason: str
    at: str
    """UTC, ISO 8601."""
    artifact_hash: str | None
    """The artifact's hash recomputed at that moment; None if the artifact was missing."""


# --------------------------------------------------------------------------- schema
_POLICIES_TABLE = """CREATE TABLE {name} (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL,
            version INTEGER NOT NULL CHECK (version >= 1),
            kind TEXT NOT NULL CHECK (kind IN ('rule', 'drl', 'mpc', 'oracle')),
            state TEXT NOT NULL CHECK (state IN ({states})),
            artifact TEXT,
            artifact_hash TEXT NOT NULL,
            hyperparameters TEXT NOT NULL,
            training_scenarios TEXT NOT NULL,
            parent_id INTEGER REFERENCES policies (id),
            description TEXT NOT NULL,
            created_at TEXT NOT NULL,
            UNIQUE (name, version)
        )"""
_STATES_SQL = ", ".join(f"'{state}'" for state in STATES)
_POLICIES_EXTRAS: tuple[str, ...] = (
    "CREATE UNIQUE INDEX policies_one_live ON policies (state) WHERE state = 'live'",
    """CREATE TRIGGER policies_no_delete BEFORE DELETE ON policies
        BEGIN SELECT RAISE(ABORT, 'policies cannot be deleted; retire them'); END""",
    """CREATE TRIGGER policies_fixed BEFORE UPDATE OF id, name, version, kind, artifact,
            artifact_hash, hyperparameters, training_scenarios, parent_id, description,
            created_at ON policies
        BEGIN SELECT RAISE(ABORT, 'a registered policy cannot be changed, only its state'); END""",
    """CREATE TRIGGER policies_state_follows_history BEFORE UPDATE OF state ON policies
        WHEN NEW.state IS NOT (SELECT to_state FROM history WHERE policy_id = NEW.id
                               ORDER BY id DESC LIMIT 1)
        BEGIN SELECT RAISE(ABORT, 'a policy changes state only with a history row'); END""",
)
_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 1: policies, evaluations, append-only history.
    (
        _POLICIES_TABLE.format(
            name="policies",
            states="'candidate', 'pre_evaluated', 'approved', 'shadow', 'live', 'retired', "
            "'rejected', 'rolled_back'",
        ),
        """CREATE TABLE evaluations (
            id INTEGER PRIMARY KEY,
            policy_id INTEGER NOT NULL REFERENCES policies (id),
            evaluated_on TEXT NOT NULL CHECK (evaluated_on IN ('twin', 'plant')),
            scenario TEXT NOT NULL,
            kpis TEXT NOT NULL,
            report_dir TEXT,
            created_at TEXT NOT NULL
        )""",
        "CREATE INDEX evaluations_policy ON evaluations (policy_id)",
        """CREATE TABLE history (
            id INTEGER PRIMARY KEY,
            policy_id INTEGER NOT NULL REFERENCES policies (id),
            event TEXT NOT NULL CHECK (event IN ('registered', 'transition')),
            from_state TEXT,
            to_state TEXT NOT NULL,
            actor TEXT NOT NULL CHECK (actor <> ''),
            reason TEXT NOT NULL CHECK (reason <> ''),
            at TEXT NOT NULL,
            artifact_hash TEXT
        )""",
        "CREATE INDEX history_policy ON history (policy_id)",
        """CREATE TRIGGER history_no_update BEFORE UPDATE ON history
        BEGIN SELECT RAISE(ABORT, 'history is append-only: rows cannot be changed'); END""",
        """CREATE TRIGGER history_no_delete BEFORE DELETE ON history
        BEGIN SELECT RAISE(ABORT, 'history is append-only: rows cannot be deleted'); END""",
        """CREATE TRIGGER evaluations_no_update BEFORE UPDATE ON evaluations
        BEGIN SELECT RAISE(ABORT, 'evaluations cannot be changed'); END""",
        """CREATE TRIGGER evaluations_no_delete BEFORE DELETE ON evaluations
        BEGIN SELECT RAISE(ABORT, 'evaluations cannot be deleted'); END""",
        *_POLICIES_EXTRAS,
    ),
    # 2: the ``standby`` state (the previous live policy, for rollback). SQLite cannot alter
    # a CHECK constraint: the table is rebuilt (foreign keys are off while it runs) and its
    # index and triggers made again.
    (
        _POLICIES_TABLE.format(name="policies_v2", states=_STATES_SQL),
        "INSERT INTO policies_v2 SELECT * FROM policies",
        "DROP TABLE policies",
        "ALTER TABLE policies_v2 RENAME TO policies",
        *_POLICIES_EXTRAS,
        "CREATE UNIQUE INDEX policies_one_standby ON policies (state) WHERE state = 'standby'",
    ),
)
SCHEMA_VERSION = len(_MIGRATIONS)
"""The schema this code writes; migration ``i`` of :data:`_MIGRATIONS` leads to ``i + 1``."""

_POLICY_SELECT = """
    SELECT p.*, q.name AS parent_name, q.version AS parent_version
    FROM policies p LEFT JOIN policies q ON q.id = p.parent_id
"""


# --------------------------------------------------------------------------- helpers
def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def canonical_json(value: Any) -> str:
    """Sorted keys, no spaces, strict JSON (no NaN): the form that is stored and hashed."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


def hash_artifact(path: Path) -> str:
    """SHA-256 (hex) of a file's bytes; of a folder, over its files in sorted relative-path
    order, each as path, NUL, 8-byte size and bytes (empty folders do not count)."""
    digest = hashlib.sha256()
    if path.is_file():
        with path.open("rb") as fh:
            return hashlib.file_digest(fh, "sha256").hexdigest()
    files: builtins.list[tuple[str, Path]] = []
    for dirpath, _, filenames in os.walk(path):
        for filename in filenames:
            full = Path(dirpath) / filename
            files.append((full.relative_to(path).as_posix(), full))
    for rel, full in sorted(files):
        digest.update(rel.encode("utf-8") + b"\0")
        digest.update(full.stat().st_size.to_bytes(8, "big"))
        with full.open("rb") as fh:
            while chunk := fh.read(_CHUNK):
                digest.update(chunk)
    return digest.hexdigest()


def ordered_kpis(names: Iterable[str]) -> builtins.list[str]:
    """KPI names for a table: :data:`KEY_KPIS` first, in their order, then the rest sorted."""
    present = set(names)
    return [k for k in KEY_KPIS if k in present] + sorted(present - set(KEY_KPIS))


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ReservoirError(
            f"bad policy name {name!r}: use 1-100 letters, digits, '-', '_' or '.', "
            "starting with a letter, digit or '_'"
        )


def _check_kind(kind: str) -> PolicyKind:
    if kind not in KINDS:
        raise ReservoirError(f"unknown policy kind {kind!r} (known: {', '.join(KINDS)})")
    return kind


def _check_state(state: str) -> PolicyState:
    if state not in STATES:
        raise ReservoirError(f"unknown policy state {state!r} (known: {', '.join(STATES)})")
    return state


def _check_on(on: str) -> EvaluatedOn:
    if on not in EVALUATED_ON:
        raise ReservoirError(f"unknown evaluation target {on!r} (known: twin, plant)")
    return on


def _check_text(what: str, value: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ReservoirError(f"{what} must be a non-empty text")
    return value.strip()


def _parse_ref(ref: str) -> tuple[str, int | None]:
    """``name`` → (name, None); ``name@3`` → (name, 3)."""
    match = _REF.fullmatch(ref) if isinstance(ref, str) else None
    name, version = (match["name"], int(match["version"])) if match else (ref, None)
    if isinstance(ref, str) and "@" in ref and match is None:
        raise ReservoirError(f"bad policy reference {ref!r}: use NAME or NAME@VERSION")
    _check_name(name)
    if version is not None and not 1 <= version < 2**63:
        raise ReservoirError(
            f"bad policy reference {ref[:80]!r}: versions start at 1 and are below 2^63"
        )
    return name, version


def _check_move(policy: str, current: PolicyState, target: PolicyState) -> None:
    if target not in TRANSITIONS[current]:
        allowed = ", ".join(sorted(TRANSITIONS[current])) or "none, it is final"
        raise ReservoirError(
            f"policy {policy}: illegal transition {current} → {target} (from {current}: {allowed})"
        )


def _kpis(kpis: Mapping[str, float]) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in kpis.items():
        if not isinstance(key, str) or not key:
            raise ReservoirError(f"KPI names must be non-empty texts, got {key!r}")
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ReservoirError(f"KPI {key!r}: {value!r} is not a number")
        if not math.isfinite(value):
            raise ReservoirError(f"KPI {key!r}: {value!r} is not finite; leave it out")
        out[key] = float(value)
    if not out:
        raise ReservoirError("an evaluation needs at least one KPI")
    return out


# --------------------------------------------------------------------------- reservoir
class Reservoir:
    """The registry in ``root``: one SQLite connection, safe beside other processes.

    ``create=False`` refuses a root that holds no reservoir yet (for read-only commands).
    Use as a context manager, or call :meth:`close`.
    """

    def __init__(self, root: Path, *, create: bool = True, timeout_s: float = 30.0) -> None:
        self.root = Path(root)
        self.db_path = self.root / DB_FILE
        if not create and not self.db_path.is_file():
            raise ReservoirError(f"no reservoir at {self.root} (no {DB_FILE})")
        try:
            for folder in (ARTIFACTS_DIR, REPORTS_DIR, _STAGING_DIR):
                (self.root / folder).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ReservoirError(f"reservoir {self.root}: {exc.strerror or exc}") from None
        self._conn = sqlite3.connect(self.db_path, timeout=timeout_s, isolation_level=None)
        try:
            self._conn.row_factory = sqlite3.Row
            self._conn.execute(f"PRAGMA busy_timeout = {int(timeout_s * 1000)}")
            mode = self._conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                logger.warning("reservoir %s: journal mode %s, WAL not available", self.root, mode)
            self._conn.execute("PRAGMA synchronous = FULL")
            self._conn.execute("PRAGMA foreign_keys = ON")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            raise ReservoirError(f"reservoir {self.db_path}: {exc}") from None
        except BaseException:
            self._conn.close()
            raise

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Reservoir:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Reservoir({str(self.root)!r})"

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taking the write lock at once (``BEGIN IMMEDIATE``) so that
        what it reads cannot change before it commits."""
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield self._conn
            self._conn.execute("COMMIT")
        except BaseException:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise

    def _migrate(self) -> None:
        if self._stored_version() == SCHEMA_VERSION:
            return
        # A migration may rebuild a referenced table; foreign keys are checked at the end
        # instead (the pragma has no effect inside a transaction).
        self._conn.execute("PRAGMA foreign_keys = OFF")
        try:
            self._migrate_locked()
        finally:
            self._conn.execute("PRAGMA foreign_keys = ON")

    def _migrate_locked(self) -> None:
        with self._write() as db:  # again under the lock: another process may be migrating
            db.execute(
                "CREATE TABLE IF NOT EXISTS schema_version "
                "(version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)"
            )
            current = db.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()
            version = int(current[0])
            if version > SCHEMA_VERSION:
                raise ReservoirError(
                    f"reservoir {self.db_path}: schema version {version} is newer than this "
                    f"TwinLoop's {SCHEMA_VERSION}; upgrade TwinLoop"
                )
            for target in range(version + 1, SCHEMA_VERSION + 1):
                for statement in _MIGRATIONS[target - 1]:
                    db.execute(statement)
                db.execute("INSERT INTO schema_version VALUES (?, ?)", (target, _now()))
                logger.info("reservoir %s: schema migrated to version %d", self.root, target)
            if broken := db.execute("PRAGMA foreign_key_check").fetchall():
                raise ReservoirError(
                    f"reservoir {self.db_path}: migration left {len(broken)} broken references; "
                    "nothing was changed"
                )

    def _stored_version(self) -> int:
        if not self._conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
        ).fetchone():
            return 0
        row = self._conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
        return int(row[0] or 0)

    @property
    def schema_version(self) -> int:
        """The schema version of the open database."""
        return self._stored_version()

    # ----------------------------------------------------------------------- reading
    def _record(self, row: sqlite3.Row) -> PolicyRecord:
        parent = None
        if row["parent_name"] is not None:
            parent = f"{row['parent_name']}@{row['parent_version']}"
        return PolicyRecord(
            name=row["name"],
            version=int(row["version"]),
            kind=row["kind"],
            state=row["state"],
            artifact_hash=row["artifact_hash"],
            artifact=row["artifact"],
            hyperparameters=json.loads(row["hyperparameters"]),
            training_scenarios=tuple(json.loads(row["training_scenarios"])),
            parent=parent,
            description=row["description"],
            created_at=row["created_at"],
        )

    def _row(self, ref: str) -> sqlite3.Row:
        name, version = _parse_ref(ref)
        if version is None:
            query = _POLICY_SELECT + " WHERE p.name = ? ORDER BY p.version DESC LIMIT 1"
            row = self._conn.execute(query, (name,)).fetchone()
        else:
            query = _POLICY_SELECT + " WHERE p.name = ? AND p.version = ?"
            row = self._conn.execute(query, (name, version)).fetchone()
        if row is None:
            latest = self._conn.execute(
                "SELECT MAX(version) FROM policies WHERE name = ?", (name,)
            ).fetchone()[0]
            if latest is None:
                raise ReservoirError(f"unknown policy {name!r}")
            raise ReservoirError(f"policy {name!r} has no version {version} (latest: {latest})")
        return cast(sqlite3.Row, row)

    def get(self, ref: str) -> PolicyRecord:
        """The policy ``name@version``, or the latest version of ``name``."""
        return self._record(self._row(ref))

    def list(
        self, state: str | None = None, kind: str | None = None
    ) -> builtins.list[PolicyRecord]:
        """Every policy version, by name and version, optionally of one state and kind."""
        clauses: builtins.list[str] = []
        params: builtins.list[str] = []
        if state is not None:
            clauses.append("p.state = ?")
            params.append(_check_state(state))
        if kind is not None:
            clauses.append("p.kind = ?")
            params.append(_check_kind(kind))
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._conn.execute(_POLICY_SELECT + where + " ORDER BY p.name, p.version", params)
        return [self._record(row) for row in rows]

    def artifact_path(self, ref: str) -> Path | None:
        """Where the stored artifact is (whether or not it is still there); None if none."""
        artifact = self._row(ref)["artifact"]
        return None if artifact is None else self.root / artifact

    def current_hash(self, ref: str) -> str | None:
        """The hash :meth:`register` would compute now; None if the artifact is missing."""
        return self._current_hash(self._row(ref))

    def _current_hash(self, row: sqlite3.Row) -> str | None:
        if row["artifact"] is None:
            hyperparameters = json.loads(row["hyperparameters"])
            return hashlib.sha256(canonical_json(hyperparameters).encode("utf-8")).hexdigest()
        path = self.root / row["artifact"]
        if not (path.is_file() or path.is_dir()):
            return None
        return hash_artifact(path)

    def verify(self, ref: str) -> bool:
        """Whether the stored artifact still has the hash it was registered with."""
        row = self._row(ref)
        return bool(self._current_hash(row) == row["artifact_hash"])

    def evaluations(self, ref: str) -> builtins.list[EvaluationRecord]:
        """The evaluations of one policy version, oldest first."""
        row = self._row(ref)
        ref = f"{row['name']}@{row['version']}"
        rows = self._conn.execute(
            "SELECT * FROM evaluations WHERE policy_id = ? ORDER BY id", (row["id"],)
        )
        return [
            EvaluationRecord(
                id=int(r["id"]),
                policy=ref,
                on=r["evaluated_on"],
                scenario=r["scenario"],
                kpis=json.loads(r["kpis"]),
                report_dir=None if r["report_dir"] is None else self.root / r["report_dir"],
                created_at=r["created_at"],
            )
            for r in rows
        ]

    def history(self, ref: str | None = None) -> builtins.list[HistoryRecord]:
        """The history of one policy version, or of the whole reservoir, oldest first."""
        query = "SELECT h.*, p.name, p.version FROM history h JOIN policies p ON p.id = h.policy_id"
        params: tuple[int, ...] = ()
        if ref is not None:
            query += " WHERE h.policy_id = ?"
            params = (int(self._row(ref)["id"]),)
        return [
            HistoryRecord(
                id=int(r["id"]),
                policy=f"{r['name']}@{r['version']}",
                event=r["event"],
                from_state=r["from_state"],
                to_state=r["to_state"],
                actor=r["actor"],
                reason=r["reason"],
                at=r["at"],
                artifact_hash=r["artifact_hash"],
            )
            for r in self._conn.execute(query + " ORDER BY h.id", params)
        ]

    def compare(self, refs: Sequence[str], *, on: str | None = None) -> pd.DataFrame:
        """One row per (policy, on, scenario) with the union of KPI columns (NaN where a
        policy lacks one); the latest evaluation counts where one was repeated."""
        import pandas as pd

        target = None if on is None else _check_on(on)
        rows: dict[tuple[str, str, str], dict[str, Any]] = {}
        for ref in refs:
            record = self.get(ref)
            for ev in self.evaluations(record.ref):
                if target is None or ev.on == target:
                    rows[(record.ref, ev.on, ev.scenario)] = {
                        "policy": record.ref,
                        "kind": record.kind,
                        "on": ev.on,
                        "scenario": ev.scenario,
                        **ev.kpis,
                    }
        names = {k for row in rows.values() for k in row} - {"policy", "kind", "on", "scenario"}
        columns = ["policy", "kind", "on", "scenario", *ordered_kpis(names)]
        return pd.DataFrame(list(rows.values()), columns=columns)

    # ----------------------------------------------------------------------- writing
    def register(
        self,
        name: str,
        kind: str,
        artifact: Path | None,
        *,
        hyperparameters: Mapping[str, Any],
        training_scenarios: Sequence[str],
        parent: str | None = None,
        description: str = "",
        actor: str | None = None,
    ) -> PolicyRecord:
        """Store a new version of ``name`` (the previous highest + 1) as a candidate.

        The artifact, a file or a folder, is copied in and hashed; only rule policies may
        have none (their canonical JSON hyper-parameters are hashed instead). ``parent``
        (``name@version`` or ``name`` for its latest) records lineage. ``actor`` defaults to
        the user running the process.
        """
        _check_name(name)
        kind = _check_kind(kind)
        if not isinstance(hyperparameters, Mapping):
            raise ReservoirError(f"policy {name!r}: hyperparameters must be a mapping")
        if any(not isinstance(key, str) for key in hyperparameters):
            raise ReservoirError(f"policy {name!r}: hyperparameter names must be texts")
        try:
            params_json = canonical_json(dict(hyperparameters))
        except (TypeError, ValueError) as exc:
            raise ReservoirError(f"policy {name!r}: hyperparameters are not JSON: {exc}") from None
        if isinstance(training_scenarios, str):
            raise ReservoirError(f"policy {name!r}: training_scenarios must be a list of names")
        scenarios = [_check_text("a training scenario name", s) for s in training_scenarios]
        if not isinstance(description, str):
            raise ReservoirError(f"policy {name!r}: description must be a text")
        who = _check_text("actor", actor) if actor is not None else _user()
        parent_id = None if parent is None else int(self._row(parent)["id"])
        if artifact is None and kind != "rule":
            raise ReservoirError(
                f"policy {name!r}: a {kind} policy needs an artifact (only rule policies "
                "may be registered without one)"
            )
        if artifact is not None:
            artifact = Path(artifact)
            if not (artifact.is_file() or artifact.is_dir()):
                raise ReservoirError(
                    f"policy {name!r}: artifact {artifact}: no such file or folder"
                )
            if artifact.is_dir() and not any(p.is_file() for p in artifact.rglob("*")):
                raise ReservoirError(f"policy {name!r}: artifact {artifact}: folder holds no files")

        with self._staged(artifact) as stage:
            digest = (
                hashlib.sha256(params_json.encode("utf-8")).hexdigest()
                if stage is None
                else hash_artifact(stage.copy)
            )
            with self._write() as db:
                row = db.execute(
                    "SELECT COALESCE(MAX(version), 0) FROM policies WHERE name = ?", (name,)
                ).fetchone()
                version = int(row[0]) + 1
                now = _now()
                policy_id = _insert(
                    db,
                    "policies",
                    name=name,
                    version=version,
                    kind=kind,
                    state="candidate",
                    artifact=None
                    if stage is None
                    else stage.place(Path(ARTIFACTS_DIR, name, str(version))),
                    artifact_hash=digest,
                    hyperparameters=params_json,
                    training_scenarios=json.dumps(scenarios),
                    parent_id=parent_id,
                    description=description,
                    created_at=now,
                )
                _insert(
                    db,
                    "history",
                    policy_id=policy_id,
                    event="registered",
                    to_state="candidate",
                    actor=who,
                    reason=description.strip() or "registered",
                    at=now,
                    artifact_hash=digest,
                )
        record = self.get(f"{name}@{version}")
        logger.info("registered %s (%s, sha256 %s)", record.ref, kind, digest[:12])
        return record

    def add_evaluation(
        self,
        ref: str,
        *,
        on: str,
        scenario: str,
        kpis: Mapping[str, float],
        report_dir: Path | None = None,
    ) -> EvaluationRecord:
        """Record the KPIs of a policy version on a scenario; a report folder is copied in."""
        row = self._row(ref)
        target = _check_on(on)
        scenario = _check_text("scenario", scenario)
        values = _kpis(kpis)
        if report_dir is not None:
            report_dir = Path(report_dir)
            if not report_dir.is_dir():
                raise ReservoirError(f"evaluation of {ref}: report folder {report_dir}: not found")
        with self._staged(report_dir) as stage, self._write() as db:
            # The write lock is held: the next id is ours, and names the report's folder.
            eval_id = int(
                db.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM evaluations").fetchone()[0]
            )
            folder = Path(REPORTS_DIR, row["name"], str(row["version"]), str(eval_id))
            _insert(
                db,
                "evaluations",
                id=eval_id,
                policy_id=row["id"],
                evaluated_on=target,
                scenario=scenario,
                kpis=canonical_json(values),
                report_dir=None if stage is None else stage.place(folder),
                created_at=_now(),
            )
        policy = f"{row['name']}@{row['version']}"
        logger.info("evaluation %d of %s on the %s, scenario %s", eval_id, policy, target, scenario)
        return next(e for e in self.evaluations(policy) if e.id == eval_id)

    def transition(self, ref: str, to_state: str, *, actor: str, reason: str) -> PolicyRecord:
        """Move a policy version to ``to_state``, writing who, why and the artifact's hash
        now to the history in the same transaction.

        Refused: a move :data:`TRANSITIONS` does not allow; an empty actor or reason; an
        oracle towards approved, shadow or live, or any policy whose artifact changed since
        registration; pre_evaluated without an evaluation in the twin. Going live puts the
        policy that was live on ``standby`` (and retires an older standby), in the same
        transaction, each with its own history row.
        """
        target = _check_state(to_state)
        who = _check_text("actor", actor)
        why = _check_text("reason", reason)
        row = self._row(ref)
        policy = f"{row['name']}@{row['version']}"
        if target in DEPLOYED_STATES and row["kind"] == "oracle":
            raise ReservoirError(
                f"policy {policy} is an oracle (an upper bound that sees the plant's truth) and "
                f"is never deployable: refusing {target}"
            )
        _check_move(policy, row["state"], target)
        digest = self._current_hash(row)  # before the write lock: hashing may take a while
        if target in DEPLOYED_STATES and digest != row["artifact_hash"]:
            now_text = "missing" if digest is None else f"sha256 {digest[:12]}"
            raise ReservoirError(
                f"policy {policy}: artifact changed since registration (registered sha256 "
                f"{row['artifact_hash'][:12]}, now {now_text}): refusing {target}"
            )
        if target == "pre_evaluated" and not any(e.on == "twin" for e in self.evaluations(policy)):
            raise ReservoirError(
                f"policy {policy} has no evaluation in the twin; add one before pre_evaluated"
            )
        moved: tuple[str, ...] = ()
        with self._write() as db:
            # Read the state again under the lock: another process may have moved it.
            current = cast(
                PolicyState,
                db.execute("SELECT state FROM policies WHERE id = ?", (row["id"],)).fetchone()[0],
            )
            _check_move(policy, current, target)
            now = _now()
            if current == "standby" and target == "live":
                live = db.execute("SELECT name, version FROM policies WHERE state = 'live'")
                if (other := live.fetchone()) is not None:
                    raise ReservoirError(
                        f"policy {other['name']}@{other['version']} is live: roll it back "
                        f"first (then {policy}, standing by, resumes)"
                    )
            if target == "live":
                moved = self._stand_down(db, int(row["id"]), policy, who, why, now)
            self._move(
                db, int(row["id"]), current, target, actor=who, reason=why, at=now, digest=digest
            )
        for line in moved:
            logger.info("%s", line)
        logger.info("%s: %s → %s by %s: %s", policy, current, target, who, why)
        return self.get(policy)

    def _stand_down(
        self, db: sqlite3.Connection, going_live: int, policy: str, who: str, why: str, now: str
    ) -> tuple[str, ...]:
        """Before ``policy`` goes live: the live one steps down to ``standby`` (or is retired
        if its artifact is no longer intact) and an older standby is retired. Returns what
        moved, for the log."""
        moved: list[str] = []
        standby = db.execute("SELECT * FROM policies WHERE state = 'standby'").fetchone()
        if standby is not None and int(standby["id"]) != going_live:
            ref = f"{standby['name']}@{standby['version']}"
            self._move(
                db,
                int(standby["id"]),
                "standby",
                "retired",
                actor=who,
                reason=f"superseded: {policy} going live makes a newer standby ({why})",
                at=now,
                digest=self._current_hash(standby),
            )
            moved.append(f"{ref}: standby → retired (superseded)")
        previous = db.execute("SELECT * FROM policies WHERE state = 'live'").fetchone()
        if previous is not None:
            ref = f"{previous['name']}@{previous['version']}"
            digest = self._current_hash(previous)
            intact = digest == previous["artifact_hash"]
            to_state: PolicyState = "standby" if intact else "retired"
            reason = f"replaced by {policy} going live: {why}"
            if not intact:
                reason += " (its artifact changed: it cannot stand by)"
            self._move(
                db,
                int(previous["id"]),
                "live",
                to_state,
                actor=who,
                reason=reason,
                at=now,
                digest=digest,
            )
            moved.append(f"{ref}: live → {to_state} (replaced by {policy})")
        return tuple(moved)

    @staticmethod
    def _move(
        db: sqlite3.Connection,
        policy_id: int,
        from_state: PolicyState,
        to_state: PolicyState,
        *,
        actor: str,
        reason: str,
        at: str,
        digest: str | None,
    ) -> None:
        _insert(
            db,
            "history",
            policy_id=policy_id,
            event="transition",
            from_state=from_state,
            to_state=to_state,
            actor=actor,
            reason=reason,
            at=at,
            artifact_hash=digest,
        )
        db.execute("UPDATE policies SET state = ? WHERE id = ?", (to_state, policy_id))

    @contextmanager
    def _staged(self, source: Path | None) -> Iterator[_Stage | None]:
        """A copy of ``source`` in a fresh staging folder, to be moved into the store by
        :meth:`_Stage.place` inside a transaction; moved out again if the block fails."""
        if source is None:
            yield None
            return
        if source.is_dir() and self.root.resolve().is_relative_to(source.resolve()):
            raise ReservoirError(f"{source}: holds the reservoir {self.root} itself; not copied")
        folder = Path(tempfile.mkdtemp(dir=self.root / _STAGING_DIR))
        stage = _Stage(self.root, folder, folder / source.name)
        try:
            if source.is_dir():
                shutil.copytree(source, stage.copy)
            else:
                shutil.copy2(source, stage.copy)
            yield stage
        except BaseException:
            if stage.placed is not None:
                shutil.rmtree(stage.placed, ignore_errors=True)
            raise
        finally:
            shutil.rmtree(folder, ignore_errors=True)


@dataclass
class _Stage:
    """A copied file or folder (``copy``) alone in a staging ``folder`` under ``root``."""

    root: Path
    folder: Path
    copy: Path
    placed: Path | None = None

    def place(self, dest: Path) -> str:
        """Move the staging folder to ``root/dest`` in one step; the copy's path relative to
        ``root``. A leftover at ``dest`` (a crash between a move and its commit) is moved
        aside to ``.orphans``, not deleted."""
        target = self.root / dest
        if target.exists():
            stamp = f"{datetime.now(UTC):%Y%m%dT%H%M%S%f}"
            aside = self.root / _ORPHANS_DIR / f"{'-'.join(dest.parts)}-{stamp}"
            aside.parent.mkdir(parents=True, exist_ok=True)
            os.replace(target, aside)
            logger.warning("reservoir: moved leftover %s aside to %s", target, aside)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self.folder, target)
        self.placed = target
        return (dest / self.copy.name).as_posix()


def _user() -> str:
    try:
        return getpass.getuser() or "unknown"
    except (KeyError, OSError):
        return "unknown"


def _insert(db: sqlite3.Connection, table: str, **values: object) -> int:
    """``INSERT`` one row of named values; its id."""
    columns, marks = ", ".join(values), ", ".join("?" * len(values))
    cursor = db.execute(f"INSERT INTO {table} ({columns}) VALUES ({marks})", tuple(values.values()))
    return int(cast(int, cursor.lastrowid))

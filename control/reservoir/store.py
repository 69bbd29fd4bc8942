"""The reservoir's store: :class:`Reservoir`, one SQLite file in WAL mode beside a folder of
artifacts, safe beside other processes; reading policies, their evaluations and history, and
writing registrations, evaluations and moves of state, each in one transaction."""

from __future__ import annotations

import builtins
import getpass
import json
import logging
import os
import sqlite3
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, cast

from control.reservoir import chain
from control.reservoir.artifacts import (
    ARTIFACTS_DIR,
    DB_FILE,
    REPORTS_DIR,
    STAGING_DIR,
    current_hash,
    hash_artifact,
    hash_hyperparameters,
    staged,
)
from control.reservoir.chain import ChainHead, TamperedHistoryError
from control.reservoir.lifecycle import DEPLOYED_STATES, check_move, move, stand_down
from control.reservoir.records import (
    AccessRecord,
    EvaluationRecord,
    HistoryRecord,
    PolicyRecord,
    PolicyState,
    ReservoirError,
    canonical_json,
    check_kind,
    check_kpis,
    check_name,
    check_on,
    check_state,
    check_text,
    ordered_kpis,
    parse_ref,
)
from control.reservoir.schema import (
    POLICY_SELECT,
    insert,
    migrate,
    stored_version,
    utc_now,
    write_transaction,
)

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger(__name__)


def default_root() -> Path:
    """``$TWINLOOP_HOME/reservoir`` when ``TWINLOOP_HOME`` is set, else ``runs/reservoir``."""
    home = os.environ.get("TWINLOOP_HOME")
    return (Path(home) if home else Path("runs")) / "reservoir"


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
            for folder in (ARTIFACTS_DIR, REPORTS_DIR, STAGING_DIR):
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
            migrate(self._conn, self.db_path)
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

    @property
    def schema_version(self) -> int:
        """The schema version of the open database."""
        return stored_version(self._conn)

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
        name, version = parse_ref(ref)
        if version is None:
            query = POLICY_SELECT + " WHERE p.name = ? ORDER BY p.version DESC LIMIT 1"
            row = self._conn.execute(query, (name,)).fetchone()
        else:
            query = POLICY_SELECT + " WHERE p.name = ? AND p.version = ?"
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
            params.append(check_state(state))
        if kind is not None:
            clauses.append("p.kind = ?")
            params.append(check_kind(kind))
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._conn.execute(POLICY_SELECT + where + " ORDER BY p.name, p.version", params)
        return [self._record(row) for row in rows]

    def artifact_path(self, ref: str) -> Path | None:
        """Where the stored artifact is (whether or not it is still there); None if none."""
        artifact = self._row(ref)["artifact"]
        return None if artifact is None else self.root / artifact

    def current_hash(self, ref: str) -> str | None:
        """The hash :meth:`register` would compute now; None if the artifact is missing."""
        return self._current_hash(self._row(ref))

    def _current_hash(self, row: sqlite3.Row) -> str | None:
        return current_hash(self.root, row["artifact"], row["hyperparameters"])

    def verify(self, ref: str) -> bool:
        """Whether the stored artifact still has the hash it was registered with, and the
        history that records that hash holds together (:meth:`verify_history`)."""
        row = self._row(ref)
        if self._current_hash(row) != row["artifact_hash"]:
            return False
        try:
            self.verify_history()
        except TamperedHistoryError as exc:
            logger.error("reservoir %s: %s", self.root, exc)
            return False
        return True

    def verify_history(self, anchors: Mapping[int, str] | None = None) -> ChainHead:
        """Check the history's hash chain (and each anchor ``{record id: hash}`` noted
        earlier); its head. :class:`TamperedHistoryError` names the first broken record."""
        self._conn.execute("BEGIN")  # one read transaction: one consistent snapshot
        try:
            return chain.verify_chain(self._conn, anchors)
        finally:
            self._conn.execute("COMMIT")

    def head(self) -> ChainHead:
        """The history's head as stored, unchecked (:meth:`verify_history` checks it)."""
        row = self._conn.execute(
            "SELECT id, row_hash, (SELECT COUNT(*) FROM history) AS n FROM history "
            "ORDER BY id DESC LIMIT 1"
        ).fetchone()
        if row is None:
            return ChainHead(0, chain.GENESIS, 0)
        return ChainHead(int(row["id"]), str(row["row_hash"]), int(row["n"]))

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
                row_hash=r["row_hash"] if "row_hash" in r.keys() else None,  # noqa: SIM118
            )
            for r in self._conn.execute(query + " ORDER BY h.id", params)
        ]

    def access_log(self) -> builtins.list[AccessRecord]:
        """Every attempt to act at the gate from the command line, oldest first."""
        return [
            AccessRecord(
                id=int(r["id"]),
                at=r["at"],
                user=r["user"],
                action=r["action"],
                policy=r["policy"],
                method=r["method"],
                outcome=r["outcome"],
                detail=r["detail"],
            )
            for r in self._conn.execute("SELECT * FROM access_log ORDER BY id")
        ]

    def compare(self, refs: Sequence[str], *, on: str | None = None) -> pd.DataFrame:
        """One row per (policy, on, scenario) with the union of KPI columns (NaN where a
        policy lacks one); the latest evaluation counts where one was repeated."""
        import pandas as pd

        target = None if on is None else check_on(on)
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
        check_name(name)
        kind = check_kind(kind)
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
        scenarios = [check_text("a training scenario name", s) for s in training_scenarios]
        if not isinstance(description, str):
            raise ReservoirError(f"policy {name!r}: description must be a text")
        who = check_text("actor", actor) if actor is not None else _user()
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

        with staged(self.root, artifact) as stage:
            digest = (
                hash_hyperparameters(params_json) if stage is None else hash_artifact(stage.copy)
            )
            with write_transaction(self._conn) as db:
                row = db.execute(
                    "SELECT COALESCE(MAX(version), 0) FROM policies WHERE name = ?", (name,)
                ).fetchone()
                version = int(row[0]) + 1
                now = utc_now()
                policy_id = insert(
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
                chain.append(
                    db,
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
        target = check_on(on)
        scenario = check_text("scenario", scenario)
        values = check_kpis(kpis)
        if report_dir is not None:
            report_dir = Path(report_dir)
            if not report_dir.is_dir():
                raise ReservoirError(f"evaluation of {ref}: report folder {report_dir}: not found")
        with staged(self.root, report_dir) as stage, write_transaction(self._conn) as db:
            # The write lock is held: the next id is ours, and names the report's folder.
            eval_id = int(
                db.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM evaluations").fetchone()[0]
            )
            folder = Path(REPORTS_DIR, row["name"], str(row["version"]), str(eval_id))
            insert(
                db,
                "evaluations",
                id=eval_id,
                policy_id=row["id"],
                evaluated_on=target,
                scenario=scenario,
                kpis=canonical_json(values),
                report_dir=None if stage is None else stage.place(folder),
                created_at=utc_now(),
            )
        policy = f"{row['name']}@{row['version']}"
        logger.info("evaluation %d of %s on the %s, scenario %s", eval_id, policy, target, scenario)
        return next(e for e in self.evaluations(policy) if e.id == eval_id)

    def record_access(
        self,
        *,
        user: str,
        action: str,
        policy: str | None,
        method: str,
        granted: bool,
        detail: str,
    ) -> None:
        """Append one attempt to act to the access log (texts cut to 200 characters: a
        refused name is whatever was typed)."""
        with write_transaction(self._conn) as db:
            insert(
                db,
                "access_log",
                at=utc_now(),
                user=str(user)[:200],
                action=str(action)[:200],
                policy=None if policy is None else str(policy)[:200],
                method=str(method)[:200],
                outcome="granted" if granted else "refused",
                detail=str(detail)[:200],
            )

    def transition(self, ref: str, to_state: str, *, actor: str, reason: str) -> PolicyRecord:
        """Move a policy version to ``to_state``, writing who, why and the artifact's hash
        now to the history in the same transaction.

        Refused: a move :data:`TRANSITIONS` does not allow; an empty actor or reason; an
        oracle towards approved, shadow or live, or any policy whose artifact changed since
        registration; pre_evaluated without an evaluation in the twin; approved, shadow or
        live while the history's hash chain is broken (:class:`TamperedHistoryError`,
        naming the first broken record; a move out of service is never refused for it).
        Going live puts the policy that was live on ``standby`` (and retires an older
        standby), in the same transaction, each with its own history row.
        """
        target = check_state(to_state)
        who = check_text("actor", actor)
        why = check_text("reason", reason)
        row = self._row(ref)
        policy = f"{row['name']}@{row['version']}"
        if target in DEPLOYED_STATES and row["kind"] == "oracle":
            raise ReservoirError(
                f"policy {policy} is an oracle (an upper bound that sees the plant's truth) and "
                f"is never deployable: refusing {target}"
            )
        check_move(policy, row["state"], target)
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
        with write_transaction(self._conn) as db:
            # Read the state again under the lock: another process may have moved it.
            current = cast(
                PolicyState,
                db.execute("SELECT state FROM policies WHERE id = ?", (row["id"],)).fetchone()[0],
            )
            check_move(policy, current, target)
            if target in DEPLOYED_STATES:  # nothing is deployed on a history that was edited
                chain.verify_chain(db)
            now = utc_now()
            if current == "standby" and target == "live":
                live = db.execute("SELECT name, version FROM policies WHERE state = 'live'")
                if (other := live.fetchone()) is not None:
                    raise ReservoirError(
                        f"policy {other['name']}@{other['version']} is live: roll it back "
                        f"first (then {policy}, standing by, resumes)"
                    )
            if target == "live":
                moved = stand_down(
                    db,
                    int(row["id"]),
                    policy,
                    actor=who,
                    reason=why,
                    at=now,
                    hash_of=self._current_hash,
                )
            move(db, int(row["id"]), current, target, actor=who, reason=why, at=now, digest=digest)
        for line in moved:
            logger.info("%s", line)
        logger.info("%s: %s → %s by %s: %s", policy, current, target, who, why)
        return self.get(policy)

    def record_decision(self, ref: str, *, state: str, actor: str, reason: str) -> HistoryRecord:
        """A decision that does not move the policy (e.g. the first of two approvals it
        needs to go live): a history row, chained like every other, from ``state`` to
        ``state`` with who, why and the artifact's hash now. Refused unless the policy is
        in ``state`` (read again under the write lock) and, for a deployed state, its
        artifact is intact and the history's chain holds."""
        expected = check_state(state)
        who = check_text("actor", actor)
        why = check_text("reason", reason)
        row = self._row(ref)
        policy = f"{row['name']}@{row['version']}"
        digest = self._current_hash(row)
        if expected in DEPLOYED_STATES and digest != row["artifact_hash"]:
            now_text = "missing" if digest is None else f"sha256 {digest[:12]}"
            raise ReservoirError(
                f"policy {policy}: artifact changed since registration (registered sha256 "
                f"{row['artifact_hash'][:12]}, now {now_text}): refusing the decision"
            )
        with write_transaction(self._conn) as db:
            current = db.execute("SELECT state FROM policies WHERE id = ?", (row["id"],))
            now_state = current.fetchone()[0]
            if now_state != expected:
                raise ReservoirError(
                    f"policy {policy} is {now_state}, no longer {expected}: decision not recorded"
                )
            if expected in DEPLOYED_STATES:
                chain.verify_chain(db)
            row_id = chain.append(
                db,
                policy_id=int(row["id"]),
                event="transition",
                from_state=expected,
                to_state=expected,
                actor=who,
                reason=why,
                at=utc_now(),
                artifact_hash=digest,
            )
        logger.info("%s: decision by %s, stays %s: %s", policy, who, expected, why)
        return next(h for h in self.history(policy) if h.id == row_id)


def _user() -> str:
    try:
        return getpass.getuser() or "unknown"
    except (KeyError, OSError):
        return "unknown"

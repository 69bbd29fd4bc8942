"""The reservoir's SQLite schema, its migrations, and the few statements every write uses.

Four tables: ``policies`` (one row per version; only its state may change, and only
together with a history row), ``evaluations`` and ``history`` (append-only, and a hash chain:
see :mod:`~control.reservoir.chain`) and ``access_log`` (append-only: who tried to act at the
gate, and whether they were let in). Triggers refuse every delete, any change of history or
evaluations, any change of a policy but its state, and a history row that does not chain to
the last; partial unique indexes allow at most one live and one standby policy. The schema
is versioned in ``schema_version``: :func:`migrate` applies the migrations a database lacks,
in one write transaction.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

from control.reservoir.chain import GENESIS, chain_existing
from control.reservoir.records import STATES, ReservoirError

logger = logging.getLogger(__name__)

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
_HISTORY_NO_UPDATE = """CREATE TRIGGER history_no_update BEFORE UPDATE ON history
        BEGIN SELECT RAISE(ABORT, 'history is append-only: rows cannot be changed'); END"""

Step = str | Callable[[sqlite3.Connection], None]
"""One step of a migration: an SQL statement, or a function of the open transaction."""

MIGRATIONS: tuple[tuple[Step, ...], ...] = (
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
        _HISTORY_NO_UPDATE,
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
    # 3: the history's hash chain (control.reservoir.chain). Every existing row is chained
    # in id order, none is dropped; the update trigger is lifted only while that runs. A new
    # row must name the last row's hash as its predecessor.
    (
        "ALTER TABLE history ADD COLUMN prev_hash TEXT",
        "ALTER TABLE history ADD COLUMN row_hash TEXT",
        "DROP TRIGGER history_no_update",
        chain_existing,
        _HISTORY_NO_UPDATE,
        f"""CREATE TRIGGER history_chained BEFORE INSERT ON history
        WHEN NEW.row_hash IS NULL OR NEW.prev_hash IS NOT COALESCE(
            (SELECT row_hash FROM history ORDER BY id DESC LIMIT 1), '{GENESIS}')
        BEGIN SELECT RAISE(ABORT, 'history is a hash chain: a new row must chain to the last');
        END""",
    ),
    # 4: the access log: every attempt to act at the gate from the command line, granted or
    # refused (a wrong password, a viewer), append-only.
    (
        """CREATE TABLE access_log (
            id INTEGER PRIMARY KEY,
            at TEXT NOT NULL,
            user TEXT NOT NULL,
            action TEXT NOT NULL,
            policy TEXT,
            method TEXT NOT NULL,
            outcome TEXT NOT NULL CHECK (outcome IN ('granted', 'refused')),
            detail TEXT NOT NULL
        )""",
        """CREATE TRIGGER access_log_no_update BEFORE UPDATE ON access_log
        BEGIN SELECT RAISE(ABORT, 'the access log is append-only'); END""",
        """CREATE TRIGGER access_log_no_delete BEFORE DELETE ON access_log
        BEGIN SELECT RAISE(ABORT, 'the access log is append-only'); END""",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)
"""The schema this code writes; migration ``i`` of :data:`MIGRATIONS` leads to ``i + 1``."""

POLICY_SELECT = """
    SELECT p.*, q.name AS parent_name, q.version AS parent_version
    FROM policies p LEFT JOIN policies q ON q.id = p.parent_id
"""
"""Every column of a policy plus its parent's name and version; add a WHERE clause."""


def utc_now() -> str:
    """The current UTC time, ISO 8601 to the second: every timestamp the reservoir stores."""
    return datetime.now(UTC).isoformat(timespec="seconds")


@contextmanager
def write_transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction, taking the write lock at once (``BEGIN IMMEDIATE``) so that
    what it reads cannot change before it commits."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def insert(db: sqlite3.Connection, table: str, **values: object) -> int:
    """``INSERT`` one row of named values; its id."""
    columns, marks = ", ".join(values), ", ".join("?" * len(values))
    cursor = db.execute(f"INSERT INTO {table} ({columns}) VALUES ({marks})", tuple(values.values()))
    return int(cast(int, cursor.lastrowid))


def stored_version(conn: sqlite3.Connection) -> int:
    """The schema version of the database (0 for a new one)."""
    if not conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
    ).fetchone():
        return 0
    row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
    return int(row[0] or 0)


def migrate(conn: sqlite3.Connection, db_path: Path) -> None:
    """Bring the database to :data:`SCHEMA_VERSION`; refuse one newer than this code."""
    if stored_version(conn) == SCHEMA_VERSION:
        return
    # A migration may rebuild a referenced table; foreign keys are checked at the end
    # instead (the pragma has no effect inside a transaction).
    conn.execute("PRAGMA foreign_keys = OFF")
    try:
        _migrate_locked(conn, db_path)
    finally:
        conn.execute("PRAGMA foreign_keys = ON")


def _migrate_locked(conn: sqlite3.Connection, db_path: Path) -> None:
    with write_transaction(conn) as db:  # again under the lock: another process may migrate
        db.execute(
            "CREATE TABLE IF NOT EXISTS schema_version "
            "(version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)"
        )
        current = db.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()
        version = int(current[0])
        if version > SCHEMA_VERSION:
            raise ReservoirError(
                f"reservoir {db_path}: schema version {version} is newer than this "
                f"TwinLoop's {SCHEMA_VERSION}; upgrade TwinLoop"
            )
        for target in range(version + 1, SCHEMA_VERSION + 1):
            for step in MIGRATIONS[target - 1]:
                if callable(step):
                    step(db)
                else:
                    db.execute(step)
            db.execute("INSERT INTO schema_version VALUES (?, ?)", (target, utc_now()))
            logger.info("reservoir %s: schema migrated to version %d", db_path.parent, target)
        if broken := db.execute("PRAGMA foreign_key_check").fetchall():
            raise ReservoirError(
                f"reservoir {db_path}: migration left {len(broken)} broken references; "
                "nothing was changed"
            )

"""The historian: time series of sensor readings, events and the setpoint audit log.

The embedded store is one SQLite file in WAL mode: one connection per instance, guarded by
a lock for threads; readers in other processes (``Historian(path, readonly=True)``, e.g.
the dashboard) never block the writer. Writers in several processes are serialised by
SQLite: every write transaction is ``BEGIN IMMEDIATE`` (it takes the database's write lock
first) and waits up to the 30-s busy timeout for another's to commit. The live service writes
everything; the dashboard appends only operators' answers to the alarm log, checked
against the rows it read (``add_alarm_records(..., expect_rows=)``).

Durability: ``PRAGMA synchronous=FULL``. In WAL mode ``NORMAL`` survives an application
crash but may roll back the last transactions on power loss or an OS crash; the historian
records what the ingestion has acknowledged and the audit log of every setpoint write, so a
returned :meth:`Historian.write` or :meth:`Historian.add_audit` must be on disk. The price is
one fsync of the WAL per transaction, which batching (one transaction per batch) amortises.

The audit log and the alarm log (raise, clear, acknowledge, shelve: who and when) are
append-only: triggers abort any UPDATE or DELETE of their rows. Each reading
is stored once (unique on point, time and sequence); a file of an older schema is migrated
when opened for writing (:mod:`connectors.historian_store`), its version kept in
``PRAGMA user_version``.

The records, the :class:`HistorianStore` interface and the queries live in
:mod:`connectors.historian_store` (re-exported here); :mod:`connectors.historian_pg`
implements the same interface on PostgreSQL, and :func:`open_historian` picks the backend
from the location (a file or a ``postgresql://`` URL).
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from connectors.historian_store import (
    ALARM_ACTIONS,
    ALARM_LOG_COLUMNS,
    ALARM_SEVERITIES,
    AUDIT_OUTCOME_CHECK,
    AUDIT_OUTCOMES,
    MIGRATE_DUPLICATES,
    SCHEMA_VERSION,
    AlarmLogChangedError,
    AlarmRecord,
    AuditRecord,
    Event,
    HistorianError,
    HistorianStore,
    Reading,
    SqlHistorian,
    wide_series,
    write_readings_parquet,
)

__all__ = [
    "ALARM_ACTIONS",
    "ALARM_SEVERITIES",
    "AUDIT_OUTCOMES",
    "POSTGRES_SCHEMES",
    "SCHEMA_VERSION",
    "AlarmLogChangedError",
    "AlarmRecord",
    "AuditRecord",
    "Event",
    "Historian",
    "HistorianError",
    "HistorianStore",
    "Reading",
    "SqlHistorian",
    "open_historian",
    "wide_series",
    "write_readings_parquet",
]

logger = logging.getLogger(__name__)

_READING_COLUMNS = """point TEXT NOT NULL,
        time_s REAL NOT NULL,
        value REAL,
        unit TEXT NOT NULL,
        quality TEXT NOT NULL,
        seq INTEGER NOT NULL"""


def _audit_table(name: str) -> str:
    return f"""CREATE TABLE IF NOT EXISTS {name} (
        id INTEGER PRIMARY KEY,
        time_s REAL NOT NULL,
        command_id TEXT NOT NULL,
        field TEXT NOT NULL,
        value REAL,
        expires_at_s REAL NOT NULL,
        actor TEXT NOT NULL,
        outcome TEXT NOT NULL {AUDIT_OUTCOME_CHECK},
        detail TEXT NOT NULL
    )"""


_AUDIT_TRIGGERS: tuple[str, ...] = (
    """CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END""",
    """CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END""",
)

_SCHEMA: tuple[str, ...] = (
    f"CREATE TABLE IF NOT EXISTS readings (id INTEGER PRIMARY KEY, {_READING_COLUMNS})",
    f"CREATE TABLE IF NOT EXISTS readings_duplicates (id INTEGER PRIMARY KEY, {_READING_COLUMNS})",
    """CREATE TABLE IF NOT EXISTS latest (
        point TEXT PRIMARY KEY,
        time_s REAL NOT NULL,
        value REAL,
        unit TEXT NOT NULL,
        quality TEXT NOT NULL,
        seq INTEGER NOT NULL
    ) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS events (
        id INTEGER PRIMARY KEY,
        time_s REAL NOT NULL,
        source TEXT NOT NULL,
        kind TEXT NOT NULL,
        message TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS events_time ON events (time_s)",
    _audit_table("audit"),
    *_AUDIT_TRIGGERS,
    "CREATE TABLE IF NOT EXISTS alarm_log (id INTEGER PRIMARY KEY, "
    + ALARM_LOG_COLUMNS.replace("{real}", "REAL")
    + ")",
    "CREATE INDEX IF NOT EXISTS alarm_log_key ON alarm_log (alarm_key)",
    """CREATE TRIGGER IF NOT EXISTS alarm_log_no_update BEFORE UPDATE ON alarm_log
        BEGIN SELECT RAISE(ABORT, 'the alarm log is append-only'); END""",
    """CREATE TRIGGER IF NOT EXISTS alarm_log_no_delete BEFORE DELETE ON alarm_log
        BEGIN SELECT RAISE(ABORT, 'the alarm log is append-only'); END""",
)

_MIGRATE_AUDIT: tuple[str, ...] = (
    # SQLite cannot change a CHECK in place: copy the rows into a table with the new one.
    # DROP TABLE fires no DELETE trigger; the triggers are dropped with it and made again.
    "DROP TABLE IF EXISTS audit_v1",
    _audit_table("audit_v1"),
    "INSERT INTO audit_v1 SELECT id, time_s, command_id, field, value, expires_at_s, actor, "
    "outcome, detail FROM audit ORDER BY id",
    "DROP TABLE audit",
    "ALTER TABLE audit_v1 RENAME TO audit",
    *_AUDIT_TRIGGERS,
)

POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def open_historian(location: str | Path, *, readonly: bool = False) -> HistorianStore:
    """A historian: a ``postgresql://`` URL opens the PostgreSQL backend
    (:mod:`connectors.historian_pg`), anything else is a SQLite file."""
    if isinstance(location, str) and location.startswith(POSTGRES_SCHEMES):
        from connectors.historian_pg import PostgresHistorian

        return PostgresHistorian(location, readonly=readonly)
    return Historian(location, readonly=readonly)


def _migrate(cur: sqlite3.Cursor, path: Path) -> None:
    """Bring the schema to :data:`SCHEMA_VERSION` inside the caller's transaction; a file
    of a newer schema is refused."""
    version = int(cur.execute("PRAGMA user_version").fetchone()[0])
    if version > SCHEMA_VERSION:
        raise HistorianError(
            f"historian {path} has schema {version}; this TwinLoop knows up to {SCHEMA_VERSION}"
        )
    if version < 1:
        for statement in (*MIGRATE_DUPLICATES, *_MIGRATE_AUDIT):
            cur.execute(statement)
        moved = int(cur.execute("SELECT count(*) FROM readings_duplicates").fetchone()[0])
        if moved:
            logger.warning(
                "historian %s: %d reading(s) stored twice moved to readings_duplicates",
                path,
                moved,
            )
    # Also the write the store must accept now, not at the first batch of readings.
    cur.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


class Historian(SqlHistorian):
    """SQLite (WAL) historian; see the module docstring for durability and concurrency.

    A store that cannot be used is refused when it is opened, as one :class:`HistorianError`
    line: a file that is not a SQLite database, or one opened for writing that refuses
    writes (read-only file system, immutable file). A writable store proves it by writing
    (the schema version, after any migration) before it is handed out, so a service never starts and
    then drops every reading."""

    def __init__(self, path: str | Path, *, readonly: bool = False) -> None:
        self.path = Path(path)
        self.readonly = readonly
        self._lock = threading.RLock()
        self._closed = True
        try:
            self._open(readonly)
        except sqlite3.Error as exc:
            with contextlib.suppress(Exception):
                self._conn.close()
            raise HistorianError(f"cannot open historian {self.path}: {exc}") from None
        self._closed = False

    def _open(self, readonly: bool) -> None:
        path = Path(self.path)
        if readonly:
            if not path.is_file():
                raise HistorianError(f"historian {path} does not exist")
            uri = f"{path.resolve().as_uri()}?mode=ro"
            self._conn = sqlite3.connect(
                uri, uri=True, check_same_thread=False, isolation_level=None, timeout=30.0
            )
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(
                path, check_same_thread=False, isolation_level=None, timeout=30.0
            )
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.execute("PRAGMA busy_timeout=30000")
            self._closed = False
            with self._transaction() as cur:
                for statement in _SCHEMA:
                    cur.execute(statement)
                _migrate(cur, path)
        self._conn.execute("PRAGMA busy_timeout=30000")
        if readonly:  # a file that is not a database fails here, not at the first read
            self._conn.execute("SELECT count(*) FROM sqlite_master").fetchone()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Cursor]:
        with self._lock:
            self._check_open()
            cur = self._conn.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                yield cur
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            else:
                cur.execute("COMMIT")
            finally:
                cur.close()

    def _query(self, sql: str, args: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            self._check_open()
            return list(self._conn.execute(sql, tuple(args)).fetchall())

"""The historian on PostgreSQL: the same interface and rules as the SQLite one.

:class:`PostgresHistorian` implements :class:`~connectors.historian.HistorianStore` for a
site that runs its own PostgreSQL (``open_historian("postgresql://user@host/db")``). Tables
and meanings are those of :mod:`connectors.historian`: ``readings`` (every sample),
``latest`` (the newest per point, kept in the same transaction), ``events`` and an
append-only ``audit`` (a trigger raises on any UPDATE or DELETE, also for raw SQL). Each
reading is stored once (unique on point, time and sequence); a database of an older schema
is migrated when opened for writing (:mod:`connectors.historian_store`), its version kept in
the ``twinloop_schema`` table.

Durability: every write is one transaction committed with the server's default
``synchronous_commit = on`` (the commit returns once the WAL is flushed), the same promise as
the SQLite backend's ``synchronous=FULL``. Any number of processes may write: PostgreSQL
serialises them; one connection per instance, guarded by a lock for threads.

A dropped connection (the server restarted, a proxy or the network cut it) is opened again
on the next call, so the historian does not stay broken until reopened. A read, or a write
whose ``BEGIN`` found the connection dead (nothing of it reached the server), is retried
once on the new connection; a write cut off after it began raises :class:`HistorianError`
(whether it committed is unknown: ingestion's writes are idempotent and retried) and the
next call reconnects. Every failure of the server or the connection, reads included, is a
:class:`HistorianError` naming the historian (without its password), never a psycopg error.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg

from connectors.historian_store import (
    ALARM_LOG_COLUMNS,
    AUDIT_OUTCOME_CHECK,
    MIGRATE_DUPLICATES,
    SCHEMA_VERSION,
    HistorianError,
    SqlHistorian,
)

logger = logging.getLogger(__name__)

_READING_COLUMNS = """point TEXT NOT NULL,
        time_s DOUBLE PRECISION NOT NULL,
        value DOUBLE PRECISION,
        unit TEXT NOT NULL,
        quality TEXT NOT NULL,
        seq BIGINT NOT NULL"""

_SCHEMA: tuple[str, ...] = (
    f"CREATE TABLE IF NOT EXISTS readings (id BIGSERIAL PRIMARY KEY, {_READING_COLUMNS})",
    f"CREATE TABLE IF NOT EXISTS readings_duplicates (id BIGINT PRIMARY KEY, {_READING_COLUMNS})",
    """CREATE TABLE IF NOT EXISTS latest (
        point TEXT PRIMARY KEY,
        time_s DOUBLE PRECISION NOT NULL,
        value DOUBLE PRECISION,
        unit TEXT NOT NULL,
        quality TEXT NOT NULL,
        seq BIGINT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS events (
        id BIGSERIAL PRIMARY KEY,
        time_s DOUBLE PRECISION NOT NULL,
        source TEXT NOT NULL,
        kind TEXT NOT NULL,
        message TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS events_time ON events (time_s)",
    f"""CREATE TABLE IF NOT EXISTS audit (
        id BIGSERIAL PRIMARY KEY,
        time_s DOUBLE PRECISION NOT NULL,
        command_id TEXT NOT NULL,
        field TEXT NOT NULL,
        value DOUBLE PRECISION,
        expires_at_s DOUBLE PRECISION NOT NULL,
        actor TEXT NOT NULL,
        outcome TEXT NOT NULL CONSTRAINT audit_outcome_check {AUDIT_OUTCOME_CHECK},
        detail TEXT NOT NULL
    )""",
    """CREATE OR REPLACE FUNCTION twinloop_audit_append_only() RETURNS trigger AS $$
        BEGIN RAISE EXCEPTION 'the audit log is append-only'; END $$ LANGUAGE plpgsql""",
    "DROP TRIGGER IF EXISTS audit_append_only ON audit",
    """CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON audit
        FOR EACH STATEMENT EXECUTE FUNCTION twinloop_audit_append_only()""",
    "CREATE TABLE IF NOT EXISTS alarm_log (id BIGSERIAL PRIMARY KEY, "
    + ALARM_LOG_COLUMNS.replace("{real}", "DOUBLE PRECISION")
    + ")",
    "CREATE INDEX IF NOT EXISTS alarm_log_key ON alarm_log (alarm_key)",
    """CREATE OR REPLACE FUNCTION twinloop_alarm_log_append_only() RETURNS trigger AS $$
        BEGIN RAISE EXCEPTION 'the alarm log is append-only'; END $$ LANGUAGE plpgsql""",
    "DROP TRIGGER IF EXISTS alarm_log_append_only ON alarm_log",
    """CREATE TRIGGER alarm_log_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON alarm_log
        FOR EACH STATEMENT EXECUTE FUNCTION twinloop_alarm_log_append_only()""",
    "CREATE TABLE IF NOT EXISTS twinloop_schema (version INTEGER NOT NULL)",
)

_MIGRATE_AUDIT: tuple[str, ...] = (
    # ALTER TABLE fires no UPDATE trigger: the rows stay as they are, only the rule widens.
    "ALTER TABLE audit DROP CONSTRAINT IF EXISTS audit_outcome_check",
    f"ALTER TABLE audit ADD CONSTRAINT audit_outcome_check {AUDIT_OUTCOME_CHECK}",
)

_SCHEMA_LOCK_KEY = 0x7477_696E  # pg_advisory_xact_lock: one process creates the schema


def redacted(url: str) -> str:
    """``url`` without its password (for messages and logs)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


class PostgresHistorian(SqlHistorian):
    """PostgreSQL historian; see the module docstring. The queries are the shared ones of
    :class:`~connectors.historian.SqlHistorian`, in psycopg's ``%s`` placeholder style."""

    _POINT_ORDER = 'point COLLATE "C"'  # code-point order, as SQLite's BINARY collation
    _BUCKET_OF = "CAST(FLOOR({}) AS BIGINT)"  # a cast alone rounds in PostgreSQL

    def _sql(self, text: str) -> str:
        return text.replace("?", "%s")

    def _limit_value(self, limit: int) -> int | None:
        # SQLite reads a negative LIMIT as "no limit"; PostgreSQL refuses one (NULL: no limit).
        return None if int(limit) < 0 else int(limit)

    def __init__(self, url: str, *, readonly: bool = False, connect_timeout_s: int = 10) -> None:
        self.url = url
        self.path = redacted(url)
        """Where it is, for messages (the URL without its password)."""
        self.readonly = readonly
        self.connect_timeout_s = connect_timeout_s
        self.reconnects = 0
        """Connections opened again after the server or the network dropped one."""
        self._lock = threading.RLock()
        self._closed = True
        self._conn = self._connect("cannot open historian")
        self._closed = False
        if readonly:
            if not self._query("SELECT to_regclass('readings')")[0][0]:
                self.close()
                raise HistorianError(f"historian {self.path} has no TwinLoop tables yet")
        else:
            with self._transaction() as cur:
                cur.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK_KEY,))
                for statement in _SCHEMA:
                    cur.execute(statement)
                self._migrate(cur)

    def _migrate(self, cur: psycopg.Cursor[Any]) -> None:
        """Bring the schema to :data:`SCHEMA_VERSION` (inside the caller's transaction, under
        the schema lock); a database of a newer schema is refused."""
        cur.execute("SELECT max(version) FROM twinloop_schema")
        row = cur.fetchone()
        version = int(row[0]) if row is not None and row[0] is not None else 0
        if version > SCHEMA_VERSION:
            raise HistorianError(
                f"historian {self.path} has schema {version}; this TwinLoop knows up to "
                f"{SCHEMA_VERSION}"
            )
        if version < 1:
            for statement in (*MIGRATE_DUPLICATES, *_MIGRATE_AUDIT):
                cur.execute(statement)
        if version < SCHEMA_VERSION:
            cur.execute("DELETE FROM twinloop_schema")
            cur.execute("INSERT INTO twinloop_schema (version) VALUES (%s)", (SCHEMA_VERSION,))

    # ------------------------------------------------------------------ plumbing
    def _detail(self, exc: BaseException) -> str:
        """The first line of a psycopg error, without the password."""
        lines = str(exc).replace(self.url, redacted(self.url)).strip().splitlines()
        return lines[0] if lines else type(exc).__name__

    def _connect(self, what: str) -> psycopg.Connection[Any]:
        try:
            conn = psycopg.connect(
                self.url, autocommit=True, connect_timeout=self.connect_timeout_s
            )
            if self.readonly:
                conn.execute("SET default_transaction_read_only = on")
        except psycopg.Error as exc:
            raise HistorianError(f"{what} {self.path}: {self._detail(exc)}") from None
        return conn

    def _live(self) -> psycopg.Connection[Any]:
        """The connection, opened again if it was dropped (caller holds the lock)."""
        if self._conn.closed or self._conn.broken:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
            self._conn = self._connect("cannot reconnect to historian")
            self.reconnects += 1
            logger.warning("historian %s: reconnected after the connection was lost", self.path)
        conn: psycopg.Connection[Any] = self._conn
        return conn

    def _dropped(self, attempt: int, exc: psycopg.Error) -> bool:
        """Whether a failed first attempt found the connection dropped (then retry once)."""
        return attempt == 0 and isinstance(exc, psycopg.OperationalError) and self._conn.broken

    @contextmanager
    def _transaction(self) -> Iterator[psycopg.Cursor[Any]]:
        with self._lock:
            self._check_open()
            try:
                with contextlib.ExitStack() as stack:
                    yield self._begin(stack)
            except psycopg.Error as exc:
                raise HistorianError(f"historian {self.path}: {self._detail(exc)}") from exc

    def _begin(self, stack: contextlib.ExitStack) -> psycopg.Cursor[Any]:
        """Begin a transaction on a live connection: a BEGIN that finds the connection
        dropped (nothing reached the server) is tried once more on a new one."""
        for attempt in (0, 1):
            conn = self._live()
            try:
                stack.enter_context(conn.transaction())
            except psycopg.Error as exc:
                if self._dropped(attempt, exc):
                    continue
                raise
            break
        return stack.enter_context(conn.cursor())

    def _lock_alarm_log(self, cur: Any) -> None:
        # Blocks other appends (ROW EXCLUSIVE) until this transaction ends; reads go on.
        cur.execute("LOCK TABLE alarm_log IN SHARE ROW EXCLUSIVE MODE")

    def _query(self, sql: str, args: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            self._check_open()
            for attempt in (0, 1):
                try:
                    with self._live().cursor() as cur:
                        cur.execute(sql, tuple(args))
                        return list(cur.fetchall())
                except psycopg.Error as exc:  # a read is safe to try again
                    if self._dropped(attempt, exc):
                        continue
                    raise HistorianError(
                        f"historian {self.path}: read failed: {self._detail(exc)}"
                    ) from exc
            raise AssertionError("unreachable")

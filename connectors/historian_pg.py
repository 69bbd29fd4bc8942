"""The historian on PostgreSQL: the same interface and rules as the SQLite one.

:class:`PostgresHistorian` implements :class:`~connectors.historian.HistorianStore` for a
site that runs its own PostgreSQL (``open_historian("postgresql://user@host/db")``). Tables
and meanings are those of :mod:`connectors.historian`: ``readings`` (every sample),
``latest`` (the newest per point, kept in the same transaction), ``events`` and an
append-only ``audit`` (a trigger raises on any UPDATE or DELETE, also for raw SQL).

Durability: every write is one transaction committed with the server's default
``synchronous_commit = on`` (the commit returns once the WAL is flushed), the same promise as
the SQLite backend's ``synchronous=FULL``. Any number of processes may write: PostgreSQL
serialises them; one connection per instance, guarded by a lock for threads.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pandas as pd
import psycopg

from connectors.historian import (
    AuditRecord,
    Event,
    HistorianError,
    Reading,
    wide_series,
    write_readings_parquet,
)

logger = logging.getLogger(__name__)

_SCHEMA: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS readings (
        id BIGSERIAL PRIMARY KEY,
        point TEXT NOT NULL,
        time_s DOUBLE PRECISION NOT NULL,
        value DOUBLE PRECISION,
        unit TEXT NOT NULL,
        quality TEXT NOT NULL,
        seq BIGINT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS readings_point_time ON readings (point, time_s)",
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
    """CREATE TABLE IF NOT EXISTS audit (
        id BIGSERIAL PRIMARY KEY,
        time_s DOUBLE PRECISION NOT NULL,
        command_id TEXT NOT NULL,
        field TEXT NOT NULL,
        value DOUBLE PRECISION,
        expires_at_s DOUBLE PRECISION NOT NULL,
        actor TEXT NOT NULL,
        outcome TEXT NOT NULL CHECK (outcome IN ('published', 'refused', 'error')),
        detail TEXT NOT NULL
    )""",
    """CREATE OR REPLACE FUNCTION twinloop_audit_append_only() RETURNS trigger AS $$
        BEGIN RAISE EXCEPTION 'the audit log is append-only'; END $$ LANGUAGE plpgsql""",
    "DROP TRIGGER IF EXISTS audit_append_only ON audit",
    """CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON audit
        FOR EACH STATEMENT EXECUTE FUNCTION twinloop_audit_append_only()""",
)

_UPSERT_LATEST = """INSERT INTO latest (point, time_s, value, unit, quality, seq)
    VALUES (%s, %s, %s, %s, %s, %s)
    ON CONFLICT (point) DO UPDATE SET time_s = excluded.time_s, value = excluded.value,
        unit = excluded.unit, quality = excluded.quality, seq = excluded.seq
    WHERE excluded.time_s >= latest.time_s"""

_SCHEMA_LOCK_KEY = 0x7477_696E  # pg_advisory_xact_lock: one process creates the schema


def redacted(url: str) -> str:
    """``url`` without its password (for messages and logs)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def _nan_if_none(value: Any) -> float:
    return math.nan if value is None else float(value)


def _db_value(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def _limit(limit: int) -> int | None:
    # SQLite reads a negative LIMIT as "no limit"; PostgreSQL refuses one (NULL: no limit).
    return None if int(limit) < 0 else int(limit)


def _time_clause(since_s: float | None, until_s: float | None) -> tuple[str, list[float]]:
    clauses: list[str] = []
    args: list[float] = []
    if since_s is not None:
        clauses.append("time_s >= %s")
        args.append(float(since_s))
    if until_s is not None:
        clauses.append("time_s <= %s")
        args.append(float(until_s))
    return (" AND ".join(clauses), args)


class PostgresHistorian:
    """PostgreSQL historian; see the module docstring."""

    def __init__(self, url: str, *, readonly: bool = False, connect_timeout_s: int = 10) -> None:
        self.url = url
        self.path = redacted(url)
        """Where it is, for messages (the URL without its password)."""
        self.readonly = readonly
        self._lock = threading.RLock()
        self._closed = True
        try:
            self._conn = psycopg.connect(url, autocommit=True, connect_timeout=connect_timeout_s)
        except psycopg.Error as exc:
            detail = str(exc).replace(url, self.path).strip().splitlines()[0]
            raise HistorianError(f"cannot open historian {self.path}: {detail}") from None
        self._closed = False
        if readonly:
            self._conn.execute("SET default_transaction_read_only = on")
            if not self._query("SELECT to_regclass('readings')")[0][0]:
                self.close()
                raise HistorianError(f"historian {self.path} has no TwinLoop tables yet")
        else:
            with self._transaction() as cur:
                cur.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK_KEY,))
                for statement in _SCHEMA:
                    cur.execute(statement)

    # ------------------------------------------------------------------ plumbing
    @contextmanager
    def _transaction(self) -> Iterator[psycopg.Cursor[Any]]:
        with self._lock:
            self._check_open()
            try:
                with self._conn.transaction(), self._conn.cursor() as cur:
                    yield cur
            except psycopg.Error as exc:
                raise HistorianError(f"historian {self.path}: {exc}") from exc

    def _check_open(self) -> None:
        if self._closed:
            raise HistorianError(f"historian {self.path} is closed")

    def _check_writable(self) -> None:
        if self.readonly:
            raise HistorianError(f"historian {self.path} is open read-only")

    def _query(self, sql: str, args: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            self._check_open()
            with self._conn.cursor() as cur:
                cur.execute(sql, tuple(args))
                return list(cur.fetchall())

    # ------------------------------------------------------------------ readings
    def write(self, readings: Sequence[Reading]) -> int:
        """Store ``readings`` in one transaction, committed (WAL flushed) on return."""
        self._check_writable()
        if not readings:
            return 0
        rows = [
            (r.point, float(r.time_s), _db_value(r.value), r.unit, r.quality, int(r.seq))
            for r in readings
        ]
        newest: dict[str, tuple[str, float, float | None, str, str, int]] = {}
        for row in rows:  # only the newest row of each point can change `latest`
            seen = newest.get(row[0])
            if seen is None or row[1] >= seen[1]:
                newest[row[0]] = row
        with self._transaction() as cur:
            cur.executemany(
                "INSERT INTO readings (point, time_s, value, unit, quality, seq) "
                "VALUES (%s, %s, %s, %s, %s, %s)",
                rows,
            )
            cur.executemany(_UPSERT_LATEST, list(newest.values()))
        return len(rows)

    def latest(self, points: Sequence[str] | None = None) -> dict[str, Reading]:
        """The newest reading (by ``time_s``) of each point, or of the given points."""
        sql = "SELECT point, time_s, value, unit, quality, seq FROM latest"
        args: list[object] = []
        if points is not None:
            if not points:
                return {}
            sql += " WHERE point = ANY(%s)"
            args = [list(points)]
        sql += ' ORDER BY point COLLATE "C"'  # the SQLite store's order (its primary key)
        return {
            str(p): Reading(str(p), float(t), _nan_if_none(v), str(u), str(q), int(s))
            for p, t, v, u, q, s in self._query(sql, args)
        }

    def series(
        self,
        points: Sequence[str],
        *,
        since_s: float | None = None,
        until_s: float | None = None,
    ) -> pd.DataFrame:
        """Values of ``points`` indexed by ``time_s`` (sorted), one column per point in the
        order given; NaN where a point has no sample at that time."""
        columns = list(dict.fromkeys(points))
        if not columns:
            return pd.DataFrame(index=pd.Index([], name="time_s", dtype=float))
        where, targs = _time_clause(since_s, until_s)
        sql = (
            "SELECT point, time_s, value FROM readings WHERE point = ANY(%s)"
            + (f" AND {where}" if where else "")
            + " ORDER BY time_s, id"
        )
        rows = self._query(sql, [columns, *targs])
        long = pd.DataFrame(rows, columns=["point", "time_s", "value"])
        return wide_series(long, columns)

    def points(self, prefix: str = "") -> list[str]:
        """Every point stored, sorted, optionally only those starting with ``prefix``."""
        escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        rows = self._query(
            "SELECT point FROM latest WHERE point LIKE %s ESCAPE '\\' ORDER BY point COLLATE \"C\"",
            [escaped + "%"],
        )
        return [str(row[0]) for row in rows]

    # ------------------------------------------------------------------ events
    def add_event(self, event: Event) -> None:
        self._check_writable()
        with self._transaction() as cur:
            cur.execute(
                "INSERT INTO events (time_s, source, kind, message) VALUES (%s, %s, %s, %s)",
                (float(event.time_s), event.source, event.kind, event.message),
            )

    def events(self, *, limit: int = 100, since_s: float | None = None) -> list[Event]:
        """Newest first (by time, then insertion order)."""
        sql = "SELECT time_s, source, kind, message FROM events"
        args: list[object] = []
        if since_s is not None:
            sql += " WHERE time_s >= %s"
            args.append(float(since_s))
        sql += " ORDER BY time_s DESC, id DESC LIMIT %s"
        args.append(_limit(limit))
        return [Event(float(t), str(s), str(k), str(m)) for t, s, k, m in self._query(sql, args)]

    # ------------------------------------------------------------------ audit
    def add_audit(self, record: AuditRecord) -> None:
        self._check_writable()
        with self._transaction() as cur:
            cur.execute(
                "INSERT INTO audit (time_s, command_id, field, value, expires_at_s, actor, "
                "outcome, detail) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    float(record.time_s),
                    record.command_id,
                    record.field,
                    _db_value(float(record.value)),
                    float(record.expires_at_s),
                    record.actor,
                    record.outcome,
                    record.detail,
                ),
            )

    def audit(self, *, limit: int = 100) -> list[AuditRecord]:
        """Newest first (insertion order)."""
        rows = self._query(
            "SELECT time_s, command_id, field, value, expires_at_s, actor, outcome, detail "
            "FROM audit ORDER BY id DESC LIMIT %s",
            [_limit(limit)],
        )
        return [
            AuditRecord(float(t), str(c), str(f), _nan_if_none(v), float(e), str(a), str(o), str(d))
            for t, c, f, v, e, a, o, d in rows
        ]

    # ------------------------------------------------------------------ export
    def export_parquet(
        self, path: str | Path, *, since_s: float | None = None, until_s: float | None = None
    ) -> Path:
        """Write the readings (long format, sorted by time) to a Parquet file, atomically."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        where, args = _time_clause(since_s, until_s)
        sql = (
            "SELECT point, time_s, value, unit, quality, seq FROM readings"
            + (f" WHERE {where}" if where else "")
            + " ORDER BY time_s, id"
        )
        frame = pd.DataFrame(
            self._query(sql, args), columns=["point", "time_s", "value", "unit", "quality", "seq"]
        )
        return write_readings_parquet(frame, target)

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._conn.close()
                self._closed = True

    def __enter__(self) -> PostgresHistorian:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

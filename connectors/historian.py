"""The historian: time series of sensor readings, events and the setpoint audit log.

The embedded store is one SQLite file in WAL mode, safe for one writing process (any number
of threads: one connection guarded by a lock) and readers in other processes
(``Historian(path, readonly=True)``, e.g. the dashboard).

Durability: ``PRAGMA synchronous=FULL``. In WAL mode ``NORMAL`` survives an application
crash but may roll back the last transactions on power loss or an OS crash; the historian
records what the ingestion has acknowledged and the audit log of every setpoint write, so a
returned :meth:`Historian.write` or :meth:`Historian.add_audit` must be on disk. The price is
one fsync of the WAL per transaction, which batching (one transaction per batch) amortises.

The audit log is append-only: triggers abort any UPDATE or DELETE of its rows.

:class:`HistorianStore` is the interface a consumer needs. SQLite is the embedded default;
:mod:`connectors.historian_pg` implements the same interface on PostgreSQL, and
:func:`open_historian` picks the backend from the location (a file or a ``postgresql://``
URL).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self, runtime_checkable

import pandas as pd

logger = logging.getLogger(__name__)

AUDIT_OUTCOMES: tuple[str, ...] = ("published", "refused", "error")


class HistorianError(ValueError):
    """A request the historian refuses (bad record, read-only store, missing file...)."""


# --------------------------------------------------------------------------- records
def _finite(name: str, value: float) -> None:
    if not isinstance(value, int | float) or not math.isfinite(value):
        raise HistorianError(f"{name} must be a finite number, got {value!r}")


@dataclass(frozen=True)
class Reading:
    """One sample of one point. ``value`` may be NaN only when ``quality`` is not "good"."""

    point: str
    time_s: float
    value: float
    unit: str = ""
    quality: str = "good"
    seq: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.point, str) or not self.point:
            raise HistorianError(f"reading point must be a non-empty string, got {self.point!r}")
        _finite(f"reading {self.point}: time_s", self.time_s)
        if not isinstance(self.value, int | float):
            raise HistorianError(f"reading {self.point}: value must be a number")
        if self.quality == "good" and not math.isfinite(self.value):
            raise HistorianError(f"reading {self.point}: a good reading needs a finite value")
        if not self.quality:
            raise HistorianError(f"reading {self.point}: quality must not be empty")


@dataclass(frozen=True)
class Event:
    """Something that happened, e.g. ``Event(t, "watchdog", "trip", "stale data")``."""

    time_s: float
    source: str
    kind: str
    message: str

    def __post_init__(self) -> None:
        _finite("event time_s", self.time_s)
        if not self.source or not self.kind:
            raise HistorianError("event source and kind must not be empty")


@dataclass(frozen=True)
class AuditRecord:
    """One setpoint write (append-only)."""

    time_s: float
    command_id: str
    field: str
    value: float
    expires_at_s: float
    actor: str
    outcome: str
    """"published" | "refused" | "error"."""
    detail: str = ""

    def __post_init__(self) -> None:
        _finite("audit time_s", self.time_s)
        _finite("audit expires_at_s", self.expires_at_s)
        if not self.command_id or not self.field or not self.actor:
            raise HistorianError("audit command_id, field and actor must not be empty")
        if self.outcome not in AUDIT_OUTCOMES:
            raise HistorianError(
                f"audit outcome {self.outcome!r} is not one of {', '.join(AUDIT_OUTCOMES)}"
            )


# --------------------------------------------------------------------------- interface
@runtime_checkable
class HistorianStore(Protocol):
    """What ingestion, controllers and dashboards need from a historian backend."""

    def write(self, readings: Sequence[Reading]) -> int: ...
    def latest(self, points: Sequence[str] | None = None) -> dict[str, Reading]: ...
    def series(
        self,
        points: Sequence[str],
        *,
        since_s: float | None = None,
        until_s: float | None = None,
    ) -> pd.DataFrame: ...
    def points(self, prefix: str = "") -> list[str]: ...
    def add_event(self, event: Event) -> None: ...
    def events(self, *, limit: int = 100, since_s: float | None = None) -> list[Event]: ...
    def add_audit(self, record: AuditRecord) -> None: ...
    def audit(self, *, limit: int = 100) -> list[AuditRecord]: ...
    def export_parquet(
        self, path: str | Path, *, since_s: float | None = None, until_s: float | None = None
    ) -> Path: ...
    def close(self) -> None: ...
    def __enter__(self) -> HistorianStore: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


# --------------------------------------------------------------------------- schema
_SCHEMA: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS readings (
        id INTEGER PRIMARY KEY,
        point TEXT NOT NULL,
        time_s REAL NOT NULL,
        value REAL,
        unit TEXT NOT NULL,
        quality TEXT NOT NULL,
        seq INTEGER NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS readings_point_time ON readings (point, time_s)",
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
    """CREATE TABLE IF NOT EXISTS audit (
        id INTEGER PRIMARY KEY,
        time_s REAL NOT NULL,
        command_id TEXT NOT NULL,
        field TEXT NOT NULL,
        value REAL,
        expires_at_s REAL NOT NULL,
        actor TEXT NOT NULL,
        outcome TEXT NOT NULL CHECK (outcome IN ('published', 'refused', 'error')),
        detail TEXT NOT NULL
    )""",
    """CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END""",
    """CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END""",
)

_UPSERT_LATEST = """INSERT INTO latest (point, time_s, value, unit, quality, seq)
    VALUES (?, ?, ?, ?, ?, ?)
    ON CONFLICT (point) DO UPDATE SET time_s = excluded.time_s, value = excluded.value,
        unit = excluded.unit, quality = excluded.quality, seq = excluded.seq
    WHERE excluded.time_s >= latest.time_s"""


def _nan_if_none(value: float | None) -> float:
    return math.nan if value is None else float(value)


def _db_value(value: float) -> float | None:
    # SQLite stores NaN as NULL; be explicit so reads map it back to NaN.
    return None if math.isnan(value) else float(value)


def _time_clause(since_s: float | None, until_s: float | None) -> tuple[str, list[float]]:
    clauses: list[str] = []
    args: list[float] = []
    if since_s is not None:
        clauses.append("time_s >= ?")
        args.append(float(since_s))
    if until_s is not None:
        clauses.append("time_s <= ?")
        args.append(float(until_s))
    return (" AND ".join(clauses), args)


def wide_series(long: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Rows of (point, time_s, value) in storage order → one column per point in the order
    of ``columns``, indexed by ``time_s`` (sorted), NaN where a point has no sample."""
    if long.empty:
        frame = pd.DataFrame(columns=columns, dtype=float)
    else:
        long["value"] = long["value"].astype(float)
        # Several samples of one point at one time: keep the last stored.
        long = long.drop_duplicates(subset=["time_s", "point"], keep="last")
        frame = long.pivot(index="time_s", columns="point", values="value")
        frame = frame.reindex(columns=columns)
    frame.index = pd.Index(frame.index.astype(float), name="time_s")
    frame.columns.name = None
    return frame.sort_index()


def write_readings_parquet(frame: pd.DataFrame, target: Path) -> Path:
    """Readings in long format (point, time_s, value, unit, quality, seq) to Parquet,
    atomically (temporary file + rename)."""
    frame = frame.astype(
        {
            "point": "string",
            "time_s": "float64",
            "value": "float64",
            "unit": "string",
            "quality": "string",
            "seq": "int64",
        }
    )
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        frame.to_parquet(tmp, engine="pyarrow", index=False)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    logger.info("exported %d readings to %s", len(frame), target)
    return target


POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def open_historian(location: str | Path, *, readonly: bool = False) -> HistorianStore:
    """A historian: a ``postgresql://`` URL opens the PostgreSQL backend
    (:mod:`connectors.historian_pg`), anything else is a SQLite file."""
    if isinstance(location, str) and location.startswith(POSTGRES_SCHEMES):
        from connectors.historian_pg import PostgresHistorian

        return PostgresHistorian(location, readonly=readonly)
    return Historian(location, readonly=readonly)


class SqlHistorian:
    """What the SQL backends share: the queries (written with ``?`` placeholders), row
    mapping, validation and lifecycle. A backend provides the connection, ``_transaction``
    (a cursor inside one committed transaction), ``_query`` and its dialect:
    :meth:`_sql` (placeholders), :attr:`_POINT_ORDER` and :meth:`_limit_value`."""

    path: Path | str
    readonly: bool
    _lock: threading.RLock
    _conn: Any
    _closed: bool

    _POINT_ORDER = "point"
    """ORDER BY term listing points in code-point order."""

    def _sql(self, text: str) -> str:
        """``text`` in the backend's placeholder style."""
        return text

    def _limit_value(self, limit: int) -> int | None:
        """The LIMIT argument for ``limit`` (negative: no limit)."""
        return int(limit)

    def _transaction(self) -> AbstractContextManager[Any]:
        raise NotImplementedError

    def _query(self, sql: str, args: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def _check_open(self) -> None:
        if getattr(self, "_closed", False):
            raise HistorianError(f"historian {self.path} is closed")

    def _check_writable(self) -> None:
        if self.readonly:
            raise HistorianError(f"historian {self.path} is open read-only")

    # ------------------------------------------------------------------ readings
    def write(self, readings: Sequence[Reading]) -> int:
        """Store ``readings`` in one transaction, committed (and synced) on return."""
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
                self._sql(
                    "INSERT INTO readings (point, time_s, value, unit, quality, seq) "
                    "VALUES (?, ?, ?, ?, ?, ?)"
                ),
                rows,
            )
            cur.executemany(self._sql(_UPSERT_LATEST), list(newest.values()))
        return len(rows)

    def latest(self, points: Sequence[str] | None = None) -> dict[str, Reading]:
        """The newest reading (by ``time_s``) of each point, or of the given points, in
        code-point order of the points."""
        sql = "SELECT point, time_s, value, unit, quality, seq FROM latest"
        args: list[str] = []
        if points is not None:
            if not points:
                return {}
            sql += f" WHERE point IN ({', '.join('?' * len(points))})"
            args = list(points)
        sql += f" ORDER BY {self._POINT_ORDER}"
        return {
            str(p): Reading(str(p), float(t), _nan_if_none(v), str(u), str(q), int(n))
            for p, t, v, u, q, n in self._query(self._sql(sql), args)
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
            "SELECT point, time_s, value FROM readings "
            f"WHERE point IN ({', '.join('?' * len(columns))})"
            + (f" AND {where}" if where else "")
            + " ORDER BY time_s, id"
        )
        rows = self._query(self._sql(sql), [*columns, *targs])
        return wide_series(pd.DataFrame(rows, columns=["point", "time_s", "value"]), columns)

    def points(self, prefix: str = "") -> list[str]:
        """Every point stored, sorted, optionally only those starting with ``prefix``."""
        escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        sql = (
            f"SELECT point FROM latest WHERE point LIKE ? ESCAPE '\\' ORDER BY {self._POINT_ORDER}"
        )
        return [str(row[0]) for row in self._query(self._sql(sql), [escaped + "%"])]

    # ------------------------------------------------------------------ events
    def add_event(self, event: Event) -> None:
        self._check_writable()
        with self._transaction() as cur:
            cur.execute(
                self._sql("INSERT INTO events (time_s, source, kind, message) VALUES (?, ?, ?, ?)"),
                (float(event.time_s), event.source, event.kind, event.message),
            )

    def events(self, *, limit: int = 100, since_s: float | None = None) -> list[Event]:
        """Newest first (by time, then insertion order)."""
        sql = "SELECT time_s, source, kind, message FROM events"
        args: list[object] = []
        if since_s is not None:
            sql += " WHERE time_s >= ?"
            args.append(float(since_s))
        sql += " ORDER BY time_s DESC, id DESC LIMIT ?"
        args.append(self._limit_value(limit))
        return [
            Event(float(t), str(s), str(k), str(m))
            for t, s, k, m in self._query(self._sql(sql), args)
        ]

    # ------------------------------------------------------------------ audit
    def add_audit(self, record: AuditRecord) -> None:
        self._check_writable()
        with self._transaction() as cur:
            cur.execute(
                self._sql(
                    "INSERT INTO audit (time_s, command_id, field, value, expires_at_s, actor, "
                    "outcome, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                ),
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
            self._sql(
                "SELECT time_s, command_id, field, value, expires_at_s, actor, outcome, detail "
                "FROM audit ORDER BY id DESC LIMIT ?"
            ),
            [self._limit_value(limit)],
        )
        return [
            AuditRecord(float(t), str(c), str(f), _nan_if_none(v), float(e), str(a), str(o), str(d))
            for t, c, f, v, e, a, o, d in rows
        ]

    # ------------------------------------------------------------------ export
    def export_parquet(
        self, path: str | Path, *, since_s: float | None = None, until_s: float | None = None
    ) -> Path:
        """Write the readings (long format: point, time_s, value, unit, quality, seq; sorted
        by time) to a Parquet file, atomically (temporary file + rename). Returns the path."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        where, args = _time_clause(since_s, until_s)
        sql = (
            "SELECT point, time_s, value, unit, quality, seq FROM readings"
            + (f" WHERE {where}" if where else "")
            + " ORDER BY time_s, id"
        )
        columns = ["point", "time_s", "value", "unit", "quality", "seq"]
        frame = pd.DataFrame(self._query(self._sql(sql), args), columns=columns)
        return write_readings_parquet(frame, target)

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._conn.close()
                self._closed = True

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class Historian(SqlHistorian):
    """SQLite (WAL) historian; see the module docstring for durability and concurrency.

    A store that cannot be used is refused when it is opened, as one :class:`HistorianError`
    line: a file that is not a SQLite database, or one opened for writing that refuses
    writes (read-only file system, immutable file). A writable store proves it by writing
    (the schema version, unchanged) before it is handed out, so a service never starts and
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
                # A write the store must accept now, not at the first batch of readings.
                version = int(cur.execute("PRAGMA user_version").fetchone()[0])
                cur.execute(f"PRAGMA user_version = {version}")
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

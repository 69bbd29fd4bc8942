"""What every historian backend shares: records, the :class:`HistorianStore` interface, the
schema version and its migration, and :class:`SqlHistorian` (the queries of both SQL
backends).

:mod:`connectors.historian` (SQLite, embedded) and :mod:`connectors.historian_pg`
(PostgreSQL) build on this module and on nothing of each other.

Each reading is stored once: ``readings`` has a unique key on (point, time_s, seq) and a
write inserts with ``ON CONFLICT DO NOTHING``, so a message delivered twice (an MQTT QoS 1
redelivery after a restart, a retained message replayed on a new subscription) leaves one
row. :data:`SCHEMA_VERSION` 1 brought that key and the audit outcome "applied"; files and
databases written before are migrated when opened for writing, nothing stored lost: rows
that repeat a key already stored are moved to ``readings_duplicates``, not deleted.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self, runtime_checkable

import pandas as pd

from twinloop.errors import TwinLoopError

logger = logging.getLogger(__name__)

AUDIT_OUTCOMES: tuple[str, ...] = ("published", "applied", "refused", "error")
"""A setpoint's audit outcomes: "published" (the broker's PUBACK, no echo from the BMS yet),
"applied" (the BMS echoed the value it applied), "refused" (by the broker or the BMS, the
detail says why) and "error" (not confirmed)."""

SCHEMA_VERSION = 1
"""0: the first schema. 1: readings unique on (point, time_s, seq); audit outcome
"applied"."""

AUDIT_OUTCOME_CHECK = "CHECK (outcome IN ({}))".format(", ".join(f"'{o}'" for o in AUDIT_OUTCOMES))
"""The audit table's constraint on ``outcome``, in the schema of both backends."""


class HistorianError(ValueError, TwinLoopError):
    """A request the historian refuses (bad record, read-only store, missing file...)."""


class AlarmLogChangedError(HistorianError):
    """Another writer appended to the alarm log since it was read (``expect_rows``)."""


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
    """One of :data:`AUDIT_OUTCOMES`."""
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


ALARM_SEVERITIES: tuple[str, ...] = ("critical", "high", "medium", "low")
"""Alarm severities, most urgent first."""
ALARM_ACTIONS: tuple[str, ...] = ("raise", "clear", "ack", "shelve", "unshelve")
"""What one row of the alarm log records: the condition began (or grew more severe), ended,
an operator acknowledged it, shelved it until ``until_s`` or took it off the shelf."""


@dataclass(frozen=True)
class AlarmRecord:
    """One row of the append-only alarm log: ``key`` names the alarm (e.g.
    ``inlet:rack_inlet_c.2.07``), ``time_s`` is on the readings' clock (the site's time
    base), ``wall_s`` the Unix time it was recorded."""

    time_s: float
    key: str
    action: str
    """One of :data:`ALARM_ACTIONS`."""
    severity: str
    """One of :data:`ALARM_SEVERITIES`."""
    message: str
    actor: str
    wall_s: float
    until_s: float | None = None
    """A shelf's end (readings' clock); only for "shelve"."""

    def __post_init__(self) -> None:
        _finite("alarm time_s", self.time_s)
        _finite("alarm wall_s", self.wall_s)
        if not self.key or not self.actor:
            raise HistorianError("alarm key and actor must not be empty")
        if self.action not in ALARM_ACTIONS:
            raise HistorianError(
                f"alarm action {self.action!r} is not one of {', '.join(ALARM_ACTIONS)}"
            )
        if self.severity not in ALARM_SEVERITIES:
            raise HistorianError(
                f"alarm severity {self.severity!r} is not one of {', '.join(ALARM_SEVERITIES)}"
            )
        if (self.action == "shelve") != (self.until_s is not None):
            raise HistorianError("an alarm's until_s is given for a shelve, and only for one")
        if self.until_s is not None:
            _finite("alarm until_s", self.until_s)


ALARM_LOG_COLUMNS = """time_s {real} NOT NULL,
        alarm_key TEXT NOT NULL,
        action TEXT NOT NULL CHECK (action IN ({actions})),
        severity TEXT NOT NULL CHECK (severity IN ({severities})),
        message TEXT NOT NULL,
        actor TEXT NOT NULL,
        wall_s {real} NOT NULL,
        until_s {real}""".replace("{actions}", ", ".join(f"'{a}'" for a in ALARM_ACTIONS)).replace(
    "{severities}", ", ".join(f"'{s}'" for s in ALARM_SEVERITIES)
)
"""The alarm log's columns after its id, in the schema of both backends (``{real}``: the
backend's float type)."""


DEFAULT_BUCKETS = 2000
"""Time buckets of :meth:`SqlHistorian.downsampled` unless asked otherwise."""
BUCKET_AGGREGATES = {"mean": "AVG", "max": "MAX", "min": "MIN"}
"""How :meth:`SqlHistorian.downsampled` reduces the samples of one bucket (SQL aggregate)."""


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
    def downsampled(
        self,
        points: Sequence[str],
        *,
        since_s: float | None = None,
        until_s: float | None = None,
        buckets: int = DEFAULT_BUCKETS,
        how: str = "mean",
    ) -> pd.DataFrame: ...
    def across(
        self,
        points: Sequence[str],
        *,
        since_s: float | None = None,
        until_s: float | None = None,
        how: str = "max",
    ) -> pd.Series: ...
    def points(self, prefix: str = "") -> list[str]: ...
    def add_event(self, event: Event) -> None: ...
    def events(self, *, limit: int = 100, since_s: float | None = None) -> list[Event]: ...
    def add_audit(self, record: AuditRecord) -> None: ...
    def audit(self, *, limit: int = 100) -> list[AuditRecord]: ...
    def add_alarm_records(
        self, records: Sequence[AlarmRecord], *, expect_rows: int | None = None
    ) -> None: ...
    def alarm_records(
        self, *, limit: int = -1, key: str | None = None, newest_first: bool = False
    ) -> list[AlarmRecord]: ...
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


INSERT_READING = (
    "INSERT INTO readings (point, time_s, value, unit, quality, seq) VALUES (?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (point, time_s, seq) DO NOTHING"
)
"""Stores a reading once: a repeated (point, time_s, seq) is skipped."""

MIGRATE_DUPLICATES: tuple[str, ...] = (
    """INSERT INTO readings_duplicates (id, point, time_s, value, unit, quality, seq)
        SELECT r.id, r.point, r.time_s, r.value, r.unit, r.quality, r.seq FROM readings r
        WHERE EXISTS (SELECT 1 FROM readings o WHERE o.point = r.point
            AND o.time_s = r.time_s AND o.seq = r.seq AND o.id < r.id)""",
    "DELETE FROM readings WHERE id IN (SELECT id FROM readings_duplicates)",
    "CREATE UNIQUE INDEX IF NOT EXISTS readings_key ON readings (point, time_s, seq)",
    "DROP INDEX IF EXISTS readings_point_time",
)
"""Schema 0 → 1 for ``readings`` (both backends; ``readings_duplicates`` must exist): every
row that repeats the key of an earlier one is moved aside, then the key is made unique (it
also serves the point/time queries the old index did)."""

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
    _BUCKET_OF = "CAST({} AS INTEGER)"
    """The whole number of a non-negative float expression (SQLite truncates)."""

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

    def _lock_alarm_log(self, cur: Any) -> None:
        """Keep other writers from appending to the alarm log until this transaction ends
        (SQLite: its ``BEGIN IMMEDIATE`` already holds the database's write lock)."""

    def _check_open(self) -> None:
        if getattr(self, "_closed", False):
            raise HistorianError(f"historian {self.path} is closed")

    def _check_writable(self) -> None:
        if self.readonly:
            raise HistorianError(f"historian {self.path} is open read-only")

    # ------------------------------------------------------------------ readings
    def write(self, readings: Sequence[Reading]) -> int:
        """Store ``readings`` in one transaction, committed (and synced) on return; the
        number of rows added. A reading whose (point, time_s, seq) is already stored, in the
        table or earlier in ``readings``, is not stored again."""
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
            cur.executemany(self._sql(INSERT_READING), rows)
            added = self._rowcount(cur, len(rows))
            cur.executemany(self._sql(_UPSERT_LATEST), list(newest.values()))
        return added

    def _rowcount(self, cur: Any, rows: int) -> int:
        """Rows the last ``executemany`` inserted (``rows`` when the driver cannot say)."""
        count = int(getattr(cur, "rowcount", -1))
        return rows if count < 0 else count

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

    def downsampled(
        self,
        points: Sequence[str],
        *,
        since_s: float | None = None,
        until_s: float | None = None,
        buckets: int = DEFAULT_BUCKETS,
        how: str = "mean",
    ) -> pd.DataFrame:
        """Values of ``points`` reduced in the database to at most ``buckets`` + 1 equal time
        buckets over [``since_s``, ``until_s``] (each defaults to the points' oldest or newest
        sample): one row per bucket that holds a sample, indexed by the time of the bucket's
        first sample of any of the points (``time_s``, sorted; in a range sparser than its
        buckets, each sample's own time), one column per point in the order given, each cell the
        ``how`` (mean, max, min) of the point's samples in the bucket, NaN where it has
        none. A sample at exactly ``until_s`` opens the extra bucket. For a chart of a long
        range: the rows sent back are bounded by ``buckets``, not by the samples stored."""
        columns = list(dict.fromkeys(points))
        if how not in BUCKET_AGGREGATES:
            raise HistorianError(
                f"unknown bucket aggregate {how!r} (one of {', '.join(BUCKET_AGGREGATES)})"
            )
        if int(buckets) < 1:
            raise HistorianError(f"downsampling needs at least one bucket, got {buckets}")
        empty = pd.DataFrame(columns=columns, dtype=float, index=pd.Index([], name="time_s"))
        if not columns:
            return empty
        marks = ", ".join("?" * len(columns))
        if since_s is None or until_s is None:
            where, targs = _time_clause(since_s, until_s)
            bounds = self._query(
                self._sql(
                    f"SELECT MIN(time_s), MAX(time_s) FROM readings WHERE point IN ({marks})"
                    + (f" AND {where}" if where else "")
                ),
                [*columns, *targs],
            )
            oldest, newest = bounds[0] if bounds else (None, None)
            if oldest is None or newest is None:
                return empty
            since_s = float(oldest) if since_s is None else since_s
            until_s = float(newest) if until_s is None else until_s
        start, end = float(since_s), float(until_s)
        if not (math.isfinite(start) and math.isfinite(end)) or end < start:
            raise HistorianError(f"cannot downsample from {start} to {end}: not a time range")
        width = max((end - start) / int(buckets), 1e-9)
        bucket = self._BUCKET_OF.format("(time_s - ?) / ?")
        sql = (
            f"SELECT point, {bucket} AS bucket, {BUCKET_AGGREGATES[how]}(value), MIN(time_s) "
            "FROM readings "
            f"WHERE point IN ({marks}) AND time_s >= ? AND time_s <= ? "
            "GROUP BY point, bucket"
        )
        rows = self._query(self._sql(sql), [start, width, *columns, start, end])
        long = pd.DataFrame(rows, columns=["point", "bucket", "value", "first_s"])
        long["time_s"] = long.groupby("bucket")["first_s"].transform("min").astype(float)
        return wide_series(long[["point", "time_s", "value"]], columns)

    def across(
        self,
        points: Sequence[str],
        *,
        since_s: float | None = None,
        until_s: float | None = None,
        how: str = "max",
    ) -> pd.Series:
        """The ``how`` (mean, max, min) of ``points`` at each time one of them has a sample,
        reduced in the database: e.g. the hall's hottest rack inlet, one row per time instead
        of one per rack. NaN samples are skipped (NaN where all are); indexed by ``time_s``
        (sorted). The same as ``series(points, ...)`` reduced along each row, except that a
        point stored twice at one time (another sequence number) counts both samples where
        ``series`` keeps the last stored."""
        columns = list(dict.fromkeys(points))
        if how not in BUCKET_AGGREGATES:
            raise HistorianError(
                f"unknown aggregate {how!r} (one of {', '.join(BUCKET_AGGREGATES)})"
            )
        name = f"{how} of {len(columns)} points"
        index = pd.Index([], name="time_s", dtype=float)
        if not columns:
            return pd.Series(dtype=float, index=index, name=name)
        where, targs = _time_clause(since_s, until_s)
        sql = (
            f"SELECT time_s, {BUCKET_AGGREGATES[how]}(value) FROM readings "
            f"WHERE point IN ({', '.join('?' * len(columns))})"
            + (f" AND {where}" if where else "")
            + " GROUP BY time_s ORDER BY time_s"
        )
        rows = self._query(self._sql(sql), [*columns, *targs])
        return pd.Series(
            [_nan_if_none(v) for _, v in rows],
            index=pd.Index([float(t) for t, _ in rows], name="time_s", dtype=float),
            name=name,
            dtype=float,
        )

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

    # ------------------------------------------------------------------ alarms
    def add_alarm_records(
        self, records: Sequence[AlarmRecord], *, expect_rows: int | None = None
    ) -> None:
        """Append ``records`` to the alarm log in one transaction (append-only).

        ``expect_rows``: append only if the log still holds that many rows, checked inside
        the transaction that appends (no other writer can append between check and append),
        else raise :class:`AlarmLogChangedError` and append nothing. A writer that decided
        on the log as it read it (the live service's alarm evaluation, an operator's answer
        on the dashboard, possibly in another process) never appends over a record it has
        not seen."""
        self._check_writable()
        if not records:
            return
        rows = [
            (
                float(r.time_s),
                r.key,
                r.action,
                r.severity,
                r.message,
                r.actor,
                float(r.wall_s),
                None if r.until_s is None else float(r.until_s),
            )
            for r in records
        ]
        with self._transaction() as cur:
            if expect_rows is not None:
                self._lock_alarm_log(cur)
                cur.execute("SELECT count(*) FROM alarm_log")
                rows_now = int(cur.fetchone()[0])
                if rows_now != expect_rows:
                    raise AlarmLogChangedError(
                        f"historian {self.path}: the alarm log holds {rows_now} records, "
                        f"not the {expect_rows} read: read it again"
                    )
            cur.executemany(
                self._sql(
                    "INSERT INTO alarm_log (time_s, alarm_key, action, severity, message, actor, "
                    "wall_s, until_s) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                ),
                rows,
            )

    def alarm_records(
        self, *, limit: int = -1, key: str | None = None, newest_first: bool = False
    ) -> list[AlarmRecord]:
        """The alarm log in the order it was written (``newest_first``: reversed), at most
        ``limit`` rows (negative: all), optionally of one alarm ``key``."""
        sql = (
            "SELECT time_s, alarm_key, action, severity, message, actor, wall_s, until_s "
            "FROM alarm_log"
        )
        args: list[object] = []
        if key is not None:
            sql += " WHERE alarm_key = ?"
            args.append(key)
        sql += f" ORDER BY id {'DESC' if newest_first else 'ASC'}"
        if limit >= 0:
            sql += " LIMIT ?"
            args.append(int(limit))
        return [
            AlarmRecord(
                float(t),
                str(k),
                str(a),
                str(s),
                str(m),
                str(who),
                float(w),
                None if u is None else float(u),
            )
            for t, k, a, s, m, who, w, u in self._query(self._sql(sql), args)
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

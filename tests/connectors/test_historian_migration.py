"""Each reading stored once, and the schema-0 → 1 migration of existing historians (SQLite
file and PostgreSQL database): nothing already stored is lost."""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path

import psycopg
import pytest

from connectors.historian import (
    SCHEMA_VERSION,
    AuditRecord,
    Historian,
    HistorianError,
    Reading,
    open_historian,
)

_V0_SQLITE = (
    """CREATE TABLE readings (id INTEGER PRIMARY KEY, point TEXT NOT NULL, time_s REAL NOT NULL,
        value REAL, unit TEXT NOT NULL, quality TEXT NOT NULL, seq INTEGER NOT NULL)""",
    "CREATE INDEX readings_point_time ON readings (point, time_s)",
    """CREATE TABLE latest (point TEXT PRIMARY KEY, time_s REAL NOT NULL, value REAL,
        unit TEXT NOT NULL, quality TEXT NOT NULL, seq INTEGER NOT NULL) WITHOUT ROWID""",
    """CREATE TABLE events (id INTEGER PRIMARY KEY, time_s REAL NOT NULL, source TEXT NOT NULL,
        kind TEXT NOT NULL, message TEXT NOT NULL)""",
    """CREATE TABLE audit (id INTEGER PRIMARY KEY, time_s REAL NOT NULL,
        command_id TEXT NOT NULL, field TEXT NOT NULL, value REAL, expires_at_s REAL NOT NULL,
        actor TEXT NOT NULL,
        outcome TEXT NOT NULL CHECK (outcome IN ('published', 'refused', 'error')),
        detail TEXT NOT NULL)""",
    """CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END""",
)
_V0_ROWS = [
    ("supply_air_c", 60.0, 18.0, "degC", "good", 1),
    ("supply_air_c", 120.0, 18.5, "degC", "good", 2),
    ("supply_air_c", 120.0, 18.5, "degC", "good", 2),  # the replayed retained message
    ("supply_air_c", 120.0, 18.5, "degC", "good", 2),
    ("return_air_c", 120.0, 30.0, "degC", "good", 2),
]


@pytest.fixture(params=["sqlite", "postgres"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "h.sqlite")
    return str(request.getfixturevalue("postgres_url"))


def test_a_reading_delivered_twice_is_stored_once(location: str) -> None:
    reading = Reading("supply_air_c", 60.0, 18.0, "degC", seq=7)
    with open_historian(location) as h:
        assert h.write([reading, reading]) == 1  # twice in one batch
        assert h.write([reading, Reading("supply_air_c", 120.0, 18.2, "degC", seq=8)]) == 1
        # Same time, another sequence number: another reading.
        assert h.write([Reading("supply_air_c", 60.0, 18.0, "degC", seq=9)]) == 1
        assert len(h.series(["supply_air_c"])) == 2  # two times
        assert h.latest()["supply_air_c"].seq == 8


def test_sqlite_schema_0_is_migrated_nothing_lost(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as raw:
        for statement in _V0_SQLITE:
            raw.execute(statement)
        raw.executemany(
            "INSERT INTO readings (point, time_s, value, unit, quality, seq) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            _V0_ROWS,
        )
        raw.execute(
            "INSERT INTO audit (time_s, command_id, field, value, expires_at_s, actor, outcome,"
            " detail) VALUES (1.0, 'c1', 'supply_air_c', 20.0, 61.0, 'controller', "
            "'published', '')"
        )
    with Historian(path) as h:
        assert len(h.series(["supply_air_c"])) == 2
        h.add_audit(AuditRecord(2.0, "c1", "supply_air_c", 20.0, 61.0, "controller", "applied"))
        assert [a.outcome for a in h.audit()] == ["applied", "published"]
        assert h.write([Reading("supply_air_c", 120.0, 18.5, "degC", seq=2)]) == 0
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        kept = raw.execute("SELECT count(*) FROM readings").fetchone()[0]
        moved = raw.execute("SELECT id, point, seq FROM readings_duplicates").fetchall()
        assert kept + len(moved) == len(_V0_ROWS)
        assert moved == [(3, "supply_air_c", 2), (4, "supply_air_c", 2)]
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            raw.execute("DELETE FROM audit")
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            raw.execute("UPDATE audit SET outcome = 'error'")
        raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(HistorianError, match="knows up to"):
        Historian(path)
    with Historian(path, readonly=True) as reader:  # readers do not migrate
        assert reader.audit()[0].outcome == "applied"


def test_postgres_schema_0_is_migrated_nothing_lost(postgres_url: str) -> None:
    with psycopg.connect(postgres_url, autocommit=True) as raw:
        for statement in _V0_SQLITE[:5]:
            raw.execute(
                statement.replace("INTEGER PRIMARY KEY", "BIGSERIAL PRIMARY KEY")
                .replace(" REAL", " DOUBLE PRECISION")
                .replace("WITHOUT ROWID", "")
            )
        with raw.cursor() as cur:
            cur.executemany(
                "INSERT INTO readings (point, time_s, value, unit, quality, seq) "
                "VALUES (%s, %s, %s, %s, %s, %s)",
                _V0_ROWS,
            )
        raw.execute(
            "INSERT INTO audit (time_s, command_id, field, value, expires_at_s, actor, outcome,"
            " detail) VALUES (1.0, 'c1', 'supply_air_c', 20.0, 61.0, 'controller', "
            "'published', '')"
        )
    with open_historian(postgres_url) as h:
        assert len(h.series(["supply_air_c"])) == 2
        h.add_audit(AuditRecord(2.0, "c1", "supply_air_c", math.nan, 61.0, "ctl", "applied"))
        assert [a.outcome for a in h.audit()] == ["applied", "published"]
        assert h.write([Reading("supply_air_c", 120.0, 18.5, "degC", seq=2)]) == 0
    with open_historian(postgres_url) as again:  # a second open migrates nothing
        assert len(again.audit()) == 2
    with psycopg.connect(postgres_url, autocommit=True) as raw:
        kept = raw.execute("SELECT count(*) FROM readings").fetchone()
        moved = raw.execute("SELECT count(*) FROM readings_duplicates").fetchone()
        version = raw.execute("SELECT version FROM twinloop_schema").fetchall()
    assert kept is not None and moved is not None
    assert (kept[0], moved[0]) == (3, 2) and version == [(SCHEMA_VERSION,)]

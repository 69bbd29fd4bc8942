"""The historian's contract on both backends (SQLite, and a real PostgreSQL server), and
what is particular to each."""

from __future__ import annotations

import math
import multiprocessing
import sqlite3
from pathlib import Path

import pandas as pd
import pytest

from connectors.historian import (
    AlarmLogChangedError,
    AlarmRecord,
    AuditRecord,
    Event,
    Historian,
    HistorianError,
    HistorianStore,
    Reading,
    open_historian,
)


@pytest.fixture(params=["sqlite", "postgres"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a historian lives: a SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "h.sqlite")
    return str(request.getfixturevalue("postgres_url"))


def _fill(h: HistorianStore) -> None:
    h.write(
        [
            Reading("supply_air_c", 0.0, 18.0, "degC", seq=1),
            Reading("supply_air_c", 60.0, 18.5, "degC", seq=2),
            Reading("facility_power_kw", 0.0, 1400.0, "kW", seq=1),
            Reading("facility_power_kw", 60.0, math.nan, "kW", quality="bad", seq=2),
            Reading("ctl.supply_air_c", 30.0, 19.0, "degC"),
        ]
    )


def test_write_latest_series_points(location: str) -> None:
    with open_historian(location) as h:
        assert isinstance(h, HistorianStore)
        _fill(h)
        latest = h.latest()
        assert latest["supply_air_c"] == Reading("supply_air_c", 60.0, 18.5, "degC", seq=2)
        assert latest["facility_power_kw"].quality == "bad"
        assert math.isnan(latest["facility_power_kw"].value)
        assert set(h.latest(["ctl.supply_air_c"])) == {"ctl.supply_air_c"}
        # An older sample written late does not replace the latest.
        h.write([Reading("supply_air_c", 10.0, 99.0, "degC")])
        assert h.latest(["supply_air_c"])["supply_air_c"].value == 18.5
        frame = h.series(["supply_air_c", "facility_power_kw"], until_s=60.0)
        assert list(frame.columns) == ["supply_air_c", "facility_power_kw"]
        assert frame.index.name == "time_s"
        assert list(frame.index) == [0.0, 10.0, 60.0]
        assert frame["supply_air_c"].tolist()[2] == 18.5
        assert math.isnan(frame["facility_power_kw"].tolist()[1])
        assert list(h.series(["supply_air_c"], since_s=30.0).index) == [60.0]
        assert h.series(["nothing"]).empty
        assert h.points() == ["ctl.supply_air_c", "facility_power_kw", "supply_air_c"]
        assert h.points("ctl.") == ["ctl.supply_air_c"]
        assert h.points("supply_") == ["supply_air_c"]  # '_' is not a LIKE wildcard here


def test_events_newest_first(location: str) -> None:
    with open_historian(location) as h:
        for i in range(5):
            h.add_event(Event(float(i), "watchdog", "trip", f"e{i}"))
        assert [e.message for e in h.events(limit=3)] == ["e4", "e3", "e2"]
        assert [e.message for e in h.events(since_s=3.0)] == ["e4", "e3"]
        assert len(h.events(limit=-1)) == 5  # a negative limit: no limit (SQLite's reading)
        assert h.events(limit=0) == []


def test_latest_is_ordered_by_point(location: str) -> None:
    with open_historian(location) as h:
        h.write([Reading(p, 0.0, 1.0) for p in ("b_x", "B", "a.y", "_z", "a")])
        assert list(h.latest()) == ["B", "_z", "a", "a.y", "b_x"]  # code-point order
        h.add_audit(AuditRecord(1.0, "c1", "f", 1.0, 2.0, "a", "published"))
        assert len(h.audit(limit=-1)) == 1


def test_audit_is_append_only(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite"
    with Historian(path) as h:
        h.add_audit(AuditRecord(1.0, "c1", "supply_air_c", 19.0, 61.0, "controller", "published"))
        h.add_audit(AuditRecord(2.0, "c2", "supply_air_c", 30.0, 62.0, "ingest", "refused", "0x87"))
        assert [a.command_id for a in h.audit()] == ["c2", "c1"]
        with pytest.raises(HistorianError, match="outcome"):
            AuditRecord(1.0, "c", "f", 1.0, 2.0, "a", "maybe")
    raw = sqlite3.connect(path)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        raw.execute("UPDATE audit SET outcome = 'published' WHERE command_id = 'c2'")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        raw.execute("DELETE FROM audit")
    raw.close()
    with Historian(path, readonly=True) as h:
        assert len(h.audit()) == 2


def test_invalid_records_are_refused() -> None:
    with pytest.raises(HistorianError, match="point"):
        Reading("", 0.0, 1.0)
    with pytest.raises(HistorianError, match="time_s"):
        Reading("p", math.inf, 1.0)
    with pytest.raises(HistorianError, match="finite value"):
        Reading("p", 0.0, math.nan)
    with pytest.raises(HistorianError, match="time_s"):
        Event(math.nan, "s", "k", "m")


def test_readonly_refuses_writes_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(HistorianError, match="does not exist"):
        Historian(tmp_path / "none.sqlite", readonly=True)
    Historian(tmp_path / "h.sqlite").close()
    with (
        Historian(tmp_path / "h.sqlite", readonly=True) as h,
        pytest.raises(HistorianError, match="read-only"),
    ):
        h.write([Reading("p", 0.0, 1.0)])
    h2 = Historian(tmp_path / "h.sqlite")
    h2.close()
    with pytest.raises(HistorianError, match="closed"):
        h2.latest()


def test_durability_settings(tmp_path: Path) -> None:
    with Historian(tmp_path / "h.sqlite") as h:
        assert h._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert h._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def _reader(path: str, queue: multiprocessing.Queue[object]) -> None:
    with open_historian(path, readonly=True) as h:
        queue.put({p: r.value for p, r in h.latest().items()})


def test_reader_in_another_process_sees_committed_writes(location: str) -> None:
    with open_historian(location) as h:
        _fill(h)
        ctx = multiprocessing.get_context("spawn")
        queue: multiprocessing.Queue[object] = ctx.Queue()
        proc = ctx.Process(target=_reader, args=(location, queue))
        proc.start()
        seen = queue.get(timeout=60)
        proc.join(timeout=30)
    assert isinstance(seen, dict)
    assert seen["supply_air_c"] == 18.5


def test_export_parquet_round_trip(location: str, tmp_path: Path) -> None:
    with open_historian(location) as h:
        _fill(h)
        out = h.export_parquet(tmp_path / "out" / "r.parquet", since_s=30.0)
    frame = pd.read_parquet(out)
    assert list(frame.columns) == ["point", "time_s", "value", "unit", "quality", "seq"]
    assert list(frame["time_s"]) == [30.0, 60.0, 60.0]
    assert set(frame["point"]) == {"ctl.supply_air_c", "supply_air_c", "facility_power_kw"}
    assert not list((tmp_path / "out").glob(".*tmp"))


def test_unusable_stores_are_refused_when_opened(tmp_path: Path) -> None:
    """Issue 17, finding 8: a corrupt file, or one that refuses writes, is one
    HistorianError at open, not a store that fails at every write."""
    import shutil
    import subprocess

    corrupt = tmp_path / "corrupt.sqlite"
    corrupt.write_bytes(b"not a database" * 300)
    for readonly in (False, True):
        with pytest.raises(HistorianError, match=r"cannot open historian .*not a database"):
            Historian(corrupt, readonly=readonly)
    frozen = tmp_path / "frozen.sqlite"
    Historian(frozen).close()
    chattr = shutil.which("chattr")
    if chattr is None or subprocess.run([chattr, "+i", str(frozen)], check=False).returncode:
        pytest.skip("chattr +i (an immutable file) needs root and a file system that has it")
    try:
        with pytest.raises(HistorianError, match="readonly database"):
            Historian(frozen)
        with Historian(frozen, readonly=True) as reader:  # reading it is still fine
            assert reader.points() == []
    finally:
        subprocess.run([chattr, "-i", str(frozen)], check=True)


def test_alarm_log_is_kept_in_order_and_append_only(location: str) -> None:
    raised = AlarmRecord(10.0, "inlet:rack_inlet_c.2.07", "raise", "high", "28.4 °C", "engine", 1.0)
    shelf = AlarmRecord(20.0, "feed", "shelve", "critical", "BMS work", "olga", 2.0, until_s=3620.0)
    with open_historian(location) as h:
        h.add_alarm_records([raised, shelf])
        h.add_alarm_records([AlarmRecord(30.0, "feed", "ack", "critical", "", "olga", 3.0)])
        assert h.alarm_records()[:2] == [raised, shelf]
        assert [r.action for r in h.alarm_records(newest_first=True, limit=2)] == ["ack", "shelve"]
        assert h.alarm_records(key="inlet:rack_inlet_c.2.07") == [raised]
    with open_historian(location, readonly=True) as h:
        assert len(h.alarm_records()) == 3
        with pytest.raises(HistorianError, match="read-only"):
            h.add_alarm_records([raised])
    for sql in ("UPDATE alarm_log SET actor = 'nobody'", "DELETE FROM alarm_log"):
        if location.startswith("postgresql://"):
            import psycopg

            refused = pytest.raises(psycopg.errors.RaiseException, match="alarm log is append")
            with psycopg.connect(location, autocommit=True) as pg, refused:
                pg.execute(sql)
        else:
            conn = sqlite3.connect(location)
            with pytest.raises(sqlite3.IntegrityError, match="alarm log is append-only"):
                conn.execute(sql)
            conn.close()


def _append_alarms(location: str, actor: str, n: int) -> None:
    """``n`` records, each appended only on the log as read (read again when it changed)."""
    with open_historian(location) as h:
        for i in range(n):
            while True:
                rows = len(h.alarm_records())
                record = AlarmRecord(float(i), "feed", "ack", "low", f"{rows}", actor, 1.0)
                try:
                    h.add_alarm_records([record], expect_rows=rows)
                    break
                except AlarmLogChangedError:
                    continue


def test_alarm_log_appends_only_on_the_log_as_read_from_two_processes(location: str) -> None:
    with open_historian(location) as first, open_historian(location) as second:
        first.add_alarm_records([AlarmRecord(1.0, "feed", "raise", "critical", "", "e", 1.0)])
        rows = len(first.alarm_records())
        second.add_alarm_records([AlarmRecord(2.0, "feed", "ack", "critical", "", "olga", 2.0)])
        late = AlarmRecord(3.0, "feed", "clear", "critical", "", "e", 3.0)
        with pytest.raises(AlarmLogChangedError, match="holds 2 records, not the 1 read"):
            first.add_alarm_records([late], expect_rows=rows)
        assert [r.action for r in second.alarm_records()] == ["raise", "ack"]  # nothing added
        first.add_alarm_records([late], expect_rows=2)
    # Two writing processes at once: every record lands, each on the log its writer read
    # (its message: the rows it saw), none lost to a lock.
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_append_alarms, args=(location, who, 40)) for who in "ab"]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=120)
        assert proc.exitcode == 0
    with open_historian(location, readonly=True) as h:
        log = h.alarm_records()
    assert len(log) == 3 + 80
    assert [int(r.message) for r in log[3:]] == list(range(3, 83))


def test_alarm_records_refuse_what_the_model_does_not_know() -> None:
    with pytest.raises(HistorianError, match="severity 'urgent'"):
        AlarmRecord(1.0, "feed", "raise", "urgent", "", "engine", 1.0)
    with pytest.raises(HistorianError, match="action 'snooze'"):
        AlarmRecord(1.0, "feed", "snooze", "low", "", "engine", 1.0)
    with pytest.raises(HistorianError, match="until_s"):
        AlarmRecord(1.0, "feed", "shelve", "low", "why", "olga", 1.0)
    with pytest.raises(HistorianError, match="until_s"):
        AlarmRecord(1.0, "feed", "ack", "low", "", "olga", 1.0, until_s=5.0)
    with pytest.raises(HistorianError, match="key and actor"):
        AlarmRecord(1.0, "", "ack", "low", "", "olga", 1.0)

"""What is particular to the PostgreSQL historian, on a real server (the shared contract is in
test_historian.py, run on both backends)."""

from __future__ import annotations

import math
import multiprocessing
from pathlib import Path

import psycopg
import pytest

from connectors.historian import (
    AuditRecord,
    Historian,
    HistorianError,
    HistorianStore,
    Reading,
    open_historian,
)
from connectors.historian_pg import PostgresHistorian, redacted


def test_open_historian_picks_the_backend(postgres_url: str, tmp_path: Path) -> None:
    with open_historian(postgres_url) as pg, open_historian(tmp_path / "h.sqlite") as lite:
        assert isinstance(pg, PostgresHistorian) and isinstance(pg, HistorianStore)
        assert isinstance(lite, Historian)


def test_audit_is_append_only_even_for_raw_sql(postgres_url: str) -> None:
    with PostgresHistorian(postgres_url) as h:
        h.add_audit(AuditRecord(1.0, "c1", "supply_air_c", 19.0, 61.0, "controller", "published"))
        h.add_audit(AuditRecord(2.0, "c2", "supply_air_c", math.nan, 62.0, "ingest", "refused"))
        assert [a.command_id for a in h.audit()] == ["c2", "c1"]
        assert math.isnan(h.audit()[0].value)
    with psycopg.connect(postgres_url, autocommit=True) as raw:
        for sql in (
            "UPDATE audit SET outcome = 'published' WHERE command_id = 'c2'",
            "DELETE FROM audit",
            "TRUNCATE audit",
        ):
            with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
                raw.execute(sql)
    with PostgresHistorian(postgres_url, readonly=True) as h:
        assert len(h.audit()) == 2


def test_readonly_and_closed_are_refused(postgres_url: str) -> None:
    with pytest.raises(HistorianError, match="no TwinLoop tables yet"):
        PostgresHistorian(postgres_url, readonly=True)
    PostgresHistorian(postgres_url).close()
    with (
        PostgresHistorian(postgres_url, readonly=True) as h,
        pytest.raises(HistorianError, match="read-only"),
    ):
        h.write([Reading("p", 0.0, 1.0)])
    h2 = PostgresHistorian(postgres_url)
    h2.close()
    with pytest.raises(HistorianError, match="closed"):
        h2.latest()


def test_a_bad_address_is_named_without_its_password(postgres_admin_url: str) -> None:
    port = postgres_admin_url.rsplit(":", 1)[1].split("/")[0]
    url = f"postgresql://twinloop:s3cret@127.0.0.1:{port}/no_such_db"
    with pytest.raises(HistorianError) as info:
        PostgresHistorian(url, connect_timeout_s=5)
    assert "no_such_db" in str(info.value) and "s3cret" not in str(info.value)
    assert redacted(url) == f"postgresql://twinloop:***@127.0.0.1:{port}/no_such_db"


def _writer(url: str, worker: int, n: int) -> None:
    with PostgresHistorian(url) as h:
        for k in range(n):
            h.write([Reading(f"w{worker}", float(k), float(k), "degC", seq=k + 1)])


def test_several_processes_write_at_once(postgres_url: str) -> None:
    PostgresHistorian(postgres_url).close()  # schema first
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(postgres_url, w, 50)) for w in range(3)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=120)
        assert proc.exitcode == 0
    with PostgresHistorian(postgres_url, readonly=True) as h:
        frame = h.series(["w0", "w1", "w2"])
        assert frame.shape == (50, 3) and frame.notna().all().all()
        assert {p: r.seq for p, r in h.latest().items()} == {"w0": 50, "w1": 50, "w2": 50}


def test_the_historian_reconnects_after_the_server_drops_it() -> None:
    """A server restart drops every connection: the next read is retried on a new one, a
    write whose BEGIN found the connection dead too; a server that is down is the
    historian's own error, and the historian works again once it is back."""
    import tempfile

    from tests.connectors.pg_server import postgres_bin, running_server

    if postgres_bin() is None:
        pytest.skip("PostgreSQL is not installed (/usr/lib/postgresql)")
    with (
        running_server(Path(tempfile.mkdtemp(prefix="twinloop-pg-"))) as server,
        PostgresHistorian(server.url) as h,
        PostgresHistorian(server.url, readonly=True) as ro,
    ):
        h.write([Reading("p", 0.0, 1.0, "degC", seq=1)])
        assert ro.latest()["p"].seq == 1
        server.restart()
        assert ro.latest()["p"].seq == 1 and ro.reconnects == 1
        assert h.write([Reading("p", 60.0, 2.0, "degC", seq=2)]) == 1
        assert h.reconnects == 1
        server.stop(fast=True)
        with pytest.raises(HistorianError, match="historian"):
            ro.latest()
        with pytest.raises(HistorianError, match="historian"):
            h.write([Reading("p", 120.0, 3.0, "degC", seq=3)])
        with pytest.raises(HistorianError, match="historian"):
            h.add_audit(AuditRecord(1.0, "c", "supply_air_c", 19.0, 61.0, "x", "published"))
        server.start()
        assert h.write([Reading("p", 120.0, 3.0, "degC", seq=3)]) == 1
        assert ro.series(["p"])["p"].tolist() == [1.0, 2.0, 3.0]
        assert ro.latest()["p"].seq == 3
        assert h.reconnects == 2 and ro.reconnects == 2

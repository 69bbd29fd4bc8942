"""``twinloop broker``, ``emulate`` and ``ingest`` run as processes, as a user runs them."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from connectors.broker import BrokerAddress, mosquitto_available
from connectors.historian import Historian
from tests.twinloop.cli_process import one_error_line
from twinloop.cli import main

needs_mosquitto = pytest.mark.skipif(
    not mosquitto_available(), reason="Mosquitto is not installed (/usr/sbin/mosquitto)"
)


def _spawn(*args: str, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "twinloop.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
    )


def _read_until(proc: subprocess.Popen[str], marker: str, timeout_s: float = 60.0) -> list[str]:
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if marker in line:
            return lines
    raise AssertionError(
        f"no {marker!r} in output: {lines}; stderr: {proc.stderr and proc.stderr.read()}"
    )


def _mosquitto_pids(folder: Path) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if "mosquitto" in cmdline and str(folder) in cmdline:
                pids.append(int(entry.name))
    return pids


@pytest.mark.integration
@needs_mosquitto
def test_broker_runs_in_foreground_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    folder = tmp_path / "broker"
    proc = _spawn("broker", "--dir", str(folder), cwd=tmp_path)
    try:
        lines = _read_until(proc, "Ctrl-C")
        assert lines[0].startswith("mosquitto running: mqtt://127.0.0.1:")
        assert any(str(folder / "credentials.json") in line for line in lines)
        address = BrokerAddress.from_credentials(folder / "credentials.json", "dashboard")
        with socket.create_connection((address.host, address.port), timeout=5):
            pass
        assert _mosquitto_pids(folder)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "mosquitto stopped" in out
    assert _mosquitto_pids(folder) == []


@pytest.mark.integration
@pytest.mark.slow
@needs_mosquitto
@pytest.mark.parametrize("workers", [1, 2])
def test_emulate_and_ingest_against_the_broker(tmp_path: Path, workers: int) -> None:
    folder = tmp_path / "broker"
    # The broker's ACLs name the site: its identities touch no other site's topics.
    broker = _spawn("broker", "--dir", str(folder), "--site", "hall9", cwd=tmp_path)
    procs = [broker]
    try:
        _read_until(broker, "Ctrl-C")
        creds = str(folder / "credentials.json")
        historian = tmp_path / "h.sqlite"
        ingest = _spawn(
            "ingest",
            "--credentials",
            creds,
            "--historian",
            str(historian),
            "--site",
            "hall9",
            "--workers",
            str(workers),
            cwd=tmp_path,
        )
        procs.append(ingest)
        _read_until(ingest, "ingesting")
        emulate = _spawn(
            "emulate",
            "--credentials",
            creds,
            "--scenario",
            "chiller-trip",
            "--site",
            "hall9",
            "--speed",
            "600",
            cwd=tmp_path,
        )
        procs.append(emulate)
        _read_until(emulate, "BMS emulator", timeout_s=90)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if historian.exists():
                with Historian(historian, readonly=True) as h:
                    if "facility_power_kw" in h.latest():
                        break
            time.sleep(0.5)
        else:
            raise AssertionError("no readings reached the historian")
        for proc in (emulate, ingest):
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=30)
            assert proc.returncode == 0, err
        stats = json.loads(out.strip().splitlines()[-1])
        assert stats["written"] > 0 and stats["rejected_total"] == 0
        if workers > 1:  # every point of the emulator is in one worker's share
            with Historian(historian, readonly=True) as h:
                stored = set(h.latest())
            assert stats["workers"] == workers and len(stored) >= 140
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def _main_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """Run ``twinloop`` in-process; it must fail with exit 2 and one error line."""
    assert main(list(argv)) == 2
    return one_error_line(capsys.readouterr().err)


def test_broker_bad_dir_is_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    assert "not a folder" in _main_error(capsys, "broker", "--dir", str(not_a_dir))


@needs_mosquitto
def test_broker_port_in_use_is_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        line = _main_error(capsys, "broker", "--dir", str(tmp_path / "b"), "--port", str(port))
    assert "mosquitto exited" in line


def test_ingest_unknown_identity_is_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    creds = tmp_path / "credentials.json"
    creds.write_text(
        json.dumps(
            {"host": "127.0.0.1", "port": 1, "tls_port": 2, "ca_file": "x", "users": {"bms": "p"}}
        )
    )
    line = _main_error(
        capsys, "ingest", "--credentials", str(creds), "--historian", str(tmp_path / "h.sqlite")
    )
    assert "no identity 'ingest'" in line
    assert os.listdir(tmp_path) == ["credentials.json"]  # nothing created


def test_ingest_refuses_an_unusable_historian_and_bad_numbers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 17, findings 8 and 9: one line and exit 2, never a traceback or a service that
    says it is connected while it drops every reading."""
    corrupt = tmp_path / "corrupt.sqlite"
    corrupt.write_bytes(b"\x00garbage" * 512)
    line = _main_error(capsys, "ingest", "--historian", str(corrupt), "--port", "1883")
    assert "cannot open historian" in line and "not a database" in line
    line = _main_error(
        capsys, "ingest", "--historian", str(tmp_path / "h.sqlite"), "--port", "99999999999"
    )
    assert "port" in line
    line = _main_error(
        capsys, "ingest", "--historian", str(tmp_path / "h.sqlite"), "--workers", "9" * 30
    )
    assert "--workers" in line

"""``twinloop dashboard`` and ``twinloop dashboard users``: users added from stdin, errors
as one line with status 2, and the server run as a user runs it (a real process on a free
loopback port, stopped with Ctrl-C)."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from connectors.historian import Historian, Reading
from dashboards.auth import UserStore
from tests.twinloop.cli_process import one_error_line
from twinloop.cli import main


def _run(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, stdin: str, *args: str
) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    status = main(["dashboard", *args])
    out, err = capsys.readouterr()
    return status, out, err


def test_users_add_and_list(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    users = tmp_path / "home" / "users.json"
    status, out, _ = _run(
        capsys,
        monkeypatch,
        "olga-password\n",
        "users",
        "add",
        "olga",
        "--role",
        "operator",
        "--password-stdin",
        "--users",
        str(users),
    )
    assert status == 0 and out.splitlines()[0] == f"olga (operator) in {users}"
    # A file the demo does not read is said so, with the one it reads.
    assert "note: twinloop demo reads" in out and "--users" in out
    assert UserStore(users).authenticate("olga", "olga-password").role == "operator"
    assert "olga-password" not in users.read_text()
    # --users before the subcommand works too; TWINLOOP_HOME is the default home.
    status, out, _ = _run(
        capsys,
        monkeypatch,
        "victor-password\n",
        "--users",
        str(users),
        "users",
        "add",
        "victor",
        "--role",
        "viewer",
        "--password-stdin",
    )
    assert status == 0
    monkeypatch.setenv("TWINLOOP_HOME", str(tmp_path / "home2"))
    monkeypatch.delenv("TWINLOOP_DEMO_HOME", raising=False)
    status, out, _ = _run(
        capsys,
        monkeypatch,
        "third-password\n",
        "users",
        "add",
        "ann",
        "--role",
        "viewer",
        "--password-stdin",
    )
    assert status == 0 and (tmp_path / "home2" / "dashboard" / "users.json").is_file()
    # With TWINLOOP_HOME the demo reads the same file: no note.
    assert out.startswith("ann (viewer) in ") and "note:" not in out
    status, out, _ = _run(capsys, monkeypatch, "", "users", "list", "--users", str(users))
    assert status == 0
    assert [line.split()[:2] for line in out.splitlines()] == [
        ["olga", "operator"],
        ["victor", "viewer"],
    ]


@pytest.mark.parametrize(
    ("stdin", "args", "message"),
    [
        ("pw-long-enough\n", ["olga", "--role", "operator"], "already exists"),
        ("short\n", ["ann", "--role", "viewer"], "at least 8 characters"),
        ("pw-long-enough\n", ["a/b", "--role", "viewer"], "bad user name 'a/b'"),
    ],
)
def test_users_add_errors_are_one_line(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    stdin: str,
    args: list[str],
    message: str,
) -> None:
    users = tmp_path / "users.json"
    UserStore(users).add("olga", "olga-password", "operator")
    before = users.read_bytes()
    status, out, err = _run(
        capsys,
        monkeypatch,
        stdin,
        "users",
        "add",
        *args,
        "--password-stdin",
        "--users",
        str(users),
    )
    assert status == 2 and out == "" and message in one_error_line(err)
    assert users.read_bytes() == before


def test_serve_errors_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    status, _, err = _run(capsys, monkeypatch, "", "--reservoir", str(tmp_path))
    assert status == 2
    assert one_error_line(err) == (
        "twinloop: error: twinloop dashboard needs --historian PATH and --reservoir ROOT"
    )
    users = tmp_path / "users.json"
    status, _, err = _run(
        capsys, monkeypatch, "", "--historian", "h", "--reservoir", "r", "--users", str(users)
    )
    assert status == 2 and f"no users in {users}: add one with" in one_error_line(err)
    UserStore(users).add("olga", "olga-password-1", "operator")
    serve = ("--historian", "h", "--reservoir", "r", "--users", str(users))
    status, _, err = _run(capsys, monkeypatch, "", *serve, "--time-zone", "Mars/Olympus")
    assert status == 2 and "unknown time zone 'Mars/Olympus'" in one_error_line(err)
    status, _, err = _run(
        capsys, monkeypatch, "", *serve, "--scenario", "x", "--time-zone", "Europe/Berlin"
    )
    assert status == 2 and "--time-zone is for a real site" in one_error_line(err)


@pytest.mark.integration
def test_serve_prints_its_address_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    with Historian(tmp_path / "historian.sqlite") as hist:
        hist.write([Reading("supply_air_c", 1000.0, 20.5, "degC")])
    # No reservoir yet (the demo fills one while the dashboard runs): a note, not an error.
    users = tmp_path / "users.json"
    UserStore(users).add("olga", "olga-password", "operator")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "twinloop.cli",
            "dashboard",
            "--historian",
            str(tmp_path / "historian.sqlite"),
            "--reservoir",
            str(tmp_path / "reservoir"),
            "--users",
            str(users),
            "--port",
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("dashboard at http://127.0.0.1:") and line.endswith(
            "/ (Ctrl-C stops)\n"
        ), line
        url = line.split()[2]
        # Outside any `except HTTPError`: an error status from the login page fails the test.
        with urllib.request.urlopen(url + "login", timeout=10) as response:
            assert response.status == 200 and b'id="login-submit"' in response.read()
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url + "_dash-layout", timeout=10)
        assert refused.value.code == 401
        assert json.loads(refused.value.read()) == {"error": "log in first"}
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "dashboard stopped" in err and "GET /login" not in err  # no per-request log
    assert f"note: no reservoir at {tmp_path / 'reservoir'} yet" in err
    assert "note: no historian" not in err
    secret = tmp_path / "session.secret"
    assert secret.is_file() and os.stat(secret).st_mode & 0o777 == 0o600

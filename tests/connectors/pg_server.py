"""A throwaway PostgreSQL server on loopback for the historian's tests (a real server, started
as a process and stopped after; as the ``postgres`` user when the tests run as root, since
PostgreSQL refuses to run as root)."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg

from connectors.broker import free_port


def postgres_bin() -> Path | None:
    """The newest PostgreSQL server binaries installed (Debian layout), or None."""
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/postgres"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    return versions[-1].parent if versions else None


def _as_server_user(cmd: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return cmd
    return ["runuser", "-u", "postgres", "--", *cmd]


class PgServer:
    """One cluster in ``folder`` (made by :meth:`init`), run as a process; :meth:`restart`
    drops every connection (a fast shutdown) and starts it again on the same port."""

    def __init__(self, folder: Path) -> None:
        bin_dir = postgres_bin()
        if bin_dir is None:
            raise FileNotFoundError("PostgreSQL is not installed (scripts/setup.sh installs it)")
        self.bin_dir = bin_dir
        self.folder = folder
        self.data, self.sockets = folder / "data", folder / "sockets"
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"postgresql://twinloop@127.0.0.1:{self.port}/postgres"

    def init(self) -> PgServer:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.sockets.mkdir(exist_ok=True)
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            for path in (self.folder, self.sockets):
                os.chown(path, user.pw_uid, user.pw_gid)
        initdb = [str(self.bin_dir / "initdb"), "-D", str(self.data), "-U", "twinloop"]
        subprocess.run(
            _as_server_user([*initdb, "--auth=trust", "-E", "UTF8"]),
            check=True,
            capture_output=True,
        )
        self.port = free_port()
        return self

    def start(self) -> PgServer:
        self.proc = subprocess.Popen(
            _as_server_user(
                [
                    str(self.bin_dir / "postgres"),
                    *("-D", str(self.data), "-p", str(self.port), "-k", str(self.sockets)),
                    *("-c", "listen_addresses=127.0.0.1", "-c", "fsync=on"),
                ]
            ),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 30.0
        while True:
            try:
                psycopg.connect(self.url, connect_timeout=2).close()
                return self
            except psycopg.OperationalError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    err = (
                        self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                    )
                    raise RuntimeError(f"PostgreSQL did not start: {err[-500:]}") from None
                time.sleep(0.2)

    def stop(self, *, fast: bool = False) -> None:
        """SIGTERM (smart: waits for the sessions to end) or SIGINT (fast: ends them)."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        # To the postmaster itself: runuser (as root) does not pass every signal on.
        pid_file = self.data / "postmaster.pid"
        try:
            pid = int(pid_file.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            pid = proc.pid
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGINT if fast else signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr:
            proc.stderr.close()

    def restart(self) -> None:
        """Drop every connection and start again (same port, same data)."""
        self.stop(fast=True)
        self.start()


@contextlib.contextmanager
def running_postgres(folder: Path) -> Iterator[str]:
    """Start a cluster in ``folder``; yield the admin URL; stop it and wait for the process."""
    with running_server(folder) as server:
        yield server.url


@contextlib.contextmanager
def running_server(folder: Path) -> Iterator[PgServer]:
    """A started :class:`PgServer` in ``folder``, stopped and removed after."""
    server = PgServer(folder).init()
    try:
        yield server.start()
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)

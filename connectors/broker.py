"""Where a broker is (:class:`BrokerAddress`) and a Mosquitto broker TwinLoop runs itself.

``MosquittoBroker(folder)`` writes a configuration into ``folder`` and runs
``/usr/sbin/mosquitto`` on loopback::

    <folder>/mosquitto.conf     generated config (see below)
    <folder>/credentials.json   one identity per service: host, ports, passwords (mode 0600)
    <folder>/passwd             hashed passwords (mosquitto_passwd -U)
    <folder>/acl                least-privilege ACLs
    <folder>/tls/               generated test CA, server certificate and key
    <folder>/data/              persistence (mosquitto.db)
    <folder>/mosquitto.log

No anonymous access; one identity per process, and the broker binds each connection's client
id to its user name (``use_username_as_clientid``), so no identity can take over another's
persistent session whatever client id it asks for, and two processes never share one:
``bms`` (the BMS gateway / emulator: publishes sensors, birth, status and its command
echoes, reads setpoints and the override, may set the override; ``bms.0`` … ``bms.3`` have
the same rights, one per process of a gateway that publishes from several), ``operator`` (the BMS's
operator panel: sets the override), ``ingest`` (``twinloop ingest``), ``ingest.0`` …
``ingest.3`` (the workers of ``twinloop ingest --workers``), ``serve-ingest`` (``twinloop
serve``'s ingestion; these read sensors, birth, status and override and write nothing),
``controller`` (the setpoint writer: writes only the allow-listed setpoint topics, reads the
rest and the BMS's echoes), ``override`` (``serve``'s override monitor, read-only) and
``dashboard`` (read-only, echoes included). With ``sites`` given, every topic rule names
those sites only, so an identity touches no other site's topics. A second
listener speaks TLS with the generated CA.

Persistence is on and saved every :data:`AUTOSAVE_INTERVAL_S` seconds (``autosave_on_changes
false``, ``autosave_interval 5``), not on every change: a save per change costs a full
database write per QoS 1 delivery and caps the broker at a few hundred messages a second.
The durability of what matters does not rest on the broker's saves: the setpoint writer
re-sends every command until the BMS echoes it (:mod:`connectors.setpoint_writer`), and
ingestion acknowledges a reading only once it is stored (:mod:`connectors.ingestion`). What
a SIGKILLed broker can lose is what it acknowledged to a publisher in the last interval and
had not yet delivered (sensor readings, which ingestion then counts as gaps).
``autosave_on_changes=True`` gives the save on every change back.

A user with their own broker skips all this and gives a :class:`BrokerAddress`.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import Any

from connectors.tls import TlsFiles, generate_test_pki
from connectors.topics import (
    ACKS,
    BIRTH,
    DEFAULT_PREFIX,
    OVERRIDE,
    SENSORS,
    SETPOINTS,
    STATUS,
    Topics,
)
from physics.plant.site_control import SETPOINT_FIELDS
from twinloop.errors import TwinLoopError

logger = logging.getLogger(__name__)

MOSQUITTO = "/usr/sbin/mosquitto"
MOSQUITTO_PASSWD = "/usr/bin/mosquitto_passwd"
POOL_IDENTITIES: tuple[str, ...] = ("ingest.0", "ingest.1", "ingest.2", "ingest.3")
"""One identity per worker of an ingestion pool (the broker binds client id to user)."""
GATEWAY_IDENTITIES: tuple[str, ...] = ("bms.0", "bms.1", "bms.2", "bms.3")
"""One identity per process of a BMS gateway that publishes from several processes; each
has ``bms``'s rights. Processes sharing ``bms`` would take over each other's session."""
IDENTITIES: tuple[str, ...] = (
    "bms",
    *GATEWAY_IDENTITIES,
    "operator",
    "ingest",
    *POOL_IDENTITIES,
    "serve-ingest",
    "controller",
    "override",
    "dashboard",
)
READERS: tuple[str, ...] = ("ingest", *POOL_IDENTITIES, "serve-ingest", "override")
"""Identities that read the plant's topics and write nothing."""
CREDENTIALS_FILE = "credentials.json"
MESSAGE_SIZE_LIMIT = 16 * 1024
"""Largest payload the generated broker accepts (bytes)."""
MAX_QUEUED_BYTES = 64 * 1024 * 1024
"""Most bytes the generated broker queues for one client."""
AUTOSAVE_INTERVAL_S = 5
"""Seconds between the generated broker's saves of its persistence database."""


class BrokerError(RuntimeError, TwinLoopError):
    """The broker could not be configured, started or reached."""


@dataclass(frozen=True)
class BrokerAddress:
    """How a client reaches a broker: host, port, identity and (optionally) TLS."""

    host: str = "127.0.0.1"
    port: int = 1883
    username: str | None = None
    password: str | None = None
    ca_file: Path | None = None
    """CA certificate to verify the broker with; None for a plain TCP connection."""
    keepalive_s: int = 30

    def __post_init__(self) -> None:
        if not self.host:
            raise ValueError("broker host must not be empty")
        if not 0 < self.port < 65536:
            raise ValueError(f"broker port {self.port} is not in 1..65535")
        if self.password is not None and self.username is None:
            raise ValueError("a broker password needs a username")
        if self.keepalive_s < 5:
            raise ValueError("keepalive_s must be at least 5 s")

    @property
    def tls(self) -> bool:
        return self.ca_file is not None

    def __str__(self) -> str:
        scheme = "mqtts" if self.tls else "mqtt"
        user = f"{self.username}@" if self.username else ""
        return f"{scheme}://{user}{self.host}:{self.port}"

    @classmethod
    def from_credentials(
        cls, path: str | Path, identity: str, *, tls: bool = False
    ) -> BrokerAddress:
        """The address of ``identity`` from a ``credentials.json`` written by this module."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            users: Mapping[str, str] = data["users"]
            if identity not in users:
                raise BrokerError(
                    f"{path}: no identity {identity!r} (have: {', '.join(sorted(users))})"
                )
            port = int(data["tls_port"] if tls else data["port"])
            ca = Path(data["ca_file"]) if tls else None
            host = str(data["host"] if tls else data.get("plain_host", data["host"]))
            return cls(host, port, identity, str(users[identity]), ca)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise BrokerError(f"cannot read broker credentials {path}: {exc}") from exc


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` right now (bound to port 0, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def acl_text(
    prefix: str = DEFAULT_PREFIX,
    fields: Sequence[str] = SETPOINT_FIELDS,
    sites: Sequence[str] | None = None,
) -> str:
    """Mosquitto ACLs for :data:`IDENTITIES`: the topics of ``sites`` only (any site under
    ``prefix`` when None)."""
    roots = [f"{prefix}/{site}" for site in sites] if sites else [f"{prefix}/+"]

    def rules(*patterns: str) -> list[str]:
        return [f"topic {p.format(root=root)}" for root in roots for p in patterns]

    reads_plant = (
        f"read {{root}}/{SENSORS}/+",
        f"read {{root}}/{STATUS}",
        f"read {{root}}/{OVERRIDE}",
        f"read {{root}}/{BIRTH}",
    )
    gateway = rules(
        f"write {{root}}/{SENSORS}/+",
        f"readwrite {{root}}/{STATUS}",
        f"readwrite {{root}}/{OVERRIDE}",
        f"readwrite {{root}}/{BIRTH}",
        f"read {{root}}/{SETPOINTS}/+",
        f"write {{root}}/{ACKS}",
    )
    lines = ["# Generated by TwinLoop: one identity per process, least privilege, per site."]
    for name in ("bms", *GATEWAY_IDENTITIES):
        lines += [f"user {name}", *gateway, ""]
    lines += [
        "user operator",
        *rules(f"readwrite {{root}}/{OVERRIDE}", f"read {{root}}/{STATUS}"),
        "",
    ]
    for reader in READERS:
        lines += [f"user {reader}", *rules(*reads_plant), ""]
    lines += [
        "user controller",
        *rules(
            *reads_plant,
            *(f"readwrite {{root}}/{SETPOINTS}/{field}" for field in fields),
            f"read {{root}}/{ACKS}",
        ),
        "",
        "user dashboard",
        *rules(*reads_plant, f"read {{root}}/{SETPOINTS}/+", f"read {{root}}/{ACKS}"),
        "",
    ]
    return "\n".join(lines)


def _is_token(value: object) -> bool:
    """A password as this module makes them (``secrets.token_urlsafe``): nothing that could
    break a line of the password file."""
    return isinstance(value, str) and re.fullmatch(r"[A-Za-z0-9_-]{16,128}", value) is not None


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)


class MosquittoBroker:
    """Run Mosquitto with a generated, secured configuration (a context manager).

    ``port`` / ``tls_port`` of 0 pick free ports; an existing ``credentials.json`` in the
    folder is reused (same passwords and, unless given, same ports), so a restart keeps
    clients' addresses and the persisted sessions. The database is saved every
    ``autosave_interval_s`` (module docstring); ``autosave_on_changes=True`` saves it on
    every change instead.
    """

    def __init__(
        self,
        folder: str | Path,
        *,
        port: int = 0,
        tls_port: int = 0,
        host: str = "127.0.0.1",
        plain_host: str = "127.0.0.1",
        prefix: str = DEFAULT_PREFIX,
        sites: Sequence[str] | None = None,
        autosave_on_changes: bool = False,
        autosave_interval_s: int = AUTOSAVE_INTERVAL_S,
        max_queued_messages: int = 100_000,
        executable: str = MOSQUITTO,
        start_timeout_s: float = 10.0,
    ) -> None:
        self.folder = Path(folder).resolve()
        self.host = host
        self.plain_host = plain_host
        """Where the plaintext listener binds: loopback unless asked (``host`` is the TLS
        listener's)."""
        self.prefix = prefix
        self.sites = tuple(sites) if sites else None
        """The sites the ACLs name; None: any site under ``prefix``."""
        for site in self.sites or ():
            try:
                Topics(site, prefix)
            except ValueError as exc:
                raise BrokerError(str(exc)) from None
        self.autosave_on_changes = autosave_on_changes
        self.autosave_interval_s = autosave_interval_s
        self.max_queued_messages = max_queued_messages
        self.executable = executable
        self.start_timeout_s = start_timeout_s
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_fh: Any = None
        if not Path(executable).is_file():
            raise BrokerError(f"Mosquitto not found at {executable} (apt-get install mosquitto)")
        self.folder.mkdir(parents=True, exist_ok=True)
        previous = self._read_credentials()
        self.port = port or int(previous.get("port", 0)) or free_port(plain_host)
        self.tls_port = tls_port or int(previous.get("tls_port", 0)) or free_port(host)
        if self.port == self.tls_port:
            raise BrokerError("port and tls_port must differ")
        users = previous.get("users")
        known = users if isinstance(users, dict) else {}
        # Existing identities keep their passwords; identities added since get new ones.
        self.users: dict[str, str] = {
            name: known[name] if _is_token(known.get(name)) else secrets.token_urlsafe(18)
            for name in IDENTITIES
        }
        self.tls_files = TlsFiles(
            self.folder / "tls" / "ca.crt",
            self.folder / "tls" / "server.crt",
            self.folder / "tls" / "server.key",
        )
        self._configure()

    # ------------------------------------------------------------------ files
    @property
    def credentials_file(self) -> Path:
        return self.folder / CREDENTIALS_FILE

    @property
    def config_file(self) -> Path:
        return self.folder / "mosquitto.conf"

    @property
    def log_file(self) -> Path:
        return self.folder / "mosquitto.log"

    def _read_credentials(self) -> dict[str, Any]:
        path = self.folder / CREDENTIALS_FILE
        if not path.is_file():
            return {}
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise BrokerError(f"cannot read {path}: {exc}") from exc
        return data if isinstance(data, dict) else {}

    def _configure(self) -> None:
        if not self.tls_files.exist():
            generate_test_pki(self.tls_files.ca_file.parent)
        data_dir = self.folder / "data"
        data_dir.mkdir(exist_ok=True)
        passwd = self.folder / "passwd"
        _write_private(passwd, "".join(f"{u}:{p}\n" for u, p in self.users.items()))
        try:
            subprocess.run(
                [MOSQUITTO_PASSWD, "-U", str(passwd)], check=True, capture_output=True, timeout=30
            )
        except (OSError, subprocess.SubprocessError) as exc:
            passwd.unlink(missing_ok=True)
            raise BrokerError(f"mosquitto_passwd failed on {passwd}: {exc}") from exc
        _write_private(self.folder / "acl", acl_text(self.prefix, sites=self.sites))
        autosave = (
            "autosave_on_changes true\nautosave_interval 1\n"
            if self.autosave_on_changes
            else f"autosave_on_changes false\nautosave_interval {self.autosave_interval_s}\n"
        )
        conf = (
            "# Generated by TwinLoop (connectors.broker); regenerated on every start.\n"
            f"user {getpass.getuser()}\n"
            "per_listener_settings false\n"
            "allow_anonymous false\n"
            f"password_file {passwd}\n"
            f"acl_file {self.folder / 'acl'}\n"
            "persistence true\n"
            f"persistence_location {data_dir}/\n"
            f"{autosave}"
            f"max_queued_messages {self.max_queued_messages}\n"
            # Bounds on what one client can make the broker hold and save: no message over
            # 16 KiB (sensor payloads are at most 4 KiB), no more than 64 MiB queued for a
            # client, so a save on every change writes a bounded database.
            f"message_size_limit {MESSAGE_SIZE_LIMIT}\n"
            f"max_queued_bytes {MAX_QUEUED_BYTES}\n"
            "max_inflight_messages 100\n"
            # Small control packets (PUBACKs, setpoints) go out at once: with Nagle's
            # algorithm a second PUBACK waits for the client's delayed ACK (40 ms on Linux).
            "set_tcp_nodelay true\n"
            f"log_dest file {self.log_file}\n"
            "log_type error\nlog_type warning\nlog_type notice\n"
            "connection_messages true\n"
            # The client id is the user name (a listener setting in Mosquitto 2): no identity
            # can take over another's persistent session, whatever client id it asks for.
            f"listener {self.port} {self.plain_host}\n"
            "use_username_as_clientid true\n"
            f"listener {self.tls_port} {self.host}\n"
            "use_username_as_clientid true\n"
            f"cafile {self.tls_files.ca_file}\n"
            f"certfile {self.tls_files.cert_file}\n"
            f"keyfile {self.tls_files.key_file}\n"
            "tls_version tlsv1.2\n"
        )
        self.config_file.write_text(conf, encoding="utf-8")
        creds = {
            "host": self.host,
            "plain_host": self.plain_host,
            "port": self.port,
            "tls_port": self.tls_port,
            "ca_file": str(self.tls_files.ca_file),
            "users": self.users,
        }
        _write_private(self.credentials_file, json.dumps(creds, indent=2) + "\n")

    # ------------------------------------------------------------------ addresses
    def address(self, identity: str, *, tls: bool = False) -> BrokerAddress:
        """Where ``identity`` connects (plain or TLS listener)."""
        if identity not in self.users:
            raise BrokerError(f"unknown identity {identity!r}; have {', '.join(IDENTITIES)}")
        plain = BrokerAddress(self.plain_host, self.port, identity, self.users[identity])
        if not tls:
            return plain
        return replace(plain, host=self.host, port=self.tls_port, ca_file=self.tls_files.ca_file)

    # ------------------------------------------------------------------ process
    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> MosquittoBroker:
        """Start the process and wait until both listeners accept connections."""
        if self.running:
            return self
        self._log_fh = open(self.log_file, "ab")  # noqa: SIM115 (closed in _reap)
        self.proc = subprocess.Popen(
            [self.executable, "-c", str(self.config_file)],
            stdout=self._log_fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + self.start_timeout_s
        pending = [(self.plain_host, self.port), (self.host, self.tls_port)]
        while pending:
            if self.proc.poll() is not None:
                code = self.proc.returncode
                self._reap()
                raise BrokerError(
                    f"mosquitto exited with code {code} at start; log {self.log_file}:\n"
                    + self.log_tail()
                )
            try:
                with socket.create_connection(pending[0], timeout=0.5):
                    pending.pop(0)
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise BrokerError(
                        f"mosquitto did not accept connections on {pending[0][0]}:{pending[0][1]} "
                        f"within {self.start_timeout_s:.0f} s; log {self.log_file}"
                    ) from None
                time.sleep(0.02)
        logger.info(
            "mosquitto %d on %s:%d (TLS %d)", self.proc.pid, self.host, self.port, self.tls_port
        )
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        """Terminate (SIGTERM: Mosquitto saves its database), then kill if it hangs."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                logger.warning("mosquitto %d ignored SIGTERM; killing it", self.proc.pid)
                self.proc.kill()
                self.proc.wait(timeout=timeout_s)
        self._reap()

    def kill(self) -> None:
        """SIGKILL the broker (no chance to save), as a crash would."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10.0)
        self._reap()

    def restart(self) -> MosquittoBroker:
        """Start again on the same ports with the same persistence (after stop or kill)."""
        self.stop()
        return self.start()

    def _reap(self) -> None:
        self.proc = None
        if self._log_fh is not None:
            with contextlib.suppress(OSError):
                self._log_fh.close()
            self._log_fh = None

    def takeovers(self) -> int:
        """Sessions taken over so far, from the broker's log: a connection that came with a
        connected client's id closed the older one ("already connected"). With client ids
        bound to identities, each is two processes sharing one identity."""
        try:
            text = self.log_file.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return 0
        return text.count("already connected, closing old connection")

    def log_tail(self, n_lines: int = 20) -> str:
        try:
            lines = self.log_file.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n_lines:])

    def __enter__(self) -> MosquittoBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def mosquitto_available() -> bool:
    """Whether the Mosquitto executables this module runs are installed."""
    return Path(MOSQUITTO).is_file() and shutil.which(MOSQUITTO_PASSWD) is not None

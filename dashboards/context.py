"""What every page reads from: the historian, the reservoir, the users file and the
server-side sessions of one app.

The historian is opened read-only once, when it first exists (the live loop may create it
after the dashboard starts), and shared by the server's threads (it guards its own
connection); a second, writable connection appends operators' answers to the alarm log, the
one table the dashboard writes. The alarms themselves are evaluated by the live service
(:mod:`control.alarm_loop`), never here. The reservoir is opened per request: its SQLite
connection belongs to the thread that made it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from connectors.historian import Historian, HistorianError
from control.alarms import EVALUATED_POINT, AlarmState, FeedWatch, alarm_states
from control.reservoir import Reservoir, ReservoirError
from dashboards.auth import DEFAULT_SESSION_S, UserStore
from dashboards.session_store import DEFAULT_IDLE_S, SESSIONS_FILE, SessionStore
from dashboards.site_time import SiteClock
from twinloop.errors import TwinLoopError


class DataUnavailableError(TwinLoopError, RuntimeError):
    """The historian or the reservoir cannot be read (yet); the message says which and why."""


@dataclass(frozen=True)
class DashboardConfig:
    """Where the app's data lives and how it behaves."""

    historian_path: Path
    reservoir_root: Path
    users_file: Path
    secret_file: Path
    session_ttl_s: float = DEFAULT_SESSION_S
    """A session ends this long after login at the latest."""
    session_idle_s: float = DEFAULT_IDLE_S
    """... or after this long without a request from it."""
    sessions_file: Path | None = None
    """The server-side sessions (SQLite); default: ``sessions.sqlite`` beside the users file."""
    max_reason_chars: int = 500
    """The longest reason an operator may give (it is kept in the audit log for good)."""
    refresh_s: float = 5.0
    """How often the live pages poll the historian."""
    stale_after_s: float = 900.0
    """A point whose newest reading is this much older than the hall's newest is stale."""
    feed_silent_after_s: float = 60.0
    """Wall-clock seconds without a newer reading before the hall's feed card says silent."""
    evaluation_late_after_s: float = 60.0
    """Wall-clock seconds after the live service's newest alarm evaluation before the alarm
    pages say that no service evaluates them."""
    inlet_alarm_c: float = 27.0
    """Rack inlets above this (ASHRAE recommended limit) are marked on the hall (the alarms'
    own limits are the live service's, in its site file)."""
    secure_cookies: bool = False
    """Send the session cookie over HTTPS only (set when served behind TLS)."""
    clock: SiteClock = field(default_factory=SiteClock.wall)
    """How historian times map to the site's date and time (:mod:`dashboards.site_time`)."""

    def __post_init__(self) -> None:
        for name in (
            "session_ttl_s",
            "session_idle_s",
            "max_reason_chars",
            "refresh_s",
            "stale_after_s",
            "feed_silent_after_s",
            "evaluation_late_after_s",
        ):
            if not getattr(self, name) > 0:
                raise ValueError(f"dashboard {name} must be positive, got {getattr(self, name)}")


@dataclass(frozen=True)
class Evaluation:
    """The live service's newest alarm evaluation (:data:`control.alarms.EVALUATED_POINT`)."""

    time_s: float
    """The newest reading it evaluated (the site's time base)."""
    wall_s: float
    """When (Unix time)."""


class AppContext:
    """The data sources of one dashboard app (see the module docstring)."""

    def __init__(self, config: DashboardConfig) -> None:
        self.config = config
        self.users = UserStore(config.users_file)
        self.sessions = SessionStore(
            config.sessions_file or config.users_file.parent / SESSIONS_FILE,
            ttl_s=config.session_ttl_s,
            idle_s=config.session_idle_s,
        )
        self.feed = FeedWatch()
        """The hall's feed card (shown only: the feed alarm is the live service's)."""
        self._historian: Historian | None = None
        self._alarm_log: Historian | None = None
        self._lock = threading.Lock()

    def historian(self) -> Historian:
        """The historian, opened read-only; :class:`DataUnavailableError` until it exists."""
        with self._lock:
            if self._historian is None:
                try:
                    self._historian = Historian(self.config.historian_path, readonly=True)
                except (HistorianError, OSError) as exc:
                    raise DataUnavailableError(
                        f"historian {self.config.historian_path}: {exc}"
                    ) from None
            return self._historian

    def alarm_log(self) -> Historian:
        """The historian opened for writing the alarm log (the one table the dashboard
        writes); :class:`DataUnavailableError` until the historian exists."""
        with self._lock:
            if self._alarm_log is None:
                path = self.config.historian_path
                if not path.is_file():
                    raise DataUnavailableError(f"historian {path} does not exist")
                try:
                    self._alarm_log = Historian(path)
                except (HistorianError, OSError) as exc:
                    raise DataUnavailableError(f"historian {path}: {exc}") from None
            return self._alarm_log

    def alarm_states(self) -> tuple[dict[str, AlarmState], int]:
        """The alarms as the log says (:func:`control.alarms.alarm_states`), and the number of
        records read; :class:`DataUnavailableError` until the historian exists."""
        try:
            return alarm_states(self.historian())
        except HistorianError as exc:
            raise DataUnavailableError(str(exc)) from None

    def evaluation(self) -> Evaluation | None:
        """The live service's newest alarm evaluation; None if none ever ran on this
        historian."""
        reading = self.historian().latest([EVALUATED_POINT]).get(EVALUATED_POINT)
        return None if reading is None else Evaluation(reading.time_s, reading.value)

    @contextmanager
    def reservoir(self) -> Iterator[Reservoir]:
        """The reservoir, open for this request; :class:`DataUnavailableError` if there is none."""
        try:
            res = Reservoir(self.config.reservoir_root, create=False)
        except ReservoirError as exc:
            raise DataUnavailableError(str(exc)) from None
        try:
            yield res
        finally:
            res.close()

    @staticmethod
    def now_s() -> float:
        """Wall-clock time (sessions expire by it)."""
        return time.time()

    def close(self) -> None:
        with self._lock:
            for store in (self._historian, self._alarm_log):
                if store is not None:
                    store.close()
            self._historian = self._alarm_log = None

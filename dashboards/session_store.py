"""The dashboard's sessions, kept on the server in SQLite: the browser's cookie carries only
an opaque random id, so a session ends when the server says so.

Each row holds the SHA-256 of the id (never the id itself), the user, the CSRF token of the
session, when it was created and last used, its absolute expiry, its idle limit, the user's
credentials generation (:attr:`dashboards.auth.User.generation`) at login, and when and why
it was revoked. A session ends

- at logout (:meth:`SessionStore.revoke`): a copied cookie stops working at once;
- after ``idle_s`` without a request from it, or ``ttl_s`` after login, whichever is first;
- when the user's password is set again or a new access token is issued (the generation in
  the users file moves on), or the user is removed.

An open page polls the server, so it stays in use until the absolute lifetime; the idle
limit ends sessions that nothing uses any more (a tab closed without logging out).
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from dashboards.auth import AuthError, User, UserStore, check_role

logger = logging.getLogger(__name__)

SESSIONS_FILE = "sessions.sqlite"
DEFAULT_IDLE_S = 30 * 60.0
State = Literal["none", "live", "expired", "ended"]
"""No such session; a live one; one past its idle or absolute limit; one revoked."""

_TOUCH_EVERY_S = 5.0
"""``last_seen`` is written at most this often per session (each poll would write)."""
_KEEP_ENDED_S = 7 * 86_400.0
"""Ended sessions are kept this long (who was logged in when), then deleted."""
_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id_sha256 TEXT PRIMARY KEY,
    user TEXT NOT NULL,
    csrf TEXT NOT NULL,
    created_s REAL NOT NULL,
    last_seen_s REAL NOT NULL,
    expires_s REAL NOT NULL,
    idle_s REAL NOT NULL,
    generation INTEGER NOT NULL,
    revoked_s REAL,
    revoked_why TEXT
);
CREATE INDEX IF NOT EXISTS sessions_user ON sessions (user);
"""


@dataclass(frozen=True)
class Resolved:
    """What a cookie's session is now: its state and the mapping the pages check
    (:func:`dashboards.auth.session_user`): ``user``, ``role``, ``expires_at_s`` and
    ``csrf`` for a live or expired session, ``ended`` (why) for a revoked one."""

    state: State
    session: dict[str, Any]


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("utf-8")).hexdigest()


class SessionStore:
    """Sessions in the SQLite file ``path`` (mode 0600), ``ttl_s`` long at most and ended
    after ``idle_s`` unused; safe to share between the server's threads."""

    def __init__(self, path: Path, *, ttl_s: float, idle_s: float = DEFAULT_IDLE_S) -> None:
        if not (ttl_s > 0 and idle_s > 0):
            raise ValueError(f"session ttl_s and idle_s must be positive, got {ttl_s}, {idle_s}")
        self.path, self.ttl_s, self.idle_s = Path(path), ttl_s, idle_s
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.touch(mode=0o600, exist_ok=True)
        self.path.chmod(0o600)
        with self._connect() as db:
            db.executescript(_SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            db = sqlite3.connect(self.path, timeout=10.0)
            try:
                with db:
                    yield db
            finally:
                db.close()

    def create(self, user: User, *, now_s: float) -> tuple[str, str]:
        """A new session for ``user``: (the id for the cookie, the session's CSRF token)."""
        session_id, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        with self._connect() as db:
            db.execute(
                "DELETE FROM sessions WHERE MIN(expires_s, last_seen_s + idle_s) < ?"
                " OR revoked_s < ?",
                (now_s - _KEEP_ENDED_S, now_s - _KEEP_ENDED_S),
            )
            db.execute(
                "INSERT INTO sessions (id_sha256, user, csrf, created_s, last_seen_s, expires_s,"
                " idle_s, generation) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    _digest(session_id),
                    user.name,
                    csrf,
                    now_s,
                    now_s,
                    now_s + self.ttl_s,
                    self.idle_s,
                    user.generation,
                ),
            )
        return session_id, csrf

    def resolve(self, session_id: str | None, users: UserStore, *, now_s: float) -> Resolved:
        """The session of the cookie value ``session_id`` now (a live one is marked as used);
        the role is the one the users file gives now."""
        if not session_id:
            return Resolved("none", {})
        key = _digest(session_id)
        with self._connect() as db:
            row = db.execute(
                "SELECT user, csrf, last_seen_s, expires_s, idle_s, generation, revoked_s,"
                " revoked_why FROM sessions WHERE id_sha256 = ?",
                (key,),
            ).fetchone()
        if row is None:
            return Resolved("none", {})
        name, csrf, last_seen_s, expires_s, idle_s, generation, revoked_s, why = row
        if revoked_s is not None:
            return Resolved("ended", {"ended": f"{why}; log in again", "csrf": csrf})
        try:
            user = users.get(name)
            role = check_role(user.role) if user is not None else None
        except AuthError as exc:
            logger.warning("dashboard: session of %s refused: %s", name, exc)
            return Resolved("ended", {"ended": f"{exc}", "csrf": csrf})
        if user is None or role is None or user.generation != generation:
            why = (
                f"user {name} no longer exists"
                if user is None
                else f"{name}'s password or access token was changed, which ended this session"
            )
            self._revoke(key, now_s=now_s, why=why)
            return Resolved("ended", {"ended": f"{why}; log in again", "csrf": csrf})
        ends_s = min(float(expires_s), float(last_seen_s) + float(idle_s))
        session = {"user": name, "role": role, "expires_at_s": ends_s, "csrf": csrf}
        if now_s >= ends_s:
            return Resolved("expired", session)
        if now_s - float(last_seen_s) >= _TOUCH_EVERY_S:
            with self._connect() as db:
                db.execute(
                    "UPDATE sessions SET last_seen_s = ? WHERE id_sha256 = ? AND last_seen_s < ?",
                    (now_s, key, now_s),
                )
        session["expires_at_s"] = min(float(expires_s), now_s + float(idle_s))
        return Resolved("live", session)

    def _revoke(self, key: str, *, now_s: float, why: str) -> str | None:
        with self._connect() as db:
            row = db.execute(
                "UPDATE sessions SET revoked_s = ?, revoked_why = ? "
                "WHERE id_sha256 = ? AND revoked_s IS NULL RETURNING user",
                (now_s, why, key),
            ).fetchone()
        return None if row is None else str(row[0])

    def revoke(self, session_id: str | None, *, now_s: float, why: str) -> str | None:
        """End the session of ``session_id`` (``why`` is what a later request is told); the
        user whose session it was, or None if there was no live one."""
        if not session_id:
            return None
        return self._revoke(_digest(session_id), now_s=now_s, why=why)

    def revoke_user(self, name: str, *, now_s: float, why: str) -> int:
        """End every session of the user ``name``; how many there were."""
        with self._connect() as db:
            cursor = db.execute(
                "UPDATE sessions SET revoked_s = ?, revoked_why = ? "
                "WHERE user = ? AND revoked_s IS NULL",
                (now_s, why, name),
            )
        return int(cursor.rowcount)

    def active(self, *, now_s: float) -> list[tuple[str, float, float]]:
        """(user, created, last seen) of every session that has not ended, oldest first."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT user, created_s, last_seen_s FROM sessions WHERE revoked_s IS NULL"
                " AND MIN(expires_s, last_seen_s + idle_s) > ? ORDER BY created_s",
                (now_s,),
            ).fetchall()
        return [(str(u), float(c), float(s)) for u, c, s in rows]

"""Who may use the dashboard: a users file with salted password hashes, roles, sessions.

The users file is JSON, written atomically with mode 0600::

    {"version": 1, "users": {"alice": {"role": "operator",
                                       "password": "scrypt$16384$8$1$<salt>$<hash>",
                                       "created_at": "2026-11-23T08:00:00+00:00"}}}

Passwords are hashed with :func:`hashlib.scrypt` (a fresh 16-byte salt each) and compared in
constant time. Two roles: an ``operator`` may approve, reject, promote and roll back; a
``viewer`` may only look. The same users act from the command line (``twinloop gate``), by
password or by an access token for automation: a user holds at most one token, issued with
the password (:meth:`UserStore.issue_token`), kept as its SHA-256 only (``"token"`` in the
user's entry) and revoked by issuing another or by setting the user's password again.

Sessions are kept on the server (:mod:`dashboards.session_store`); the cookie carries only an
opaque id. Each user's entry counts its credentials' generation (``"generation"``): setting
the password again or issuing a new token moves it on, which ends the user's sessions. The
secret generated once per install (mode 0600) still keys Flask's own signing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import stat
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, cast, get_args

from control.approval import AUTOMATIC_ACTORS
from twinloop.errors import TwinLoopError

logger = logging.getLogger(__name__)

Role = Literal["operator", "viewer"]
ROLES: tuple[Role, ...] = get_args(Role)
OPERATOR: Role = "operator"

MIN_PASSWORD_CHARS = 8
DEFAULT_SESSION_S = 8 * 3600.0
USERS_FILE = "users.json"
SECRET_FILE = "session.secret"
TOKEN_PREFIX = "tlop_"
"""Every access token starts with this, so a leaked one is recognisable in a scan."""

_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 1 << 14, 8, 1
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")
_SESSION_KEYS = ("user", "role", "expires_at_s")
# Hashed for unknown users, so that a wrong name takes as long as a wrong password.
_DUMMY_HASH = "scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA==$" + "A" * 43 + "="


class AuthError(TwinLoopError, ValueError):
    """A refused login, user, password or session; the message says what is wrong."""


def default_home() -> Path:
    """``$TWINLOOP_HOME/dashboard`` when ``TWINLOOP_HOME`` is set, else ``runs/dashboard``."""
    home = os.environ.get("TWINLOOP_HOME")
    return (Path(home) if home else Path("runs")) / "dashboard"


# --------------------------------------------------------------------------- passwords
def hash_password(password: str) -> str:
    """``scrypt$N$r$p$salt$hash`` (base64) of ``password`` with a fresh random salt."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, dklen=32
    )
    salt_text, digest_text = (base64.b64encode(b).decode("ascii") for b in (salt, digest))
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${salt_text}${digest_text}"


def verify_password(password: str, encoded: str) -> bool:
    """Whether ``password`` matches ``encoded`` (from :func:`hash_password`)."""
    try:
        scheme, n, r, p, salt, digest = encoded.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest, validate=True)
        actual = hashlib.scrypt(
            password.encode("utf-8"),
            salt=base64.b64decode(salt, validate=True),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(expected),
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


def check_password(password: str) -> str:
    if not isinstance(password, str) or len(password) < MIN_PASSWORD_CHARS:
        raise AuthError(f"a password needs at least {MIN_PASSWORD_CHARS} characters")
    if password != password.strip():
        raise AuthError("a password must not start or end with white space")
    return password


def check_role(role: str) -> Role:
    if role not in ROLES:
        raise AuthError(f"unknown role {role!r} (known: {', '.join(ROLES)})")
    return role


def check_user_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise AuthError(
            f"bad user name {name!r}: use 1-64 letters, digits, '.', '-' or '_', "
            "starting with a letter, digit or '_'"
        )
    if name in AUTOMATIC_ACTORS:
        raise AuthError(
            f"user name {name!r} is reserved for TwinLoop's automatic actors "
            f"({', '.join(sorted(AUTOMATIC_ACTORS))}): the audit log must tell people from them"
        )
    return name


# --------------------------------------------------------------------------- users file
@dataclass(frozen=True)
class User:
    name: str
    role: Role
    created_at: str
    generation: int = 0
    """Moves on when the password is set again or a token issued: older sessions end."""


def _user(name: str, entry: Mapping[str, Any]) -> User:
    generation = entry.get("generation", 0)
    return User(
        name,
        check_role(entry["role"]),
        str(entry.get("created_at", "")),
        generation if isinstance(generation, int) else -1,
    )


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically, readable by its owner only (0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class UserStore:
    """The users file at ``path``; read again on every call, so users added while the
    dashboard runs can log in at once."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def _load(self) -> dict[str, dict[str, Any]]:
        if not self.path.is_file():
            return {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            users = data["users"]
            if data.get("version") != 1 or not isinstance(users, dict):
                raise ValueError("not a version-1 users file")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise AuthError(f"users file {self.path}: unreadable ({exc})") from None
        return cast(dict[str, dict[str, Any]], users)

    def users(self) -> list[User]:
        """Every user, by name."""
        return [_user(name, entry) for name, entry in sorted(self._load().items())]

    def get(self, name: str) -> User | None:
        """The user ``name`` as the file holds it now; None if there is none."""
        entry = self._load().get(name)
        return None if entry is None else _user(name, entry)

    def add(self, name: str, password: str, role: str, *, replace: bool = False) -> User:
        """Add a user (or, with ``replace``, set an existing user's password and role)."""
        check_user_name(name)
        who = check_role(role)
        check_password(password)
        users = self._load()
        if name in users and not replace:
            raise AuthError(f"user {name!r} already exists in {self.path}")
        created = datetime.now(UTC).isoformat(timespec="seconds")
        generation = _next_generation(users.get(name))
        users[name] = {
            "role": who,
            "password": hash_password(password),
            "created_at": created,
            "generation": generation,
        }
        _write_private(self.path, json.dumps({"version": 1, "users": users}, indent=2) + "\n")
        logger.info(
            "users file %s: %s %s (%s)", self.path, "set" if replace else "added", name, who
        )
        return User(name, who, created, generation)

    def issue_token(self, name: str) -> str:
        """A new access token for ``name`` (shown once; the file keeps its SHA-256 only),
        revoking the user's previous one."""
        users = self._load()
        if name not in users:
            raise AuthError(f"no user {name!r} in {self.path}")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        created = datetime.now(UTC).isoformat(timespec="seconds")
        users[name]["token"] = {"sha256": _token_digest(token), "created_at": created}
        users[name]["generation"] = _next_generation(users[name])
        _write_private(self.path, json.dumps({"version": 1, "users": users}, indent=2) + "\n")
        logger.info("users file %s: new access token for %s", self.path, name)
        return token

    def authenticate_token(self, token: str) -> User:
        """The user whose access token this is; :class:`AuthError` otherwise."""
        digest = _token_digest(token) if isinstance(token, str) else ""
        found: User | None = None
        for name, entry in self._load().items():
            stored = entry.get("token")
            stored_digest = stored.get("sha256") if isinstance(stored, dict) else None
            if isinstance(stored_digest, str) and hmac.compare_digest(stored_digest, digest):
                found = _user(name, entry)
        if found is None:
            raise AuthError("unknown or revoked access token")
        return found

    def authenticate(self, name: str, password: str) -> User:
        """The user whose name and password these are; :class:`AuthError` otherwise (the
        same message, and about the same time, for an unknown name as for a wrong password)."""
        entry = self._load().get(name) if isinstance(name, str) else None
        encoded = str(entry["password"]) if entry else _DUMMY_HASH
        ok = verify_password(password if isinstance(password, str) else "", encoded)
        if entry is None or not ok:
            raise AuthError("wrong user name or password")
        return _user(name, entry)


def _next_generation(entry: Mapping[str, Any] | None) -> int:
    """The generation after ``entry``'s (0 for a new user)."""
    if entry is None:
        return 0
    current = entry.get("generation", 0)
    return (current if isinstance(current, int) else 0) + 1


def _token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def require_role(user: User, *, action: str) -> User:
    """``user`` if an operator; :class:`AuthError` naming the action otherwise."""
    if user.role != OPERATOR:
        raise AuthError(f"{user.name} is a {user.role}: only an operator may {action}")
    return user


def load_or_create_secret(path: Path) -> bytes:
    """The session-signing secret kept in ``path`` (mode 0600), made on first use."""
    path = Path(path)
    if not path.exists():
        _write_private(path, secrets.token_hex(32) + "\n")
        logger.info("created the dashboard's session secret %s", path)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        logger.warning("session secret %s had mode %o; set to 0600", path, mode)
        path.chmod(0o600)
    secret = path.read_text(encoding="utf-8").strip()
    if len(secret) < 32:
        raise AuthError(f"session secret {path}: too short; delete it to make a new one")
    return secret.encode("utf-8")


# --------------------------------------------------------------------------- sessions
@dataclass(frozen=True)
class SessionUser:
    """The user a valid session belongs to."""

    name: str
    role: Role
    expires_at_s: float

    @property
    def is_operator(self) -> bool:
        return self.role == OPERATOR


def session_user(session: Mapping[str, Any], *, now_s: float) -> SessionUser:
    """The user of a session; :class:`AuthError` if there is none, it has expired or it was
    ended (``"ended"``: why, from :mod:`dashboards.session_store`)."""
    if "ended" in session:
        raise AuthError(str(session["ended"]))
    if not all(key in session for key in _SESSION_KEYS):
        raise AuthError("you are not logged in; log in first")
    expires = session["expires_at_s"]
    if not isinstance(expires, int | float) or now_s >= expires:
        raise AuthError("your session has expired; log in again")
    return SessionUser(str(session["user"]), check_role(str(session["role"])), float(expires))


def require_operator(
    session: Mapping[str, Any], *, now_s: float, action: str, users: UserStore | None = None
) -> SessionUser:
    """The session's user if an operator; :class:`AuthError` naming the action otherwise.
    With ``users``, the role is read again from the users file: a user removed or made a
    viewer since logging in cannot act on an old session."""
    user = session_user(session, now_s=now_s)
    if users is not None:
        stored = users.get(user.name)
        if stored is None:
            raise AuthError(f"user {user.name} no longer exists; log in again")
        user = SessionUser(user.name, stored.role, user.expires_at_s)
    if not user.is_operator:
        raise AuthError(f"{user.name} is a {user.role}: only an operator may {action}")
    return user

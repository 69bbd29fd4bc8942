"""Users file, password hashes, session secret and session checks."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from dashboards.auth import (
    TOKEN_PREFIX,
    AuthError,
    UserStore,
    hash_password,
    load_or_create_secret,
    require_operator,
    require_role,
    session_user,
    verify_password,
)


def test_passwords_are_salted_scrypt_hashes() -> None:
    first, second = hash_password("correct horse"), hash_password("correct horse")
    assert first.startswith("scrypt$16384$8$1$") and first != second  # fresh salt each
    assert verify_password("correct horse", first) and verify_password("correct horse", second)
    assert not verify_password("correct horsE", first)
    assert not verify_password("correct horse", "md5$abc")
    assert not verify_password("correct horse", "scrypt$16384$8$1$!!!$???")


def test_users_file_is_private_and_holds_no_password(tmp_path: Path) -> None:
    store = UserStore(tmp_path / "home" / "users.json")
    store.add("olga", "s3cret-pass", "operator")
    store.add("victor", "another-pass", "viewer")
    mode = stat.S_IMODE(store.path.stat().st_mode)
    assert mode == 0o600
    text = store.path.read_text()
    assert "s3cret-pass" not in text and "another-pass" not in text
    assert json.loads(text)["users"]["olga"]["role"] == "operator"
    assert [(u.name, u.role) for u in store.users()] == [("olga", "operator"), ("victor", "viewer")]
    assert store.authenticate("olga", "s3cret-pass").role == "operator"
    assert store.get("nobody") is None


def test_bad_users_and_logins_are_refused(tmp_path: Path) -> None:
    store = UserStore(tmp_path / "users.json")
    store.add("olga", "s3cret-pass", "operator")
    with pytest.raises(AuthError, match="already exists"):
        store.add("olga", "other-pass", "viewer")
    with pytest.raises(AuthError, match="unknown role 'admin'"):
        store.add("ann", "s3cret-pass", "admin")
    with pytest.raises(AuthError, match="at least 8 characters"):
        store.add("ann", "short", "viewer")
    with pytest.raises(AuthError, match="bad user name"):
        store.add("../x", "s3cret-pass", "viewer")
    with pytest.raises(AuthError, match="'watchdog' is reserved for TwinLoop's automatic actors"):
        store.add("watchdog", "s3cret-pass", "operator")
    # Same message for an unknown user and a wrong password.
    for name, password in (("olga", "wrong-pass"), ("ghost", "s3cret-pass")):
        with pytest.raises(AuthError, match=r"^wrong user name or password$"):
            store.authenticate(name, password)
    store.add("olga", "new-password", "viewer", replace=True)
    assert store.authenticate("olga", "new-password").role == "viewer"
    (tmp_path / "users.json").write_text("{not json")
    with pytest.raises(AuthError, match="unreadable"):
        store.users()


def test_secret_is_made_once_with_0600(tmp_path: Path) -> None:
    path = tmp_path / "session.secret"
    first = load_or_create_secret(path)
    assert len(first) == 64 and stat.S_IMODE(path.stat().st_mode) == 0o600
    path.chmod(0o644)
    assert load_or_create_secret(path) == first
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_sessions_expire_and_roles_are_checked(tmp_path: Path) -> None:
    store = UserStore(tmp_path / "users.json")
    olga = store.add("olga", "s3cret-pass", "operator")
    session = {"user": olga.name, "role": olga.role, "expires_at_s": 1060.0}
    assert session_user(session, now_s=1059.0).name == "olga"
    with pytest.raises(AuthError, match="session has expired"):
        session_user(session, now_s=1060.0)
    with pytest.raises(AuthError, match="not logged in"):
        session_user({}, now_s=0.0)
    assert require_operator(session, now_s=1001.0, action="approve", users=store).is_operator
    # The role is read again from the users file: a demoted operator cannot act.
    store.add("olga", "s3cret-pass", "viewer", replace=True)
    with pytest.raises(AuthError, match="olga is a viewer: only an operator may approve"):
        require_operator(session, now_s=1001.0, action="approve", users=store)
    forged = dict(session, role="root")
    with pytest.raises(AuthError, match="unknown role"):
        session_user(forged, now_s=1001.0)
    with pytest.raises(AuthError, match=r"^this session was logged out$"):
        session_user(dict(session, ended="this session was logged out"), now_s=1001.0)


def test_a_new_password_or_token_moves_the_generation_on(tmp_path: Path) -> None:
    store = UserStore(tmp_path / "users.json")
    assert store.add("olga", "s3cret-pass", "operator").generation == 0
    store.add("victor", "another-pass", "viewer")
    store.issue_token("olga")
    olga = store.get("olga")
    assert olga is not None and olga.generation == 1
    assert store.add("olga", "new-password", "operator", replace=True).generation == 2
    assert store.authenticate("olga", "new-password").generation == 2
    victor = store.get("victor")
    assert victor is not None and victor.generation == 0  # others are untouched


def test_access_tokens_are_kept_hashed_one_per_user_and_revocable(tmp_path: Path) -> None:
    store = UserStore(tmp_path / "users.json")
    store.add("olga", "s3cret-pass", "operator")
    store.add("victor", "another-pass", "viewer")
    token = store.issue_token("olga")
    assert token.startswith(TOKEN_PREFIX) and len(token) > 40
    assert token not in store.path.read_text()  # only its SHA-256 is kept
    assert store.authenticate_token(token).name == "olga"
    assert store.authenticate_token(store.issue_token("victor")).role == "viewer"
    newer = store.issue_token("olga")  # a new token revokes the previous one
    for bad in (token, newer + "x", "", TOKEN_PREFIX):
        with pytest.raises(AuthError, match="unknown or revoked access token"):
            store.authenticate_token(bad)
    assert store.authenticate_token(newer).name == "olga"
    store.add("olga", "new-password", "operator", replace=True)  # a new password revokes it
    with pytest.raises(AuthError, match="revoked"):
        store.authenticate_token(newer)
    with pytest.raises(AuthError, match="no user 'ghost'"):
        store.issue_token("ghost")


def test_only_an_operator_may_act(tmp_path: Path) -> None:
    store = UserStore(tmp_path / "users.json")
    store.add("olga", "s3cret-pass", "operator")
    store.add("victor", "another-pass", "viewer")
    assert require_role(store.authenticate("olga", "s3cret-pass"), action="approve") is not None
    with pytest.raises(AuthError, match=r"^victor is a viewer: only an operator may approve"):
        require_role(store.authenticate("victor", "another-pass"), action="approve policies")

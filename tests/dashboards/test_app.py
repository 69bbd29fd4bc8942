"""The app's HTTP surface through Flask's test client: login, logout, the guard, CSRF, the
session's expiry, and approval requests forged past the page (a viewer, no token)."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

import flask.testing
import pytest
from dash import Dash

from control.reservoir import Reservoir
from dashboards.app import create_app
from dashboards.auth import UserStore
from dashboards.context import AppContext
from dashboards.ids import ApprovalIds
from dashboards.session import CSRF_COOKIE, CSRF_HEADER, SESSION_COOKIE
from tests.dashboards.conftest import (
    OPERATOR,
    OPERATOR_PASSWORD,
    VIEWER,
    VIEWER_PASSWORD,
    Built,
    callback_request,
)


class _Clock:
    def __init__(self) -> None:
        self.now_s = 1_000_000.0

    def __call__(self) -> float:
        return self.now_s


@pytest.fixture
def app_and_clock(data: Built) -> tuple[Dash, _Clock]:
    app = create_app(data.historian, data.reservoir, data.users, session_ttl_s=600.0)
    clock = _Clock()
    context = app.server.extensions["twinloop_dashboard"]
    assert isinstance(context, AppContext)
    context.now_s = clock  # type: ignore[method-assign]
    return app, clock


def _login(client: flask.testing.FlaskClient, user: str, password: str, next_: str = "/") -> Any:
    return client.post("/login", data={"username": user, "password": password, "next": next_})


def _state(data: Built, ref: str) -> str:
    with Reservoir(data.reservoir) as res:
        return res.get(ref).state


def test_pages_need_a_login(app_and_clock: tuple[Dash, _Clock]) -> None:
    app, _ = app_and_clock
    client = app.server.test_client()
    response = client.get("/approvals")
    assert response.status_code == 302
    assert response.headers["Location"] == "/login?next=%2Fapprovals"
    assert client.get("/_dash-layout").status_code == 401
    login = client.get("/login")
    assert login.status_code == 200 and b'id="login-submit"' in login.data
    assert login.headers["X-Frame-Options"] == "DENY"


def test_login_sets_a_session_and_a_csrf_cookie(app_and_clock: tuple[Dash, _Clock]) -> None:
    app, _ = app_and_clock
    client = app.server.test_client()
    bad = _login(client, OPERATOR, "wrong-password")
    assert bad.status_code == 401 and b"wrong user name or password" in bad.data
    assert client.get("/").status_code == 302
    ok = _login(client, OPERATOR, OPERATOR_PASSWORD, next_="/reservoir?policy=x")
    assert ok.status_code == 302 and ok.headers["Location"] == "/reservoir?policy=x"
    cookies = ok.headers.getlist("Set-Cookie")
    session_cookie = next(c for c in cookies if c.startswith("twinloop_session="))
    assert "HttpOnly" in session_cookie and "SameSite=Lax" in session_cookie
    assert any(c.startswith(f"{CSRF_COOKIE}=") and "SameSite=Strict" in c for c in cookies)
    assert client.get("/").status_code == 200
    client.get("/logout")
    assert client.get("/").status_code == 302


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example/", "javascript:x"])
def test_login_never_redirects_off_site(app_and_clock: tuple[Dash, _Clock], target: str) -> None:
    app, _ = app_and_clock
    response = _login(app.server.test_client(), OPERATOR, OPERATOR_PASSWORD, next_=target)
    assert (
        urlsplit(response.headers["Location"]).netloc == "" and response.headers["Location"] == "/"
    )


def test_callbacks_need_the_csrf_token(app_and_clock: tuple[Dash, _Clock], data: Built) -> None:
    app, _ = app_and_clock
    client = app.server.test_client()
    _login(client, OPERATOR, OPERATOR_PASSWORD)
    body = callback_request(app, "tr-candidate@1", "looks right")
    refused = client.post("/_dash-update-component", json=body)
    assert refused.status_code == 403 and "CSRF" in refused.get_json()["error"]
    refused = client.post("/_dash-update-component", json=body, headers={CSRF_HEADER: "guess"})
    assert refused.status_code == 403
    assert _state(data, "tr-candidate@1") == "pre_evaluated"
    token = client.get_cookie(CSRF_COOKIE)
    assert token is not None
    ok = client.post("/_dash-update-component", json=body, headers={CSRF_HEADER: token.value})
    assert ok.status_code == 200
    message = json.dumps(ok.get_json()["response"][str(ApprovalIds.MESSAGE)])
    assert "tr-candidate@1 is now approved (approve by olga)" in message
    assert _state(data, "tr-candidate@1") == "approved"


def test_a_viewer_forging_an_approval_is_refused(
    app_and_clock: tuple[Dash, _Clock], data: Built
) -> None:
    app, _ = app_and_clock
    client = app.server.test_client()
    _login(client, VIEWER, VIEWER_PASSWORD)
    token = client.get_cookie(CSRF_COOKIE)
    assert token is not None
    body = callback_request(app, "tr-candidate@1", "I want it")
    response = client.post("/_dash-update-component", json=body, headers={CSRF_HEADER: token.value})
    message = json.dumps(response.get_json()["response"][str(ApprovalIds.MESSAGE)])
    assert "victor is a viewer: only an operator may approve policies" in message
    assert _state(data, "tr-candidate@1") == "pre_evaluated"


def test_an_expired_session_is_told_so_and_changes_nothing(
    app_and_clock: tuple[Dash, _Clock], data: Built
) -> None:
    app, clock = app_and_clock
    client = app.server.test_client()
    _login(client, OPERATOR, OPERATOR_PASSWORD)
    token = client.get_cookie(CSRF_COOKIE)
    assert token is not None
    clock.now_s += 601.0
    page = client.get("/approvals")
    assert page.status_code == 302 and "reason=expired" in page.headers["Location"]
    assert b"Your session has expired" in client.get(page.headers["Location"]).data
    body = callback_request(app, "tr-candidate@1", "still me")
    response = client.post("/_dash-update-component", json=body, headers={CSRF_HEADER: token.value})
    answer = response.get_json()["response"]
    assert "your session has expired; log in again" in json.dumps(answer[str(ApprovalIds.MESSAGE)])
    assert set(answer) == {str(ApprovalIds.MESSAGE)}  # no data for an expired session
    assert _state(data, "tr-candidate@1") == "pre_evaluated"


def _login_from(client: flask.testing.FlaskClient, address: str, user: str, password: str) -> Any:
    return client.post(
        "/login",
        data={"username": user, "password": password, "next": "/"},
        environ_base={"REMOTE_ADDR": address},
    )


def test_password_guessing_backs_off_per_user_and_address(
    app_and_clock: tuple[Dash, _Clock], caplog: pytest.LogCaptureFixture
) -> None:
    app, clock = app_and_clock
    attacker, operator = app.server.test_client(), app.server.test_client()
    bad = [_login_from(attacker, "10.6.6.6", OPERATOR, "guess-guess") for _ in range(3)]
    assert [r.status_code for r in bad] == [401, 401, 401]
    assert b"wait 2 s before the next try from this address" in bad[-1].data
    locked = _login_from(attacker, "10.6.6.6", OPERATOR, OPERATOR_PASSWORD)
    assert locked.status_code == 429  # even the right password waits, from there
    assert b"too many failed logins for olga from this address; try again in 2 s" in locked.data
    assert "login for 'olga' from 10.6.6.6 refused: throttled for 2 s more" in caplog.text
    # The real operator, at another address, is not held back at all.
    assert _login_from(operator, "10.0.0.5", OPERATOR, OPERATOR_PASSWORD).status_code == 302
    assert operator.get("/approvals").status_code == 200
    # Each further failure from the guessing address doubles its wait: 2, 4, 8 s ...
    for wait_s in (4, 8, 16):
        clock.now_s += wait_s / 2
        assert _login_from(attacker, "10.6.6.6", OPERATOR, "guess-guess").status_code == 401
        refused = _login_from(attacker, "10.6.6.6", OPERATOR, "guess-guess")
        assert f"try again in {wait_s} s".encode() in refused.data
        clock.now_s += wait_s / 2 - 1.0
        assert _login_from(attacker, "10.6.6.6", OPERATOR, OPERATOR_PASSWORD).status_code == 429
        clock.now_s += 1.0
    # ... up to five minutes, and someone who then has the password gets in from there too.
    for _ in range(10):
        clock.now_s += 301.0
        _login_from(attacker, "10.6.6.6", OPERATOR, "guess-guess")
    assert b"try again in 300 s" in _login_from(attacker, "10.6.6.6", OPERATOR, "x").data
    clock.now_s += 300.0
    assert _login_from(attacker, "10.6.6.6", OPERATOR, OPERATOR_PASSWORD).status_code == 302
    # Another name from the guessing address is its own count.
    assert _login_from(attacker, "10.6.6.6", VIEWER, VIEWER_PASSWORD).status_code == 302


def _promote_to_live(app: Dash, client: flask.testing.FlaskClient, token: str) -> None:
    for button, reason in (
        (ApprovalIds.APPROVE, "twin evidence holds"),
        (ApprovalIds.PROMOTE, "to shadow"),
        (ApprovalIds.PROMOTE, "shadow matched"),
    ):
        body = callback_request(app, "tr-candidate@1", reason, button)
        answer = client.post("/_dash-update-component", json=body, headers={CSRF_HEADER: token})
        assert answer.status_code == 200


def test_logout_ends_the_session_on_the_server(
    app_and_clock: tuple[Dash, _Clock], data: Built
) -> None:
    app, _ = app_and_clock
    client = app.server.test_client()
    _login(client, OPERATOR, OPERATOR_PASSWORD)
    session, token = client.get_cookie(SESSION_COOKIE), client.get_cookie(CSRF_COOKIE)
    assert session is not None and token is not None
    assert len(session.value) >= 40 and OPERATOR not in session.value  # an opaque id only
    _promote_to_live(app, client, token.value)
    assert _state(data, "tr-candidate@1") == "live"
    out = client.get("/logout")
    assert out.headers["Location"] == "/login?reason=logged-out"
    assert b"You have logged out" in client.get(out.headers["Location"]).data
    # The cookies copied before the logout, replayed from elsewhere, no longer work.
    thief = app.server.test_client()
    thief.set_cookie(SESSION_COOKIE, session.value)
    thief.set_cookie(CSRF_COOKIE, token.value)
    page = thief.get("/approvals")
    assert page.status_code == 302
    assert page.headers["Location"] == "/login?next=%2Fapprovals&reason=ended"
    assert thief.get("/_dash-layout").status_code == 401
    rollback = callback_request(app, "", "", ApprovalIds.ROLLBACK)
    refused = thief.post(
        "/_dash-update-component", json=rollback, headers={CSRF_HEADER: token.value}
    )
    assert refused.status_code == 401
    assert refused.get_json() == {"error": "this session was logged out; log in again"}
    assert _state(data, "tr-candidate@1") == "live"  # the rollback did not happen
    context = app.server.extensions["twinloop_dashboard"]
    assert context.sessions.active(now_s=context.now_s()) == []


def test_sessions_end_when_idle_and_at_their_absolute_limit(data: Built) -> None:
    app = create_app(
        data.historian, data.reservoir, data.users, session_ttl_s=1000.0, session_idle_s=300.0
    )
    clock = _Clock()
    app.server.extensions["twinloop_dashboard"].now_s = clock
    client = app.server.test_client()
    _login(client, OPERATOR, OPERATOR_PASSWORD)
    for _ in range(4):  # in use every 250 s: alive until the absolute limit (1000 s)
        clock.now_s += 250.0
        if clock.now_s - 1_000_000.0 < 1000.0:
            assert client.get("/approvals").status_code == 200
    expired = client.get("/approvals")
    assert expired.status_code == 302 and "reason=expired" in expired.headers["Location"]
    _login(client, OPERATOR, OPERATOR_PASSWORD)
    clock.now_s += 299.0
    assert client.get("/").status_code == 200
    clock.now_s += 300.0  # unused for the idle limit
    idle = client.get("/")
    assert idle.status_code == 302 and "reason=expired" in idle.headers["Location"]


def test_a_new_password_or_token_ends_that_users_sessions(
    app_and_clock: tuple[Dash, _Clock], data: Built
) -> None:
    app, _ = app_and_clock
    olga, victor = app.server.test_client(), app.server.test_client()
    _login(olga, OPERATOR, OPERATOR_PASSWORD)
    _login(victor, VIEWER, VIEWER_PASSWORD)
    UserStore(data.users).add(OPERATOR, "olga-new-password", "operator", replace=True)
    ended = olga.get("/approvals")
    assert ended.status_code == 302 and "reason=ended" in ended.headers["Location"]
    assert victor.get("/approvals").status_code == 200  # other users' sessions go on
    _login(olga, OPERATOR, "olga-new-password")
    assert olga.get("/approvals").status_code == 200
    UserStore(data.users).issue_token(OPERATOR)
    assert olga.get("/approvals").status_code == 302
    assert victor.get("/approvals").status_code == 200


def _answer(client: flask.testing.FlaskClient, body: dict[str, Any]) -> str:
    token = client.get_cookie(CSRF_COOKIE)
    assert token is not None
    response = client.post("/_dash-update-component", json=body, headers={CSRF_HEADER: token.value})
    return json.dumps(response.get_json()["response"][str(ApprovalIds.MESSAGE)])


def test_reasons_are_bounded(data: Built) -> None:
    app = create_app(data.historian, data.reservoir, data.users, max_reason_chars=40)
    client = app.server.test_client()
    _login(client, OPERATOR, OPERATOR_PASSWORD)
    long_reason = "x" * 41
    message = _answer(client, callback_request(app, "tr-candidate@1", long_reason))
    assert "approve refused: the reason has 41 characters; at most 40 are kept" in message
    assert _state(data, "tr-candidate@1") == "pre_evaluated"
    message = _answer(client, callback_request(app, "tr-candidate@1", "y" * 40))
    assert "tr-candidate@1 is now approved" in message
    with Reservoir(data.reservoir) as res:
        assert res.history("tr-candidate@1")[-1].reason == "y" * 40
    # A rollback is never held back by its reason: a long one is cut to the limit.
    _answer(client, callback_request(app, "tr-candidate@1", "to shadow", ApprovalIds.PROMOTE))
    _answer(client, callback_request(app, "tr-candidate@1", "to live", ApprovalIds.PROMOTE))
    message = _answer(client, callback_request(app, "", "z" * 5000, ApprovalIds.ROLLBACK))
    assert "rolled back by olga" in message
    with Reservoir(data.reservoir) as res:
        kept = res.history("tr-candidate@1")[-1].reason
    assert len(kept) == 40 and kept.endswith("(cut at 40 characters)")


def test_the_login_page_escapes_what_it_echoes(app_and_clock: tuple[Dash, _Clock]) -> None:
    app, _ = app_and_clock
    client = app.server.test_client()
    name = "<script>alert(1)</script>"
    for _ in range(4):
        response = _login(client, name, "guess-guess", next_='"><script>x</script>')
    assert response.status_code == 429
    assert b"<script>" not in response.data
    assert b"&lt;script&gt;alert(1)&lt;/script&gt;" in response.data

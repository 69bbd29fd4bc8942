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
from dashboards.context import AppContext
from dashboards.ids import ApprovalIds
from dashboards.session import CSRF_COOKIE, CSRF_HEADER
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


def test_password_guessing_is_slowed_down(app_and_clock: tuple[Dash, _Clock]) -> None:
    app, clock = app_and_clock
    client = app.server.test_client()
    for _ in range(5):
        assert _login(client, OPERATOR, "guess-guess").status_code == 401
    locked = _login(client, OPERATOR, OPERATOR_PASSWORD)  # even the right password waits
    assert locked.status_code == 429
    assert b"too many failed logins for olga; try again in 300 s" in locked.data
    assert _login(client, VIEWER, VIEWER_PASSWORD).status_code == 302  # others are not locked
    clock.now_s += 301.0
    assert _login(client, OPERATOR, OPERATOR_PASSWORD).status_code == 302


def test_the_login_page_escapes_what_it_echoes(app_and_clock: tuple[Dash, _Clock]) -> None:
    app, _ = app_and_clock
    client = app.server.test_client()
    name = "<script>alert(1)</script>"
    for _ in range(6):
        response = _login(client, name, "guess-guess", next_='"><script>x</script>')
    assert response.status_code == 429
    assert b"<script>" not in response.data
    assert b"&lt;script&gt;alert(1)&lt;/script&gt;" in response.data

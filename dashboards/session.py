"""The Flask side of logging in: the login and logout pages, the guard in front of every
request, and the double-submit CSRF token that Dash's renderer sends back on callbacks.

Pages need a valid session (else a redirect to the login page); Dash's callback requests
pass the guard only with the session's CSRF token in the ``X-CSRFToken`` header (the
renderer copies it from the ``_csrf_token`` cookie) and then check the session themselves,
so that an expired session gets a clear message in the page instead of a bare HTTP error.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import threading
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit

import flask
from dash.exceptions import PreventUpdate

from dashboards.auth import AuthError, SessionUser, session_user, start_session
from dashboards.context import AppContext

logger = logging.getLogger(__name__)

LOGIN_PATH = "/login"
LOGOUT_PATH = "/logout"
CSRF_COOKIE = "_csrf_token"
CSRF_HEADER = "X-CSRFToken"
CALLBACK_PATH = "/_dash-update-component"
_MAX_TRACKED_NAMES = 10_000
_COOKIE_GRACE_S = 86_400.0
"""Cookies outlive the session by this much so that a late request is told it expired."""
_OPEN_PREFIXES = ("/_dash-component-suites/", "/assets/", "/_favicon.ico")

_LOGIN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>TwinLoop — log in</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body { font-family: system-ui, sans-serif; background: #f3f5f8; margin: 0; }
form { max-width: 340px; margin: 12vh auto; background: #fff; padding: 28px 32px;
       border-radius: 8px; box-shadow: 0 2px 8px rgba(0,0,0,.12); }
h1 { font-size: 20px; margin: 0 0 18px; } label { display: block; margin: 12px 0 4px; }
input { width: 100%; padding: 8px; box-sizing: border-box; font-size: 15px; }
button { margin-top: 18px; width: 100%; padding: 9px; font-size: 15px; background: #1f4e79;
         color: #fff; border: 0; border-radius: 4px; cursor: pointer; }
.error { color: #a00; background: #fdecec; padding: 8px; border-radius: 4px; }
.info { color: #234; background: #e8f0fa; padding: 8px; border-radius: 4px; }
</style></head><body>
<form method="post" action="{{ action }}">
<h1>TwinLoop operator dashboard</h1>
{% if error %}<p class="error" id="login-error" role="alert">{{ error }}</p>{% endif %}
{% if info %}<p class="info" id="login-info">{{ info }}</p>{% endif %}
<label for="username">User name</label>
<input id="username" name="username" autocomplete="username" required autofocus>
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required>
<input type="hidden" name="next" value="{{ next }}">
<button id="login-submit" type="submit">Log in</button>
</form></body></html>
"""


class LoginThrottle:
    """Refuses a user name for ``lockout_s`` after ``max_failures`` wrong passwords within
    ``lockout_s`` (slows down password guessing; a right password resets the count)."""

    def __init__(self, max_failures: int = 5, lockout_s: float = 300.0) -> None:
        self.max_failures, self.lockout_s = max_failures, lockout_s
        self._failures: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, name: str, now_s: float) -> list[float]:
        recent = [t for t in self._failures.get(name, []) if now_s - t < self.lockout_s]
        if recent:
            self._failures[name] = recent
        else:
            self._failures.pop(name, None)
        return recent

    def wait_s(self, name: str, now_s: float) -> float:
        """Seconds until ``name`` may try again (0: now)."""
        with self._lock:
            recent = self._recent(name, now_s)
            if len(recent) < self.max_failures:
                return 0.0
            return max(0.0, recent[-self.max_failures] + self.lockout_s - now_s)

    def failed(self, name: str, now_s: float) -> None:
        with self._lock:
            self._failures[name] = [*self._recent(name, now_s), now_s]
            if len(self._failures) > _MAX_TRACKED_NAMES:  # a spray of names: forget old ones
                for other in list(self._failures):
                    self._recent(other, now_s)

    def succeeded(self, name: str) -> None:
        with self._lock:
            self._failures.pop(name, None)


def signed_in(ctx: AppContext) -> SessionUser:
    """The user of this request's session; no update (:class:`PreventUpdate`) without one."""
    try:
        return session_user(flask.session, now_s=ctx.now_s())
    except AuthError:
        raise PreventUpdate from None


def current_session() -> dict[str, Any]:
    """A copy of this request's session, for the plain callback functions."""
    return dict(flask.session)


def _safe_next(target: str | None) -> str:
    """A local path to go to after logging in (never another site)."""
    if not target:
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return "/"
    return target


def install(server: flask.Flask, ctx: AppContext, secret: bytes) -> None:
    """Add the login/logout routes and the request guard to the app's Flask server."""
    server.secret_key = secret
    throttle = LoginThrottle()
    server.config.update(
        SESSION_COOKIE_NAME="twinloop_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=ctx.config.secure_cookies,
        # The expiry that counts is the one signed inside the session (see _COOKIE_GRACE_S).
        PERMANENT_SESSION_LIFETIME=timedelta(seconds=ctx.config.session_ttl_s + _COOKIE_GRACE_S),
    )

    @server.route(LOGIN_PATH, methods=["GET", "POST"])
    def login() -> Any:
        return _login(ctx, throttle)

    @server.route(LOGOUT_PATH)
    def logout() -> Any:
        return _logout()

    @server.before_request
    def guard() -> Any:
        return _guard(ctx)

    server.after_request(_security_headers)


def _login_page(*, error: str = "", info: str = "", next_: str = "/", status: int = 200) -> Any:
    html = flask.render_template_string(
        _LOGIN_PAGE, action=LOGIN_PATH, error=error, info=info, next=_safe_next(next_)
    )
    return flask.Response(html, status=status, mimetype="text/html")


def _login(ctx: AppContext, throttle: LoginThrottle) -> Any:
    """The login page (GET), or a login attempt (POST): throttled per user name; a success
    starts a session and sets the CSRF cookie the renderer sends back."""
    if flask.request.method == "GET":
        reason = flask.request.args.get("reason", "")
        info = "Your session has expired; log in again." if reason == "expired" else ""
        return _login_page(info=info, next_=flask.request.args.get("next", "/"))
    form = flask.request.form
    next_, name = form.get("next", "/"), form.get("username", "")
    wait_s = throttle.wait_s(name, ctx.now_s())
    if wait_s > 0:
        error = f"too many failed logins for {name}; try again in {wait_s:.0f} s"
        return _login_page(error=error, next_=next_, status=429)
    try:
        user = ctx.users.authenticate(name, form.get("password", ""))
    except AuthError as exc:
        throttle.failed(name, ctx.now_s())
        logger.warning("dashboard: failed login for %r", name)
        return _login_page(error=str(exc), next_=next_, status=401)
    throttle.succeeded(name)
    start_session(flask.session, user, ttl_s=ctx.config.session_ttl_s, now_s=ctx.now_s())
    token = secrets.token_urlsafe(32)
    flask.session["csrf"] = token
    logger.info("dashboard: %s logged in (%s)", user.name, user.role)
    response = flask.redirect(_safe_next(next_))
    response.set_cookie(
        CSRF_COOKIE,
        token,
        samesite="Strict",
        secure=ctx.config.secure_cookies,
        httponly=False,  # the renderer reads it to send it back in a header
        max_age=int(ctx.config.session_ttl_s + _COOKIE_GRACE_S),
    )
    return response


def _logout() -> Any:
    """End the session and forget the CSRF cookie; back to the login page."""
    who = flask.session.get("user")
    flask.session.clear()
    response = flask.redirect(LOGIN_PATH)
    response.delete_cookie(CSRF_COOKIE)
    if who:
        logger.info("dashboard: %s logged out", who)
    return response


def _guard(ctx: AppContext) -> Any:
    """Before every request: None to let it through (login, logout, static files, a callback
    with the session's CSRF token, a page of a live session), else the refusal or the
    redirect to the login page."""
    path = flask.request.path
    if path in (LOGIN_PATH, LOGOUT_PATH) or path.startswith(_OPEN_PREFIXES):
        return None
    if path == CALLBACK_PATH:
        expected = str(flask.session.get("csrf", ""))
        sent = flask.request.headers.get(CSRF_HEADER, "")
        if not expected or not hmac.compare_digest(expected, sent):
            return flask.jsonify(error="missing or wrong CSRF token; log in again"), 403
        return None  # the callbacks check the session themselves
    try:
        session_user(flask.session, now_s=ctx.now_s())
    except AuthError:
        if path.startswith("/_dash-"):
            return flask.jsonify(error="log in first"), 401
        expired = "expires_at_s" in flask.session
        query = {"next": flask.request.full_path.rstrip("?")}
        if expired:
            query["reason"] = "expired"
        return flask.redirect(f"{LOGIN_PATH}?{urlencode(query)}")
    return None


def _security_headers(response: flask.Response) -> flask.Response:
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    return response

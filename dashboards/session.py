"""The Flask side of logging in: the login and logout pages, the guard in front of every
request, and the double-submit CSRF token that Dash's renderer sends back on callbacks.

Sessions live on the server (:mod:`dashboards.session_store`); the ``twinloop_session``
cookie carries only their opaque id, and logging out ends the session there. Pages need a
live session (else a redirect to the login page); Dash's callback requests pass the guard
only for a known session that has not been ended, with the session's CSRF token in the
``X-CSRFToken`` header (the renderer copies it from the ``_csrf_token`` cookie), and then
check the session themselves, so that an expired session gets a clear message in the page
instead of a bare HTTP error.
"""

from __future__ import annotations

import hmac
import logging
import math
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode, urlsplit

import flask
from dash.exceptions import PreventUpdate

from dashboards.auth import AuthError, SessionUser, session_user
from dashboards.context import AppContext
from dashboards.session_store import Resolved

logger = logging.getLogger(__name__)

LOGIN_PATH = "/login"
LOGOUT_PATH = "/logout"
SESSION_COOKIE = "twinloop_session"
"""The cookie with the session's opaque id (nothing else: the session lives on the server)."""
CSRF_COOKIE = "_csrf_token"
CSRF_HEADER = "X-CSRFToken"
CALLBACK_PATH = "/_dash-update-component"
_MAX_TRACKED_NAMES = 10_000
_COOKIE_GRACE_S = 86_400.0
"""Cookies outlive the session by this much so that a late request is told it expired."""
_INFO = {
    "expired": "Your session has expired; log in again.",
    "logged-out": "You have logged out; this session no longer works anywhere.",
    "ended": "That session has ended (logged out, or the password changed); log in again.",
}
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
    """Slows password guessing per (user name, client address): after ``free_failures`` wrong
    passwords from one address for one name, each further try from there waits ``base_s``,
    then twice as long after each further failure, up to ``max_wait_s``. Failures from one
    address never hold the name back at another, so guessing cannot lock the real user out;
    a right password clears its (name, address) count, and a pair's count is forgotten
    ``forget_s`` after its last failure."""

    def __init__(
        self,
        free_failures: int = 3,
        base_s: float = 2.0,
        max_wait_s: float = 300.0,
        forget_s: float = 900.0,
    ) -> None:
        self.free_failures, self.base_s = free_failures, base_s
        self.max_wait_s, self.forget_s = max_wait_s, forget_s
        self._failures: dict[tuple[str, str], tuple[int, float]] = {}
        self._lock = threading.Lock()

    def _count(self, key: tuple[str, str], now_s: float) -> tuple[int, float]:
        count, last_s = self._failures.get(key, (0, 0.0))
        if count and now_s - last_s >= self.forget_s:
            self._failures.pop(key, None)
            return 0, 0.0
        return count, last_s

    def backoff_s(self, failures: int) -> float:
        """How long a pair waits after ``failures`` failures in a row."""
        if failures < self.free_failures:
            return 0.0
        return float(min(self.max_wait_s, self.base_s * 2.0 ** (failures - self.free_failures)))

    def wait_s(self, name: str, address: str, now_s: float) -> float:
        """Seconds until ``name`` may try again from ``address`` (0: now)."""
        with self._lock:
            count, last_s = self._count((name, address), now_s)
            return max(0.0, last_s + self.backoff_s(count) - now_s) if count else 0.0

    def failed(self, name: str, address: str, now_s: float) -> float:
        """Count a wrong password; the wait it earns."""
        with self._lock:
            count, _ = self._count((name, address), now_s)
            self._failures[(name, address)] = (count + 1, now_s)
            if len(self._failures) > _MAX_TRACKED_NAMES:  # a spray of names: forget old ones
                for key in list(self._failures):
                    self._count(key, now_s)
            return self.backoff_s(count + 1)

    def succeeded(self, name: str, address: str) -> None:
        with self._lock:
            self._failures.pop((name, address), None)


def _resolve(ctx: AppContext) -> Resolved:
    """This request's server-side session (resolved once per request)."""
    found = flask.g.get("twinloop_session")
    if isinstance(found, Resolved):
        return found
    cookie = flask.request.cookies.get(SESSION_COOKIE)
    resolved = ctx.sessions.resolve(cookie, ctx.users, now_s=ctx.now_s())
    flask.g.twinloop_session = resolved
    return resolved


def signed_in(ctx: AppContext) -> SessionUser:
    """The user of this request's session; no update (:class:`PreventUpdate`) without one."""
    try:
        return session_user(_resolve(ctx).session, now_s=ctx.now_s())
    except AuthError:
        raise PreventUpdate from None


def current_session() -> dict[str, Any]:
    """A copy of this request's session as the pages check it (see
    :class:`dashboards.session_store.Resolved`); empty without one."""
    found = flask.g.get("twinloop_session")
    return dict(found.session) if isinstance(found, Resolved) else {}


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
    # Flask's own signed-cookie session is not used; its cookie gets another name.
    server.config.update(SESSION_COOKIE_NAME="twinloop_flask", SESSION_COOKIE_HTTPONLY=True)

    @server.route(LOGIN_PATH, methods=["GET", "POST"])
    def login() -> Any:
        return _login(ctx, throttle)

    @server.route(LOGOUT_PATH)
    def logout() -> Any:
        return _logout(ctx)

    @server.before_request
    def guard() -> Any:
        return _guard(ctx)

    server.after_request(_security_headers)


def _login_page(*, error: str = "", info: str = "", next_: str = "/", status: int = 200) -> Any:
    html = flask.render_template_string(
        _LOGIN_PAGE, action=LOGIN_PATH, error=error, info=info, next=_safe_next(next_)
    )
    return flask.Response(html, status=status, mimetype="text/html")


def _address() -> str:
    """The client's address as the server sees it (behind a reverse proxy, configure
    werkzeug's ProxyFix so that this is the client's, not the proxy's)."""
    return flask.request.remote_addr or "unknown"


def _login(ctx: AppContext, throttle: LoginThrottle) -> Any:
    """The login page (GET), or a login attempt (POST): throttled per (user name, client
    address); a success starts a server-side session and sets its cookie and the CSRF
    cookie the renderer sends back."""
    if flask.request.method == "GET":
        reason = flask.request.args.get("reason", "")
        info = _INFO.get(reason, "")
        return _login_page(info=info, next_=flask.request.args.get("next", "/"))
    form = flask.request.form
    next_, name, address = form.get("next", "/"), form.get("username", ""), _address()
    wait_s = throttle.wait_s(name, address, ctx.now_s())
    if wait_s > 0:
        logger.warning(
            "dashboard: login for %r from %s refused: throttled for %.0f s more",
            name,
            address,
            wait_s,
        )
        error = (
            f"too many failed logins for {name} from this address; "
            f"try again in {math.ceil(wait_s):.0f} s"
        )
        return _login_page(error=error, next_=next_, status=429)
    try:
        user = ctx.users.authenticate(name, form.get("password", ""))
    except AuthError as exc:
        earned_s = throttle.failed(name, address, ctx.now_s())
        logger.warning(
            "dashboard: failed login for %r from %s (next try in %.0f s)", name, address, earned_s
        )
        error = str(exc)
        if earned_s > 0:
            error += f"; wait {math.ceil(earned_s):.0f} s before the next try from this address"
        return _login_page(error=error, next_=next_, status=401)
    throttle.succeeded(name, address)
    session_id, csrf = ctx.sessions.create(user, now_s=ctx.now_s())
    logger.info("dashboard: %s logged in (%s) from %s", user.name, user.role, address)
    response = flask.redirect(_safe_next(next_))
    max_age = int(ctx.config.session_ttl_s + _COOKIE_GRACE_S)
    secure = ctx.config.secure_cookies
    response.set_cookie(
        SESSION_COOKIE, session_id, httponly=True, samesite="Lax", secure=secure, max_age=max_age
    )
    response.set_cookie(
        CSRF_COOKIE,
        csrf,
        samesite="Strict",
        secure=secure,
        httponly=False,  # the renderer reads it to send it back in a header
        max_age=max_age,
    )
    return response


def _logout(ctx: AppContext) -> Any:
    """End the session on the server (its cookie, wherever copied, stops working) and
    forget the cookies; back to the login page."""
    cookie = flask.request.cookies.get(SESSION_COOKIE)
    who = ctx.sessions.revoke(cookie, now_s=ctx.now_s(), why="this session was logged out")
    response = flask.redirect(f"{LOGIN_PATH}?reason=logged-out" if who else LOGIN_PATH)
    response.delete_cookie(SESSION_COOKIE)
    response.delete_cookie(CSRF_COOKIE)
    if who:
        logger.info("dashboard: %s logged out from %s", who, _address())
    return response


def _guard(ctx: AppContext) -> Any:
    """Before every request: None to let it through (login, logout, static files, a callback
    of a known session with its CSRF token, a page of a live session), else the refusal or
    the redirect to the login page. A callback of an expired session passes (with its
    token) so that the page can say it expired; one of an ended (logged out, revoked) or
    unknown session is refused with 401."""
    path = flask.request.path
    if path in (LOGIN_PATH, LOGOUT_PATH) or path.startswith(_OPEN_PREFIXES):
        return None
    resolved = _resolve(ctx)
    if path == CALLBACK_PATH:
        if resolved.state in ("none", "ended"):
            why = resolved.session.get("ended", "you are not logged in; log in first")
            logger.warning("dashboard: callback from %s refused: %s", _address(), why)
            return flask.jsonify(error=why), 401
        expected = str(resolved.session.get("csrf", ""))
        sent = flask.request.headers.get(CSRF_HEADER, "")
        if not expected or not hmac.compare_digest(expected, sent):
            return flask.jsonify(error="missing or wrong CSRF token; log in again"), 403
        return None  # the callbacks check the session themselves
    if resolved.state == "live":
        return None
    if path.startswith("/_dash-"):
        return flask.jsonify(error="log in first"), 401
    query = {"next": flask.request.full_path.rstrip("?")}
    if resolved.state == "expired":
        query["reason"] = "expired"
    elif resolved.state == "ended":
        query["reason"] = "ended"
    return flask.redirect(f"{LOGIN_PATH}?{urlencode(query)}")


def _security_headers(response: flask.Response) -> flask.Response:
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    return response


def if_signed_in(
    ctx: AppContext, session: dict[str, Any], n_outputs: int, view: Callable[[], tuple[Any, ...]]
) -> tuple[Any, ...]:
    """A page refresh's outputs: ``view()`` for a valid session, else nothing changed."""
    import dash

    try:
        session_user(session, now_s=ctx.now_s())
    except AuthError:
        return tuple([dash.no_update] * n_outputs)
    return view()

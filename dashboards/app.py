"""The operator's dashboard: one Dash app with six pages behind a login.

``create_app`` builds it for the CLI, the demo and the tests; each page is a module of
:mod:`dashboards.pages` with ``layout(ctx, user, query)`` and ``set_callbacks(app, ctx)``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import parse_qs

from dash import Dash, Input, Output, dcc, html
from dash.development.base_component import Component

from dashboards.auth import (
    DEFAULT_SESSION_S,
    SECRET_FILE,
    AuthError,
    load_or_create_secret,
    session_user,
)
from dashboards.context import AppContext, DashboardConfig
from dashboards.figures import notice
from dashboards.ids import FrameIds
from dashboards.pages import alarms, approvals, hall, reservoir, shadow, twin
from dashboards.session import LOGIN_PATH, LOGOUT_PATH, current_session, install, signed_in
from dashboards.session_store import DEFAULT_IDLE_S
from dashboards.site_time import SiteClock

logger = logging.getLogger(__name__)

PAGES: tuple[ModuleType, ...] = (hall, alarms, twin, reservoir, shadow, approvals)
"""Each with ``PATH``, ``TITLE``, ``layout(ctx, user, query)`` and ``set_callbacks(app, ctx)``."""

_CSS = """
body { font-family: system-ui, -apple-system, sans-serif; margin: 0; background: #f3f5f8;
       color: #1b2430; }
.tl-header { display: flex; align-items: center; gap: 18px; background: #1f4e79; color: #fff;
             padding: 10px 20px; }
.tl-header a { color: #fff; text-decoration: none; font-weight: 500; white-space: nowrap; }
.tl-header a.tl-active { text-decoration: underline; }
.tl-brand { font-weight: 700; font-size: 18px; margin-right: 12px; }
.tl-time-base { margin-left: auto; font-size: 13px; opacity: .85; }
.tl-user { margin-left: 18px; font-size: 14px; }
.tl-main { padding: 12px 20px 40px; }
.tl-page-head { display: flex; align-items: center; gap: 16px; }
.tl-window { width: 160px; } .tl-point { width: 360px; }
.tl-cards { display: flex; flex-wrap: wrap; gap: 12px; margin: 8px 0; }
.tl-card { background: #fff; border-radius: 6px; padding: 8px 14px; min-width: 150px;
           box-shadow: 0 1px 3px rgba(0,0,0,.1); }
.tl-card-alarm { background: #fdecec; }
.tl-card-label { font-size: 12px; color: #566; }
.tl-definition { font-size: 12px; color: #566; flex-basis: 100%; }
.tl-card-value { font-size: 18px; }
.tl-grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(520px, 1fr));
           gap: 12px; }
.tl-graph, .tl-graph-wide { background: #fff; border-radius: 6px; }
.tl-table { border-collapse: collapse; background: #fff; font-size: 13px; margin-bottom: 8px; }
.tl-table th, .tl-table td { border-bottom: 1px solid #dde; padding: 4px 10px;
                             text-align: left; }
.tl-table td.tl-wrap { overflow-wrap: anywhere; min-width: 16em; }
.tl-table th { background: #e8eef5; }
.tl-notice { padding: 8px 12px; border-radius: 4px; margin: 6px 0; background: #e8f0fa;
             overflow-wrap: anywhere; }
.tl-notice-ok { background: #e7f6ea; } .tl-notice-error { background: #fdecec; color: #900; }
.tl-decide { display: flex; flex-wrap: wrap; gap: 10px; align-items: flex-start; }
.tl-reason { width: 420px; height: 60px; }
.tl-buttons { display: flex; gap: 8px; flex-wrap: wrap; }
.tl-button { padding: 8px 14px; border: 0; border-radius: 4px; background: #1f4e79;
             color: #fff; cursor: pointer; }
.tl-button:disabled { background: #aab; cursor: not-allowed; }
.tl-button-danger { background: #a32; }
.tl-report-image { max-width: 100%; }
.tl-sev { padding: 1px 6px; border-radius: 3px; color: #fff; font-weight: 600; }
.tl-sev-critical { background: #a32; } .tl-sev-high { background: #d2691e; }
.tl-sev-medium { background: #b8860b; } .tl-sev-low { background: #5a6f86; }
"""

_INDEX = (
    "<!DOCTYPE html><html><head>{%metas%}<title>{%title%}</title>{%favicon%}{%css%}"
    f"<style>{_CSS}</style></head><body>{{%app_entry%}}<footer>{{%config%}}{{%scripts%}}"
    "{%renderer%}</footer></body></html>"
)


def frame_layout(clock_s: float = 15.0, time_base: str = "") -> Component:
    """Navigation, the time base of every time shown, the user, the session notice (checked
    every ``clock_s``) and the page."""
    nav: list[Component] = [html.Span("TwinLoop", className="tl-brand")]
    nav += [
        dcc.Link(page.TITLE, href=page.PATH, id=f"nav-{page.__name__.rsplit('.', 1)[-1]}")
        for page in PAGES
    ]
    nav += [
        html.Span(time_base, id=FrameIds.TIME_BASE, className="tl-time-base"),
        html.Span(id=FrameIds.USER, className="tl-user"),
        html.A("Log out", href=LOGOUT_PATH, id="nav-logout"),
    ]
    return html.Div(
        [
            dcc.Location(id=FrameIds.URL),
            dcc.Interval(id=FrameIds.CLOCK, interval=int(clock_s * 1000)),
            html.Div(nav, className="tl-header"),
            html.Div(
                [html.Div(id=FrameIds.SESSION_NOTICE), html.Div(id=FrameIds.PAGE)],
                className="tl-main",
            ),
        ]
    )


def page_for(
    ctx: AppContext, session: dict[str, Any], pathname: str | None, search: str | None = None
) -> Component:
    """The layout of the page at ``pathname`` (with the ``?key=value`` query ``search``) for
    the session's user."""
    user = session_user(session, now_s=ctx.now_s())
    query = {k: v[-1] for k, v in parse_qs((search or "").lstrip("?")).items()}
    for page in PAGES:
        if (pathname or "/") == page.PATH:
            layout: Component = page.layout(ctx, user, query)
            return layout
    known = ", ".join(page.PATH for page in PAGES)
    return notice(f"no page at {pathname} (pages: {known})", kind="error")


def session_banner(session: dict[str, Any], *, now_s: float) -> tuple[Any, Any]:
    """(who is logged in, a notice when the session has expired)."""
    try:
        user = session_user(session, now_s=now_s)
    except AuthError as exc:
        link = html.A("Log in", href=LOGIN_PATH + "?reason=expired")
        return "", html.Div(
            [str(exc), " — ", link],
            className="tl-notice tl-notice-error",
            role="alert",
            id="session-expired",
        )
    minutes = max(0.0, (user.expires_at_s - now_s) / 60.0)
    return f"{user.name} ({user.role}) · session ends in {minutes:.0f} min", []


def create_app(
    historian_path: str | Path,
    reservoir_root: str | Path,
    users_file: str | Path,
    *,
    secret_file: str | Path | None = None,
    session_ttl_s: float = DEFAULT_SESSION_S,
    session_idle_s: float = DEFAULT_IDLE_S,
    max_reason_chars: int = 500,
    refresh_s: float = 5.0,
    stale_after_s: float = 900.0,
    secure_cookies: bool = False,
    clock: SiteClock | None = None,
) -> Dash:
    """The dashboard over a historian file and a reservoir folder, with the users of
    ``users_file``; the session secret lives in ``secret_file`` (default: beside the users
    file), made on first use; the server-side sessions in ``sessions.sqlite`` beside the
    users file. ``clock`` maps the historian's times to the site's date and time (default:
    a real site's wall clock in this machine's zone; :mod:`dashboards.site_time`)."""
    users = Path(users_file)
    config = DashboardConfig(
        historian_path=Path(historian_path),
        reservoir_root=Path(reservoir_root),
        users_file=users,
        secret_file=Path(secret_file) if secret_file is not None else users.parent / SECRET_FILE,
        session_ttl_s=session_ttl_s,
        session_idle_s=session_idle_s,
        max_reason_chars=max_reason_chars,
        refresh_s=refresh_s,
        stale_after_s=stale_after_s,
        secure_cookies=secure_cookies,
        clock=clock if clock is not None else SiteClock.wall(),
    )
    ctx = AppContext(config)
    app = Dash(
        __name__,
        title="TwinLoop operator",
        update_title="",
        suppress_callback_exceptions=True,
        index_string=_INDEX,
        enable_mcp=False,  # whatever DASH_MCP_ENABLED says: no tool endpoint beside the login
    )
    install(app.server, ctx, load_or_create_secret(config.secret_file))
    app.layout = frame_layout(clock_s=min(15.0, 3.0 * refresh_s), time_base=config.clock.describe())

    @app.callback(
        Output(FrameIds.PAGE, "children"),
        Input(FrameIds.URL, "pathname"),
        Input(FrameIds.URL, "search"),
    )
    def _route(pathname: str | None, search: str | None) -> Component:
        signed_in(ctx)
        return page_for(ctx, current_session(), pathname, search)

    @app.callback(
        Output(FrameIds.USER, "children"),
        Output(FrameIds.SESSION_NOTICE, "children"),
        Input(FrameIds.CLOCK, "n_intervals"),
        Input(FrameIds.URL, "pathname"),
    )
    def _banner(_: int | None, __: str | None) -> tuple[Any, Any]:
        return session_banner(current_session(), now_s=ctx.now_s())

    for page in PAGES:
        page.set_callbacks(app, ctx)
    app.server.extensions["twinloop_dashboard"] = ctx
    logger.info(
        "dashboard over historian %s and reservoir %s (users %s)",
        config.historian_path,
        config.reservoir_root,
        config.users_file,
    )
    return app

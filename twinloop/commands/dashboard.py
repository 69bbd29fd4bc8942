"""``twinloop dashboard``: serve the operator's dashboard; ``twinloop dashboard users``:
manage who may log in."""

from __future__ import annotations

import argparse
import getpass
import ipaddress
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from dashboards.auth import (
    DEFAULT_SESSION_S,
    ROLES,
    USERS_FILE,
    AuthError,
    UserStore,
    default_home,
)
from twinloop.commands.arguments import CommandError, Subparsers
from twinloop.commands.demo import demo_home

if TYPE_CHECKING:
    from dashboards.site_time import SiteClock


def _users_file(args: argparse.Namespace) -> Path:
    return Path(args.users) if args.users else default_home() / USERS_FILE


def _read_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        line = sys.stdin.readline()
        return line.rstrip("\r\n")
    if not sys.stdin.isatty():
        raise AuthError("no terminal to ask for a password; use --password-stdin")
    first = getpass.getpass(f"password for {args.name}: ")
    if getpass.getpass("again: ") != first:
        raise AuthError("the two passwords differ")
    return first


def _cmd_users_add(args: argparse.Namespace) -> int:
    store = UserStore(_users_file(args))
    if not args.replace and store.get(args.name) is not None:
        raise AuthError(f"user {args.name!r} already exists in {store.path}; use --replace")
    user = store.add(args.name, _read_password(args), args.role, replace=args.replace)
    print(f"{user.name} ({user.role}) in {store.path}")
    demo_users = demo_home() / "dashboard" / USERS_FILE
    if store.path.resolve() != demo_users.resolve():
        print(
            f"note: twinloop demo reads {demo_users}; to log in to the demo, add the user "
            f"with --users {demo_users} (or set TWINLOOP_HOME for both)"
        )
    return 0


def _cmd_users_list(args: argparse.Namespace) -> int:
    store = UserStore(_users_file(args))
    users = store.users()
    if not users:
        print(f"no users in {store.path}", file=sys.stderr)
    for user in users:
        print(f"{user.name:24s} {user.role:9s} {user.created_at}")
    return 0


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _site_clock(args: argparse.Namespace) -> SiteClock:
    """The emulated site of ``--scenario`` (its weather year and zone), else a real site's
    wall clock in ``--time-zone`` (default: this machine's)."""
    from dashboards.site_time import SiteClock

    if args.scenario:
        if args.time_zone:
            raise CommandError(
                "--time-zone is for a real site; an emulated site (--scenario) runs in the zone "
                "of its weather file"
            )
        from physics.plant.scenario import load_scenario

        return SiteClock.for_weather_start(load_scenario(args.scenario).weather().start)
    return SiteClock.wall(args.time_zone)


def _cmd_serve(args: argparse.Namespace) -> int:
    from dashboards.app import create_app
    from dashboards.server import DashboardServer

    if not args.historian or not args.reservoir:
        raise CommandError("twinloop dashboard needs --historian PATH and --reservoir ROOT")
    users = _users_file(args)
    if args.session_hours <= 0 or args.refresh_s <= 0:
        raise CommandError("--session-hours and --refresh-s must be positive")
    if not 0 <= args.port <= 65535:
        raise CommandError(f"--port {args.port}: not a TCP port")
    if not UserStore(users).users():
        raise CommandError(
            f"no users in {users}: add one with "
            f"'twinloop dashboard users add NAME --role operator --users {users}'"
        )
    app = create_app(
        args.historian,
        args.reservoir,
        users,
        session_ttl_s=args.session_hours * 3600.0,
        refresh_s=args.refresh_s,
        secure_cookies=args.secure_cookies,
        clock=_site_clock(args),
    )
    try:
        server = DashboardServer(app, args.host, args.port)
    except OSError as exc:  # the address is taken or not this machine's
        raise CommandError(f"dashboard at {args.host}:{args.port}: {exc}") from None
    for what, path in (("historian", Path(args.historian)), ("reservoir", Path(args.reservoir))):
        if not path.exists():
            print(
                f"note: no {what} at {path} yet; its pages show data once it exists",
                file=sys.stderr,
            )
    if not _is_loopback(args.host) and not args.secure_cookies:
        print(
            f"warning: serving on {args.host} without TLS: passwords and session cookies cross "
            "the network in clear; put a TLS proxy in front and pass --secure-cookies",
            file=sys.stderr,
        )
    if getattr(args, "verbose", 1) < 3:  # one log line per poll is noise below -vv
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
    print(f"dashboard at {server.url}/ (Ctrl-C stops)", flush=True)

    # Ctrl-C (or SIGTERM) asks the serving loop to end from a helper thread, rather than
    # raising KeyboardInterrupt wherever the main thread happens to be.
    def _request_stop(_signum: int, _frame: object) -> None:
        threading.Thread(target=server.request_stop, name="dashboard-stop", daemon=True).start()

    previous = {sig: signal.signal(sig, _request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        server.stop()
    print("dashboard stopped", file=sys.stderr)
    return 0


def add_commands(sub: Subparsers) -> None:
    """``dashboard`` (serve) and ``dashboard users add|list``."""
    users_help = f"users file (default: $TWINLOOP_HOME/dashboard/{USERS_FILE} or runs/dashboard/)"
    dash = sub.add_parser(
        "dashboard",
        help="serve the operator's dashboard (live hall, twin, reservoir, approvals)",
        description="Serve the dashboard in the foreground; or manage its users.",
    )
    dash.add_argument("--historian", help="historian SQLite file")
    dash.add_argument("--reservoir", help="reservoir folder")
    dash.add_argument("--host", default="127.0.0.1", help="address (default: 127.0.0.1)")
    dash.add_argument("--port", type=int, default=8050, help="port (default: 8050; 0: any free)")
    dash.add_argument("--users", default=None, help=users_help)
    dash.add_argument(
        "--session-hours",
        type=float,
        default=DEFAULT_SESSION_S / 3600.0,
        help=f"log in again after this long (default: {DEFAULT_SESSION_S / 3600.0:g})",
    )
    dash.add_argument(
        "--refresh-s", type=float, default=5.0, help="live pages poll this often (default: 5)"
    )
    dash.add_argument(
        "--secure-cookies", action="store_true", help="cookies over HTTPS only (behind TLS)"
    )
    dash.add_argument(
        "--time-zone",
        default=None,
        help="a real site's IANA time zone, e.g. Europe/Berlin (default: this machine's)",
    )
    dash.add_argument(
        "--scenario",
        default=None,
        help="an emulated site: its scenario, whose weather year and zone date plant time",
    )
    dash.set_defaults(func=_cmd_serve)
    dash_sub = dash.add_subparsers(dest="dashboard_command")

    users = dash_sub.add_parser("users", help="who may log in: add, list")
    users_sub = users.add_subparsers(dest="users_command", required=True)
    add = users_sub.add_parser("add", help="add a user (or --replace one's password and role)")
    add.add_argument("name", help="user name")
    add.add_argument("--role", required=True, choices=ROLES, help="operator acts; viewer looks")
    add.add_argument(
        "--password-stdin", action="store_true", help="read the password from stdin's first line"
    )
    add.add_argument("--replace", action="store_true", help="replace an existing user")
    add.add_argument("--users", default=argparse.SUPPRESS, help=users_help)
    add.set_defaults(func=_cmd_users_add)
    ls = users_sub.add_parser("list", help="list the users and roles")
    ls.add_argument("--users", default=argparse.SUPPRESS, help=users_help)
    ls.set_defaults(func=_cmd_users_list)

"""``twinloop gate``: loop 2, the operator's decisions, taken by an operator who proved who
they are.

The users and roles are the dashboard's (``twinloop dashboard users add NAME --role
operator``); only an ``operator`` may approve, reject, promote or roll back. Who acts
proves it with a password or an access token, never with a command-line argument (it would
stay in the shell's history and in ``ps``):

* a password: asked on the terminal (:func:`getpass.getpass`), or, for automation, read from
  ``--password-file FILE`` (first line; the file must be readable by its owner only) or
  ``$TWINLOOP_OPERATOR_PASSWORD``; the user is ``--operator NAME``, else
  ``$TWINLOOP_OPERATOR``, else ``$USER``;
* an access token (``twinloop gate token`` issues one, given the password): from
  ``--token-file FILE`` or ``$TWINLOOP_OPERATOR_TOKEN``; it names its user.

Every attempt is written to the reservoir's access log, granted or refused (a wrong
password, an unknown user, a viewer); a refusal is one line, exit status 2, after a short
delay. The history row of a decision names the authenticated user, and each decision
prints the history's head (``ID:HASH``) for the operator to keep: ``twinloop reservoir
verify --anchor ID:HASH`` later proves the history up to it was not rewritten.
"""

from __future__ import annotations

import argparse
import getpass
import logging
import os
import stat
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from dashboards.auth import USERS_FILE, AuthError, User, UserStore, default_home, require_role
from twinloop.commands.arguments import CommandError, Subparsers
from twinloop.commands.reservoir import ROOT_HELP

if TYPE_CHECKING:
    from control.reservoir import Reservoir

logger = logging.getLogger(__name__)

OPERATOR_ENV = "TWINLOOP_OPERATOR"
PASSWORD_ENV = "TWINLOOP_OPERATOR_PASSWORD"
TOKEN_ENV = "TWINLOOP_OPERATOR_TOKEN"
REFUSAL_DELAY_S = 1.0
"""How long a refused attempt waits before it returns: guesses one at a time stay slow."""

_ACTIONS = {
    "approve": "approve policies",
    "reject": "reject policies",
    "promote": "promote policies",
    "rollback": "roll back policies",
    "token": "hold an access token for the gate",
    "approvers": "change how many operators approve going live",
}


@dataclass(frozen=True)
class Credentials:
    """What the operator gave to prove who they are."""

    method: Literal["password", "token"]
    name: str
    """The user named (``--operator``, ``$TWINLOOP_OPERATOR`` or ``$USER``); with a token,
    only ``--operator`` counts ("" if not given)."""
    secret: str


def _root(args: argparse.Namespace) -> Path:
    from control.reservoir import default_root

    return Path(args.reservoir) if args.reservoir is not None else default_root()


def _users_file(args: argparse.Namespace) -> Path:
    return Path(args.users) if args.users else default_home() / USERS_FILE


def read_secret_file(path: Path, what: str) -> str:
    """The first line of a password or token file that only its owner can read."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise AuthError(f"{what} file {path}: cannot read it ({exc})") from None
    if mode & 0o077:
        raise AuthError(
            f"{what} file {path}: readable by others (mode {mode:o}); 'chmod 600 {path}'"
        )
    if not lines or not lines[0]:
        raise AuthError(f"{what} file {path}: its first line is empty")
    return lines[0]


def _named(args: argparse.Namespace) -> str:
    if args.operator is not None:
        return str(args.operator).strip()
    return (os.environ.get(OPERATOR_ENV) or os.environ.get("USER") or "").strip()


def read_credentials(args: argparse.Namespace, *, tokens: bool = True) -> Credentials:
    """The operator's credentials, from (in this order) ``--token-file``,
    ``$TWINLOOP_OPERATOR_TOKEN``, ``--password-file``, ``$TWINLOOP_OPERATOR_PASSWORD``, or
    the terminal; ``tokens=False`` asks for a password only."""
    token_file = getattr(args, "token_file", None)
    if tokens and token_file is not None:
        return Credentials(
            "token", args.operator or "", read_secret_file(Path(token_file), "token")
        )
    if tokens and os.environ.get(TOKEN_ENV):
        return Credentials("token", args.operator or "", os.environ[TOKEN_ENV])
    name = _named(args)
    if not name:
        raise AuthError(f"who is acting? give --operator NAME (or set ${OPERATOR_ENV})")
    if args.password_file is not None:
        return Credentials("password", name, read_secret_file(Path(args.password_file), "password"))
    if os.environ.get(PASSWORD_ENV):
        return Credentials("password", name, os.environ[PASSWORD_ENV])
    if not sys.stdin.isatty():
        raise AuthError(
            f"no password for {name}: no terminal to ask on; use --password-file FILE or "
            f"${PASSWORD_ENV}, or an access token (--token-file FILE or ${TOKEN_ENV})"
        )
    return Credentials("password", name, getpass.getpass(f"password for {name}: "))


def _check(store: UserStore, credentials: Credentials, action: str) -> User:
    if not store.users():
        raise AuthError(
            f"no users in {store.path}: add an operator with 'twinloop dashboard users add "
            f"NAME --role operator --users {store.path}'"
        )
    if credentials.method == "token":
        user = store.authenticate_token(credentials.secret)
        if credentials.name and credentials.name != user.name:
            raise AuthError(f"the access token is {user.name}'s, not {credentials.name}'s")
    else:
        user = store.authenticate(credentials.name, credentials.secret)
    return require_role(user, action=_ACTIONS[action])


def authenticate(
    reservoir: Reservoir | None,
    store: UserStore,
    credentials: Credentials,
    *,
    action: str,
    policy: str | None,
) -> User:
    """The operator these credentials prove, allowed to ``action``; every attempt is
    written to ``reservoir``'s access log (when there is one). :class:`AuthError` after
    :data:`REFUSAL_DELAY_S` for a refused one."""
    try:
        user = _check(store, credentials, action)
    except AuthError as exc:
        who = credentials.name or "(token)"
        logger.info("gate: %s by %s refused: %s", action, who, exc)
        if reservoir is not None:
            reservoir.record_access(
                user=who,
                action=action,
                policy=policy,
                method=credentials.method,
                granted=False,
                detail=str(exc),
            )
        time.sleep(REFUSAL_DELAY_S)
        raise
    if reservoir is not None:
        reservoir.record_access(
            user=user.name,
            action=action,
            policy=policy,
            method=credentials.method,
            granted=True,
            detail=f"{user.role} authenticated by {credentials.method}",
        )
    return user


def _cmd_pending(args: argparse.Namespace) -> int:
    from control import approval
    from control.reservoir import Reservoir

    with Reservoir(_root(args), create=False) as reservoir:
        waiting = approval.pending(reservoir)
        if not waiting:
            print(f"no policy awaits approval in {_root(args)}", file=sys.stderr)
        for record in waiting:
            kpis = _twin_summary(reservoir, record.ref)
            print(f"{record.ref}\t{record.kind}\t{record.created_at[:16]}\t{kpis}")
    return 0


def _cmd_decide(args: argparse.Namespace) -> int:
    from control import approval
    from control.reservoir import Reservoir

    action: str = args.gate_command
    reason = (args.reason or "").strip()
    if not reason:
        raise CommandError(f"gate {action}: --reason is required (why, for the history)")
    credentials = read_credentials(args)
    store = UserStore(_users_file(args))
    with Reservoir(_root(args), create=False) as reservoir:
        ref = getattr(args, "ref", None)
        user = authenticate(reservoir, store, credentials, action=action, policy=ref)
        if action == "rollback":
            now = approval.rollback(
                reservoir, operator=user.name, reason=reason, to_site=args.to_site
            )
            print(f"in control: {now.ref if now else 'the site (its own control)'}")
        else:
            move = {
                "approve": approval.approve,
                "reject": approval.reject,
                "promote": approval.promote,
            }[action]
            before = reservoir.get(str(ref)).state if action == "promote" else None
            record = move(reservoir, str(ref), operator=user.name, reason=reason)
            if action == "promote" and record.state == before:
                status = approval.go_live_status(reservoir, record.ref)
                print(
                    f"{record.ref}: {record.state}, approval {len(status.approved_by)} of "
                    f"{status.required} to go live recorded (by {user.name}); a different "
                    "operator must confirm with 'twinloop gate promote'"
                )
            else:
                print(f"{record.ref}: {record.state} (by {user.name})")
        print(f"history head: {reservoir.head().anchor}", file=sys.stderr)
    return 0


def _cmd_approvers(args: argparse.Namespace) -> int:
    """Show, or (as an authenticated operator) set, how many operators approve going live."""
    from control import approval
    from control.reservoir import Reservoir

    with Reservoir(_root(args), create=False) as reservoir:
        if args.count is None:
            rules = approval.rules(reservoir)
            print(f"going live needs {rules.promotion_approvers} operator approval(s)")
            return 0
        credentials = read_credentials(args)
        store = UserStore(_users_file(args))
        user = authenticate(reservoir, store, credentials, action="approvers", policy=None)
        rules = approval.set_promotion_approvers(reservoir, args.count, actor=user.name)
        print(
            f"going live needs {rules.promotion_approvers} operator approval(s) "
            f"(set by {user.name})"
        )
    return 0


def _cmd_token(args: argparse.Namespace) -> int:
    from control.reservoir import DB_FILE, Reservoir

    credentials = read_credentials(args, tokens=False)
    store = UserStore(_users_file(args))
    root = _root(args)
    reservoir = Reservoir(root, create=False) if (root / DB_FILE).is_file() else None
    try:
        user = authenticate(reservoir, store, credentials, action="token", policy=None)
    finally:
        if reservoir is not None:
            reservoir.close()
    token = store.issue_token(user.name)
    print(token)
    print(
        f"access token for {user.name} (shown once; it replaces any earlier one): keep it in "
        f"a file only you can read and pass --token-file FILE, or set ${TOKEN_ENV}",
        file=sys.stderr,
    )
    return 0


def _twin_summary(reservoir: Reservoir, ref: str) -> str:
    twin = [e for e in reservoir.evaluations(ref) if e.on == "twin"]
    cooling = sum(e.kpis.get("cooling_kwh", 0.0) for e in twin)
    worst = max((e.kpis.get("max_inlet_c", float("nan")) for e in twin), default=float("nan"))
    return f"{len(twin)} twin scenario(s), cooling {cooling:,.0f} kWh, max inlet {worst:.2f} °C"


def _who_parser() -> argparse.ArgumentParser:
    users_help = f"users file (default: $TWINLOOP_HOME/dashboard/{USERS_FILE} or runs/dashboard/)"
    who = argparse.ArgumentParser(add_help=False)
    who.add_argument(
        "--operator",
        default=None,
        metavar="NAME",
        help=f"the dashboard user who acts (default: ${OPERATOR_ENV}, else $USER)",
    )
    who.add_argument("--users", default=None, metavar="FILE", help=users_help)
    who.add_argument(
        "--password-file",
        default=None,
        metavar="FILE",
        help=f"read the password from FILE's first line (mode 600; else ${PASSWORD_ENV}, "
        "else asked on the terminal)",
    )
    return who


def add_commands(sub: Subparsers) -> None:
    """``twinloop gate pending|approve|reject|promote|rollback|token``."""
    gate = sub.add_parser(
        "gate",
        help="loop 2: approve, reject, promote or roll back reservoir policies (as an "
        "authenticated operator)",
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--reservoir", default=None, metavar="ROOT", help=ROOT_HELP)
    who = _who_parser()
    token = argparse.ArgumentParser(add_help=False)
    token.add_argument(
        "--token-file",
        default=None,
        metavar="FILE",
        help=f"prove who you are with the access token in FILE (mode 600; else ${TOKEN_ENV})",
    )
    gate_sub = gate.add_subparsers(dest="gate_command", required=True)

    pend = gate_sub.add_parser(
        "pending", parents=[common], help="policies that passed gate 1, awaiting a decision"
    )
    pend.set_defaults(func=_cmd_pending)
    for name, needs_reason, text in (
        ("approve", True, "pre_evaluated → approved"),
        ("reject", True, "pre_evaluated or approved → rejected"),
        (
            "promote",
            False,
            "approved → shadow, shadow → live (with 'gate approvers N' > 1: an approval to go "
            "live, until N different operators have approved)",
        ),
    ):
        cmd = gate_sub.add_parser(name, parents=[common, who, token], help=text, allow_abbrev=False)
        cmd.add_argument("ref", help="NAME (latest version) or NAME@VERSION")
        cmd.add_argument(
            "--reason",
            default=None if needs_reason else "promoted by the operator",
            help="why, recorded in the history" + (" (required)" if needs_reason else ""),
        )
        cmd.set_defaults(func=_cmd_decide)
    back = gate_sub.add_parser(
        "rollback",
        parents=[common, who, token],
        allow_abbrev=False,  # '--password X' must not pass for --password-file
        help="take the live (else the shadow) policy out of service; the previous live "
        "policy (standing by) resumes, else the site's own control",
    )
    back.add_argument("--reason", default=None, help="why, recorded in the history (required)")
    back.add_argument(
        "--to-site",
        action="store_true",
        help="hand control to the site's own control even if a previous policy stands by",
    )
    back.set_defaults(func=_cmd_decide)
    approvers = gate_sub.add_parser(
        "approvers",
        parents=[common, who, token],
        allow_abbrev=False,
        help="show, or set (as an operator), how many distinct operators must approve a "
        "policy going live (1 by default)",
    )
    approvers.add_argument(
        "count", nargs="?", type=int, default=None, help="the new number (1 to 5); omit to show"
    )
    approvers.set_defaults(func=_cmd_approvers)
    tok = gate_sub.add_parser(
        "token",
        parents=[common, who],
        allow_abbrev=False,
        help="issue an access token for automation (given your password; revokes the previous one)",
    )
    tok.set_defaults(func=_cmd_token)

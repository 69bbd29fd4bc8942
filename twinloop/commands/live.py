"""``twinloop gate`` (loop 2: the operator's decisions) and ``twinloop serve`` (the live
control service)."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from pathlib import Path

from twinloop.commands.arguments import CommandError, Subparsers
from twinloop.commands.reservoir import ROOT_HELP


def _default_operator() -> str:
    user = os.environ.get("USER")
    if user:
        return user
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return ""


def _root(args: argparse.Namespace) -> Path:
    from control.reservoir import default_root

    return Path(args.reservoir) if args.reservoir is not None else default_root()


def _cmd_gate(args: argparse.Namespace) -> int:
    from control import approval
    from control.reservoir import Reservoir

    action: str = args.gate_command
    with Reservoir(_root(args), create=False) as reservoir:
        if action == "pending":
            waiting = approval.pending(reservoir)
            if not waiting:
                print(f"no policy awaits approval in {_root(args)}", file=sys.stderr)
            for record in waiting:
                kpis = _twin_summary(reservoir, record.ref)
                print(f"{record.ref}\t{record.kind}\t{record.created_at[:16]}\t{kpis}")
            return 0
        operator = (args.operator or "").strip()
        if not operator:
            raise CommandError(f"gate {action}: --operator is required ($USER is not set)")
        reason = (args.reason or "").strip()
        if not reason:
            raise CommandError(f"gate {action}: --reason is required (why, for the history)")
        if action == "rollback":
            now = approval.rollback(
                reservoir, operator=operator, reason=reason, to_site=args.to_site
            )
            print(f"in control: {now.ref if now else 'the site (its own control)'}")
            return 0
        move = {
            "approve": approval.approve,
            "reject": approval.reject,
            "promote": approval.promote,
        }[action]
        record = move(reservoir, args.ref, operator=operator, reason=reason)
        print(f"{record.ref}: {record.state} (by {operator})")
        print(f"history head: {reservoir.head().anchor}", file=sys.stderr)
        return 0


def _twin_summary(reservoir: object, ref: str) -> str:
    from control.reservoir import Reservoir

    assert isinstance(reservoir, Reservoir)
    twin = [e for e in reservoir.evaluations(ref) if e.on == "twin"]
    cooling = sum(e.kpis.get("cooling_kwh", 0.0) for e in twin)
    worst = max((e.kpis.get("max_inlet_c", float("nan")) for e in twin), default=float("nan"))
    return f"{len(twin)} twin scenario(s), cooling {cooling:,.0f} kWh, max inlet {worst:.2f} °C"


def _cmd_serve(args: argparse.Namespace) -> int:
    from connectors.broker import BrokerError
    from control.service import LiveService, load_service_config

    path = Path(args.site)
    config = load_service_config(path)
    if not (config.reservoir / "reservoir.sqlite").is_file():
        raise CommandError(f"site config {path}: reservoir: no reservoir at {config.reservoir}")
    try:
        service = LiveService(config, base=path.parent)
    except BrokerError as exc:  # the broker section names credentials that cannot be used
        raise CommandError(str(exc)) from exc
    try:
        service.start()
    except BrokerError as exc:
        service.close()
        raise CommandError(f"cannot reach the broker: {exc}") from exc
    print(
        f"serving site {config.site}: control period {config.control_period_s:g} s, "
        f"historian {config.historian}, reservoir {config.reservoir} (Ctrl-C stops)",
        flush=True,
    )
    try:
        service.run(periods=args.periods)
    except KeyboardInterrupt:
        print("twinloop: stopping: the site's own control takes over", file=sys.stderr)
    finally:
        service.close()
    return 0


def add_commands(sub: Subparsers) -> None:
    """``twinloop gate …`` and ``twinloop serve``."""
    gate = sub.add_parser(
        "gate", help="loop 2: approve, reject, promote or roll back reservoir policies"
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--reservoir", default=None, metavar="ROOT", help=ROOT_HELP)
    who = argparse.ArgumentParser(add_help=False)
    who.add_argument("--operator", default=_default_operator(), help="who decides (default: $USER)")
    gate_sub = gate.add_subparsers(dest="gate_command", required=True)

    pend = gate_sub.add_parser(
        "pending", parents=[common], help="policies that passed gate 1, awaiting a decision"
    )
    pend.set_defaults(func=_cmd_gate)
    for name, needs_reason, text in (
        ("approve", True, "pre_evaluated → approved"),
        ("reject", True, "pre_evaluated or approved → rejected"),
        ("promote", False, "approved → shadow, shadow → live"),
    ):
        cmd = gate_sub.add_parser(name, parents=[common, who], help=text)
        cmd.add_argument("ref", help="NAME (latest version) or NAME@VERSION")
        cmd.add_argument(
            "--reason",
            default=None if needs_reason else "promoted by the operator",
            help="why, recorded in the history" + (" (required)" if needs_reason else ""),
        )
        cmd.set_defaults(func=_cmd_gate)
    back = gate_sub.add_parser(
        "rollback",
        parents=[common, who],
        help="take the live (else the shadow) policy out of service; the previous live "
        "policy (standing by) resumes, else the site's own control",
    )
    back.add_argument("--reason", default=None, help="why, recorded in the history (required)")
    back.add_argument(
        "--to-site",
        action="store_true",
        help="hand control to the site's own control even if a previous policy stands by",
    )
    back.set_defaults(func=_cmd_gate)

    serve = sub.add_parser(
        "serve", help="run the live control service for a site (foreground; Ctrl-C stops)"
    )
    serve.add_argument("--site", required=True, metavar="CONFIG", help="site YAML file")
    serve.add_argument(
        "--periods", type=int, default=None, help="stop after this many control periods"
    )
    serve.set_defaults(func=_cmd_serve)

"""``twinloop demo``: the whole dual loop on embedded defaults (see :mod:`twinloop.demo`)."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from twinloop.commands.arguments import CommandError, Subparsers


def demo_home(given: str | None = None) -> Path:
    """The demo's folder: ``--home``, else ``$TWINLOOP_DEMO_HOME``, else ``$TWINLOOP_HOME``
    (where ``twinloop dashboard users`` and ``twinloop gate`` look too), else
    ``out/demo-live``."""
    env = os.environ
    return Path(
        given or env.get("TWINLOOP_DEMO_HOME") or env.get("TWINLOOP_HOME") or "out/demo-live"
    )


def _cmd_demo(args: argparse.Namespace) -> int:
    from connectors.bacnet_stack import BacnetPortError
    from connectors.broker import BrokerError
    from twinloop.demo import Demo, DemoConfig

    if args.speed <= 0:
        raise CommandError(f"--speed must be positive (got {args.speed})")
    if args.live_hours is not None and args.live_hours <= 0:
        raise CommandError(f"--live-hours must be positive (got {args.live_hours})")
    if not 1 <= args.promotion_approvers <= 5:
        raise CommandError(
            f"--promotion-approvers must be from 1 to 5 (got {args.promotion_approvers})"
        )
    if args.auto_approve and args.promotion_approvers != 1:
        raise CommandError(
            "--auto-approve promotes without an operator; it cannot be combined with "
            f"--promotion-approvers {args.promotion_approvers}"
        )
    home = demo_home(args.home)
    config = DemoConfig(
        home=home,
        speed=args.speed,
        host=args.host,
        port=args.port,
        auto_approve=args.auto_approve,
        live_hours=args.live_hours,
        shadow_periods=args.shadow_periods,
        promotion_approvers=args.promotion_approvers,
        protocol=args.protocol,
    )
    # SIGTERM (a service manager, `kill`) stops the demo as Ctrl-C does: every thread and
    # process it started is stopped on the way out.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        with Demo(config) as demo:
            demo.start()
            status = demo.wait(progress=not args.quiet)
    except (BrokerError, BacnetPortError) as exc:  # Mosquitto missing; a port taken
        raise CommandError(str(exc)) from exc
    print(
        f"demo over after {status.hours:.1f} simulated hours: cooling {status.cooling_kwh:.0f} kWh"
        f" vs {status.reference_cooling_kwh:.0f} kWh under the site's own control; "
        f"savings while live {status.savings_live_pct:.1f} %; "
        f"{status.violation_kh_above_27:.3f} K·h above 27 °C, max inlet {status.max_inlet_c:.1f} °C"
    )
    print(f"everything is kept in {home} (historian, reservoir, twin, gate 1 report)")
    if status.gate1.startswith("failed"):
        print(f"gate 1 {status.gate1}", file=sys.stderr)
        return 1
    return 0


def add_commands(sub: Subparsers) -> None:
    """``demo``."""
    demo = sub.add_parser(
        "demo",
        help="the whole dual loop on this machine: broker, emulated site, twin, reservoir, "
        "gate, dashboard, live control",
    )
    demo.add_argument("--home", default=None, help="folder for everything (out/demo-live)")
    demo.add_argument(
        "--auto-approve",
        action="store_true",
        help="approve and promote to live without an operator (recorded as auto-approve)",
    )
    demo.add_argument(
        "--promotion-approvers",
        type=int,
        default=1,
        metavar="N",
        help="distinct operators who must approve going live (1; the demo adds their logins)",
    )
    demo.add_argument(
        "--live-hours", type=float, default=None, help="stop after simulated hours of live control"
    )
    demo.add_argument("--speed", type=float, default=300.0, help="plant s per wall s (300)")
    demo.add_argument("--host", default="127.0.0.1", help="dashboard address (127.0.0.1)")
    demo.add_argument("--port", type=int, default=8050, help="dashboard port (8050)")
    demo.add_argument("--shadow-periods", type=int, default=12, help="shadow window (12)")
    demo.add_argument(
        "--protocol",
        choices=("mqtt", "bacnet"),
        default="mqtt",
        help="how the emulated site talks to TwinLoop: its BMS gateway on Mosquitto (mqtt, "
        "the default) or a BACnet/IP device on loopback that TwinLoop polls and writes "
        "(bacnet; docs/bacnet.md)",
    )
    demo.add_argument("--quiet", action="store_true", help="no progress bar")
    demo.set_defaults(func=_cmd_demo)

"""``twinloop serve``: the live control service (the operator's decisions, loop 2, are
``twinloop gate``, in :mod:`twinloop.commands.gate`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from twinloop.commands.arguments import CommandError, Subparsers


def _cmd_serve(args: argparse.Namespace) -> int:
    from connectors.broker import BrokerError
    from control.service import LiveService, load_service_config
    from twinloop.errors import TwinLoopError

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
    except TwinLoopError as exc:  # over BACnet: TwinLoop's own address cannot be bound
        service.close()
        raise CommandError(f"cannot start the {config.protocol} link: {exc}") from exc
    print(
        f"serving site {config.site} over {config.protocol}: "
        f"control period {config.control_period_s:g} s, "
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
    """``twinloop serve``."""
    serve = sub.add_parser(
        "serve", help="run the live control service for a site (foreground; Ctrl-C stops)"
    )
    serve.add_argument("--site", required=True, metavar="CONFIG", help="site YAML file")
    serve.add_argument(
        "--periods", type=int, default=None, help="stop after this many control periods"
    )
    serve.set_defaults(func=_cmd_serve)

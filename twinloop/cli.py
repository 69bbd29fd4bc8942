"""The ``twinloop`` command: the parser of every subcommand, logging, and the one error path.

The subcommands live in :mod:`twinloop.commands`, one module per group. A handler raises a
:class:`~twinloop.errors.TwinLoopError` for what the user can fix; :func:`main` prints it as
one line and exits 2. Any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from twinloop.commands import (
    bacnet,
    compare,
    connectors,
    dashboard,
    demo,
    gate,
    live,
    reservoir,
    scenarios,
    train,
    twin,
)
from twinloop.errors import TwinLoopError

GROUPS = (
    scenarios,
    twin,
    reservoir,
    train,
    compare,
    dashboard,
    gate,
    live,
    connectors,
    bacnet,
    demo,
)
"""The command groups, in the order ``twinloop --help`` lists their commands."""


def _setup_logging(verbosity: int) -> None:
    level = logging.WARNING - 10 * verbosity
    logging.basicConfig(
        level=max(level, logging.DEBUG),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def build_parser() -> argparse.ArgumentParser:
    """The ``twinloop`` parser with every command group's subcommands."""
    parser = argparse.ArgumentParser(
        prog="twinloop", description="Data-center digital twin and dual-loop cooling control."
    )
    parser.add_argument("-v", "--verbose", action="count", default=1, help="more log output")
    sub = parser.add_subparsers(dest="command", required=True)
    for group in GROUPS:
        group.add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command ``argv`` names; its exit status. A :class:`TwinLoopError` is printed
    as ``twinloop: error: <message>`` (exit 2), Ctrl-C exits 130; anything else propagates."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose - 1)
    try:
        return int(args.func(args))
    except TwinLoopError as exc:
        print(f"twinloop: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("twinloop: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""``twinloop compare``: suite totals, savings, share of the oracle and actuator travel of
several policies' evaluation runs, as a table and plots."""

from __future__ import annotations

import argparse
from pathlib import Path

from twinloop.commands.arguments import Subparsers


def _cmd_compare(args: argparse.Namespace) -> int:
    from control.comparison import load_runs, write_comparison_report

    runs = [load_runs(folder) for folder in args.runs]
    paths = write_comparison_report(
        runs,
        Path(args.out),
        baseline=args.baseline,
        reference=args.reference,
        oracle=args.oracle,
    )
    print(paths[2].read_text(encoding="utf-8"))
    for path in paths:
        print(path)
    return 0


def add_commands(sub: Subparsers) -> None:
    """``compare``."""
    cmp = sub.add_parser(
        "compare",
        help="compare policies' evaluation runs over a suite: totals, savings, travel, plots",
    )
    cmp.add_argument("runs", nargs="+", help="folders written by `twinloop evaluate --out`")
    cmp.add_argument("--baseline", required=True, help="policy the savings are measured against")
    cmp.add_argument("--reference", default=None, help="a second policy to measure savings vs")
    cmp.add_argument("--oracle", default=None, help="policy whose savings are the upper bound")
    cmp.add_argument("--out", required=True, help="folder for comparison.csv/.md/.png")
    cmp.set_defaults(func=_cmd_compare)

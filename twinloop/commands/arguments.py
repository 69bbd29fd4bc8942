"""What several command groups share: the error of a bad argument, the checks that raise it,
and the ``--ray``/``--workers`` flags of the commands that scale out."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TypeAlias

from twinloop.errors import TwinLoopError

Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
"""What ``add_subparsers`` returns: each command group adds its parsers to it."""


class CommandError(TwinLoopError):
    """A request a command refuses before it does any work (an argument out of range, a
    folder in the way), or a service it cannot reach; the message names the flag or path."""


def at_least_one(args: argparse.Namespace, *names: str) -> None:
    """Refuse an integer flag among ``names`` below 1."""
    for name in names:
        value = getattr(args, name)
        if value < 1:
            flag = "--" + name.replace("_", "-")
            raise CommandError(f"{flag} must be at least 1 (got {value})")


def check_out(out_dir: Path, data_dir: Path) -> None:
    """A folder, or none yet; not the recordings' (files there would read as recordings)."""
    check_folder(out_dir)
    if out_dir.resolve() == data_dir.resolve():
        raise CommandError(f"--out {out_dir}: is the folder of recordings; write elsewhere")


def check_folder(out_dir: Path) -> None:
    """``--out`` is a folder, or nothing yet."""
    if out_dir.exists() and not out_dir.is_dir():
        raise CommandError(f"--out {out_dir}: exists and is not a folder")


def add_ray_flags(parser: argparse.ArgumentParser, per: str) -> None:
    """``--ray ADDRESS`` (one Ray task per ``per``) and ``--workers N``."""
    parser.add_argument(
        "--ray",
        default=None,
        metavar="ADDRESS",
        help=f"one Ray task per {per}: 'local' (a Ray instance started for this run), 'auto' "
        "or HOST:PORT / ray://HOST:PORT of a cluster (default: here, one after the other)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="CPUs of the local Ray instance (with --ray local; default: all)",
    )


def check_ray_flags(args: argparse.Namespace) -> None:
    """``--ray`` names an address; ``--workers``, at least 1, only with ``--ray local``."""
    if args.ray is not None and not args.ray.strip():
        raise CommandError(
            f"--ray: a Ray address is 'local', 'auto' or HOST:PORT, got {args.ray!r}"
        )
    if args.workers is not None and args.ray != "local":
        raise CommandError("--workers sets the size of a local Ray instance: use --ray local")
    if args.workers is not None and args.workers < 1:
        raise CommandError(f"--workers must be at least 1 (got {args.workers})")

"""``twinloop reservoir …``: list, show and compare the policy versions of the reservoir,
verify its history's hash chain and artifacts, and register the built-in baselines."""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from twinloop.commands.arguments import CommandError, Subparsers

ROOT_HELP = "reservoir folder (default: $TWINLOOP_HOME/reservoir, else runs/reservoir)"


def _text_table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], *, right: Sequence[int] = ()
) -> str:
    """Rows as aligned columns under a header and a rule; columns in ``right`` right-aligned."""
    widths = [max([len(h), *(len(row[i]) for row in rows)]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            cell.rjust(width) if i in right else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, rows)])


_KPI_FORMATS = {
    "cooling_kwh": "{:,.1f}",
    "pue": "{:.4f}",
    "violation_kh_above_27": "{:.3f}",
    "max_inlet_c": "{:.2f}",
}
"""Decimals of the key KPIs as ``twinloop simulate`` prints them."""


def _kpi_text(name: str, value: object) -> str:
    """A KPI for a table; "—" where a policy has none."""
    if not isinstance(value, int | float) or value != value:  # None or NaN
        return "—"
    if name in _KPI_FORMATS:
        return _KPI_FORMATS[name].format(value)
    return f"{value:,.0f}" if abs(value) >= 1_000 else f"{value:.4g}"


def reservoir_root(args: argparse.Namespace) -> Path:
    """``--root``, else the default reservoir folder."""
    from control.reservoir import default_root

    return Path(args.root) if args.root is not None else default_root()


def _cmd_reservoir_list(args: argparse.Namespace) -> int:
    from control.reservoir import Reservoir

    with Reservoir(reservoir_root(args), create=False) as reservoir:
        records = reservoir.list(state=args.state, kind=args.kind)
    if not records:
        print(f"no policies in {reservoir_root(args)}", file=sys.stderr)
        return 0
    rows = [
        [
            r.name,
            str(r.version),
            r.kind,
            r.state,
            r.created_at[:16].replace("T", " "),
            r.artifact_hash[:12],
        ]
        for r in records
    ]
    headers = ("name", "version", "kind", "state", "created (UTC)", "sha256")
    print(_text_table(headers, rows, right=(1,)))
    return 0


def _cmd_reservoir_show(args: argparse.Namespace) -> int:
    from control import approval
    from control.reservoir import Reservoir, ordered_kpis

    with Reservoir(reservoir_root(args), create=False) as reservoir:
        record = reservoir.get(args.ref)
        path = reservoir.artifact_path(record.ref)
        digest = reservoir.current_hash(record.ref)
        evaluations = reservoir.evaluations(record.ref)
        history = reservoir.history(record.ref)
    if digest == record.artifact_hash:
        check = "verified"
    else:
        check = "MISSING" if digest is None else f"CHANGED since registration (now {digest})"
    fields = [
        ("kind", record.kind),
        ("state", record.state),
        ("created", record.created_at),
        ("description", record.description or "—"),
        ("parent", record.parent or "—"),
        ("training", ", ".join(record.training_scenarios) or "—"),
        ("artifact", "— (hash of the hyper-parameters)" if path is None else str(path)),
        ("sha256", f"{record.artifact_hash} ({check})"),
    ]
    print(record.ref)
    print("\n".join(f"  {key:12s} {value}" for key, value in fields))
    print("hyper-parameters")
    for key, value in sorted(record.hyperparameters.items()):
        print(f"  {key} = {json.dumps(value)}")
    print(f"evaluations ({len(evaluations)})")
    if evaluations:
        kpis = ordered_kpis(k for e in evaluations for k in e.kpis)
        rows = [
            [
                str(e.id),
                e.on,
                e.scenario,
                *(_kpi_text(k, e.kpis.get(k)) for k in kpis),
                e.created_at,
                "—" if e.report_dir is None else str(e.report_dir),
            ]
            for e in evaluations
        ]
        headers = ("id", "on", "scenario", *kpis, "at", "report")
        table = _text_table(headers, rows, right=[0, *range(3, 3 + len(kpis))])
        print("\n".join("  " + line for line in table.splitlines()))
    print(f"history ({len(history)})")
    rows = [
        [
            h.at,
            h.actor,
            approval.change_text(h),
            (h.artifact_hash or "missing")[:12],
            h.reason,
        ]
        for h in history
    ]
    table = _text_table(("at", "actor", "change", "sha256", "reason"), rows)
    print("\n".join("  " + line for line in table.splitlines()))
    return 0


def _cmd_reservoir_compare(args: argparse.Namespace) -> int:
    from control.reservoir import Reservoir

    with Reservoir(reservoir_root(args), create=False) as reservoir:
        table = reservoir.compare(args.refs, on=args.on)
        refs = list(dict.fromkeys(reservoir.get(ref).ref for ref in args.refs))
    where = "" if args.on is None else f" on the {args.on}"
    if table.empty:
        raise CommandError(f"no evaluations{where} of {', '.join(refs)}")
    for ref in refs:
        if ref not in set(table["policy"]):
            print(f"note: {ref} has no evaluations{where}", file=sys.stderr)
    kpis = [str(c) for c in table.columns[4:]]
    rows = [
        [str(r["policy"]), str(r["kind"]), str(r["on"]), str(r["scenario"])]
        + [_kpi_text(k, r[k]) for k in kpis]
        for _, r in table.iterrows()
    ]
    print(_text_table([str(c) for c in table.columns], rows, right=range(4, 4 + len(kpis))))
    return 0


_ANCHOR = re.compile(r"(?P<id>[0-9]{1,18}):(?P<hash>[0-9a-f]{64})")


def parse_anchors(texts: Sequence[str]) -> dict[int, str]:
    """``ID:HASH`` heads noted earlier, as ``{id: hash}``; :class:`CommandError` for a bad one."""
    anchors: dict[int, str] = {}
    for text in texts:
        match = _ANCHOR.fullmatch(text.strip().lower())
        if match is None:
            raise CommandError(
                f"--anchor {text[:80]!r}: use ID:HASH (a record id and its 64 hex digits, as "
                "'twinloop gate' prints them)"
            )
        anchors[int(match["id"])] = match["hash"]
    return anchors


def _cmd_reservoir_verify(args: argparse.Namespace) -> int:
    from control.reservoir import DEPLOYED_STATES, Reservoir

    anchors = parse_anchors(args.anchor)
    with Reservoir(reservoir_root(args), create=False) as reservoir:
        head = reservoir.verify_history(anchors)  # TamperedHistoryError: the first broken record
        changed = [r for r in reservoir.list() if reservoir.current_hash(r.ref) != r.artifact_hash]
        total = len(reservoir.list())
    anchored = f"; {len(anchors)} anchor(s) match" if anchors else ""
    print(f"history: intact, {head}{anchored}")
    print(f"anchor:  {head.anchor}")
    print(f"artifacts: {total - len(changed)} of {total} intact")
    for record in changed:
        print(f"  CHANGED or missing: {record.ref} ({record.state})")
    serving = [r.ref for r in changed if r.state in DEPLOYED_STATES | {"standby"}]
    if serving:
        raise CommandError(
            f"artifact changed since registration of a policy in service or standing by: "
            f"{', '.join(serving)}"
        )
    return 0


def actor() -> str:
    """Who runs the command, for the reservoir's history ("unknown" where no name is set)."""
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no user name in a container
        return "unknown"


def _cmd_reservoir_add_baselines(args: argparse.Namespace) -> int:
    from control.catalog import BUILTIN_POLICIES
    from control.preevaluation import register_builtin
    from control.reservoir import Reservoir

    with Reservoir(reservoir_root(args)) as reservoir:
        for name in BUILTIN_POLICIES:
            record = register_builtin(reservoir, name, actor=actor())
            print(f"{record.ref:28s} {record.kind:6s} {record.state}")
    return 0


def add_commands(sub: Subparsers) -> None:
    """``reservoir list``, ``show``, ``compare``, ``verify`` and ``add-baselines``."""
    from control.reservoir import EVALUATED_ON, KINDS, STATES

    res = sub.add_parser("reservoir", help="the policy reservoir: list, show, compare")
    res.add_argument("--root", default=None, help=ROOT_HELP)
    # --root also after the subcommand; there it overrides only when given.
    root_after = argparse.ArgumentParser(add_help=False)
    root_after.add_argument("--root", default=argparse.SUPPRESS, help=ROOT_HELP)
    res_sub = res.add_subparsers(dest="reservoir_command", required=True)

    ls = res_sub.add_parser(
        "list", parents=[root_after], help="every policy version: kind, state, created, hash"
    )
    ls.add_argument("--state", choices=STATES, help="only policies in this state")
    ls.add_argument("--kind", choices=KINDS, help="only policies of this kind")
    ls.set_defaults(func=_cmd_reservoir_list)

    show = res_sub.add_parser(
        "show", parents=[root_after], help="one policy: all fields, evaluations, history"
    )
    show.add_argument("ref", help="NAME (latest version) or NAME@VERSION")
    show.set_defaults(func=_cmd_reservoir_show)

    cmp = res_sub.add_parser(
        "compare", parents=[root_after], help="the KPIs of policies side by side"
    )
    cmp.add_argument("refs", nargs="+", metavar="REF", help="NAME or NAME@VERSION")
    cmp.add_argument("--on", choices=EVALUATED_ON, default=None, help="only twin or plant runs")
    cmp.set_defaults(func=_cmd_reservoir_compare)

    verify = res_sub.add_parser(
        "verify",
        parents=[root_after],
        help="check the history's hash chain (against heads noted earlier) and every artifact",
    )
    verify.add_argument(
        "--anchor",
        action="append",
        default=[],
        metavar="ID:HASH",
        help="a history head noted earlier (every 'twinloop gate' decision prints one): the "
        "record ID must still have this hash; repeatable",
    )
    verify.set_defaults(func=_cmd_reservoir_verify)

    base = res_sub.add_parser(
        "add-baselines", parents=[root_after], help="register the built-in rule baselines"
    )
    base.set_defaults(func=_cmd_reservoir_add_baselines)

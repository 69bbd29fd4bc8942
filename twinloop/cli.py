"""The ``twinloop`` command: parses arguments, sets up logging, calls library functions."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from physics.plant.scenario import ScenarioError, load_scenario, shipped_scenarios
from physics.weather import WeatherError

logger = logging.getLogger("twinloop")

POLICIES = ("baseline",)


def _setup_logging(verbosity: int) -> None:
    level = logging.WARNING - 10 * verbosity
    logging.basicConfig(
        level=max(level, logging.DEBUG),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def _cmd_simulate(args: argparse.Namespace) -> int:
    from physics.plant.simulation import run_scenario, write_outputs

    if args.policy not in POLICIES:
        raise ScenarioError(f"unknown policy {args.policy!r} (available: {', '.join(POLICIES)})")
    scenario = load_scenario(args.scenario)
    print(
        f"simulating {scenario.name}: {scenario.duration_h / 24:g} days of site "
        f"{scenario.site.name} (seed {scenario.site_seed}) under {args.policy} control",
        file=sys.stderr,
    )
    result = run_scenario(scenario, progress=not args.quiet, engine=args.engine)
    paths = write_outputs(result, Path(args.out))
    k = result.kpis
    summary = {
        "pue": round(k.pue, 4),
        "cooling_kwh": round(k.cooling_kwh, 1),
        "it_kwh": round(k.it_kwh, 1),
        "violation_kh_above_27": round(k.violation_kh_above_27, 3),
        "max_inlet_c": round(k.max_inlet_c, 2),
        "simulated_days_per_s": round(scenario.duration_h / 24 / max(result.wall_s, 1e-9), 2),
    }
    print(json.dumps(summary, indent=2))
    print("wrote: " + ", ".join(str(p) for p in paths), file=sys.stderr)
    return 0


def _cmd_twin_record(args: argparse.Namespace) -> int:
    from twin.recording import RecordingError, record_run, recording_path

    out_dir = Path(args.out)
    try:
        # Check every scenario and target first: nothing runs if any of them is bad.
        scenarios = [load_scenario(spec) for spec in args.scenario]
        targets: set[Path] = set()
        for scenario in scenarios:
            path = recording_path(
                scenario,
                policy=args.policy,
                seed=args.seed,
                out_dir=out_dir,
                overwrite=args.overwrite,
            )
            if path in targets:
                raise RecordingError(f"recording {path}: scenario {scenario.name} given twice")
            targets.add(path)
        for scenario in scenarios:
            print(
                f"recording {scenario.name}: {scenario.duration_h / 24:g} days of site "
                f"{scenario.site.name} (seed {scenario.site_seed}) under {args.policy} control "
                f"(seed {args.seed})",
                file=sys.stderr,
            )
            path = record_run(
                scenario,
                policy=args.policy,
                seed=args.seed,
                out_dir=out_dir,
                progress=not args.quiet,
                overwrite=args.overwrite,
            )
            print(path)
    except RecordingError as exc:
        print(f"twinloop: error: {exc}", file=sys.stderr)
        return 2
    return 0


def _add_twin_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    twin = sub.add_parser("twin", help="the digital twin: record training data")
    twin_sub = twin.add_subparsers(dest="twin_command", required=True)

    rec = twin_sub.add_parser(
        "record",
        help="run scenarios under exploration; write sensor readings and commands (no truth)",
    )
    rec.add_argument(
        "--scenario",
        action="append",
        required=True,
        help="scenario YAML file or shipped name (repeat for several)",
    )
    rec.add_argument("--out", required=True, help="folder of recordings")
    rec.add_argument(
        "--policy",
        choices=("explore", "site"),
        default="explore",
        help="random setpoint holds (default) or the site's built-in control",
    )
    rec.add_argument("--seed", type=int, default=0, help="exploration seed (default: 0)")
    rec.add_argument(
        "--overwrite", action="store_true", help="replace existing recordings of the same name"
    )
    rec.add_argument("--quiet", action="store_true", help="no progress bar")
    rec.set_defaults(func=_cmd_twin_record)


def _cmd_scenarios(args: argparse.Namespace) -> int:
    for name, path in sorted(shipped_scenarios().items()):
        scenario = load_scenario(path)
        print(f"{name:28s} {scenario.duration_h / 24:5.1f} d  {scenario.description.strip()}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="twinloop", description="Data-center digital twin and dual-loop cooling control."
    )
    parser.add_argument("-v", "--verbose", action="count", default=1, help="more log output")
    sub = parser.add_subparsers(dest="command", required=True)

    sim = sub.add_parser("simulate", help="run a scenario on the plant; write KPIs and plots")
    sim.add_argument("--scenario", required=True, help="scenario YAML file or shipped name")
    sim.add_argument("--policy", default="baseline", help="control policy (default: baseline)")
    sim.add_argument("--out", required=True, help="output folder")
    sim.add_argument("--quiet", action="store_true", help="no progress bar")
    sim.add_argument(
        "--engine",
        choices=("numba", "numpy"),
        default="numba",
        help="compiled plant step (default) or the numpy reference",
    )
    sim.set_defaults(func=_cmd_simulate)

    sc = sub.add_parser("scenarios", help="list the shipped scenarios")
    sc.set_defaults(func=_cmd_scenarios)

    _add_twin_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose - 1)
    try:
        return int(args.func(args))
    except (ScenarioError, WeatherError) as exc:
        print(f"twinloop: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("twinloop: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

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

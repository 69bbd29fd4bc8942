"""``twinloop simulate`` (a scenario on the plant), ``twinloop evaluate`` (a policy over
scenarios, on the plant or in the twin) and ``twinloop scenarios`` (the shipped ones)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from physics.plant.scenario import (
    FORECAST_LEVELS,
    ScenarioError,
    load_scenario,
    shipped_scenarios,
    with_forecast_level,
)
from twinloop.commands.arguments import (
    Subparsers,
    add_ray_flags,
    check_folder,
    check_ray_flags,
)

POLICIES = ("baseline",)
"""The policies ``simulate`` runs: the site's own control."""


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
    result = run_scenario(scenario, progress=not args.quiet)
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


def _cmd_evaluate(args: argparse.Namespace) -> int:
    """Exit 0; 2 on bad input (nothing ran); 1 when a run failed (the finished ones are
    written)."""
    from control.evaluation import EvaluationResult, write_comparison
    from control.scaleout import RayUnavailableError, ScaleOutError, evaluate_many
    from control.suites import expand

    out_dir = Path(args.out)

    def write(_: int, result: EvaluationResult) -> None:
        result.write(out_dir / result.scenario)
        k = result.kpis
        print(
            f"{result.scenario} ({args.on}): cooling {k['cooling_kwh']:,.0f} kWh, PUE "
            f"{k['pue']:.3f}, {k['violation_kh_above_27']:.2f} K·h above 27 °C, max inlet "
            f"{k['max_inlet_c']:.1f} °C, forecast {k.get('forecast_level', '?')}",
            flush=True,
        )

    check_ray_flags(args)
    scenarios = expand(args.scenario)
    if args.forecast is not None:
        scenarios = [with_forecast_level(s, args.forecast) for s in scenarios]
    twin_dir = Path(args.twin) if args.on == "twin" and args.twin is not None else None
    if twin_dir is not None:
        from twin.ensemble import TwinEnsemble

        TwinEnsemble.load(twin_dir)  # a bad folder fails here, before any run
    check_folder(out_dir)
    try:
        # Each result is written as it arrives: a later failure loses none of them.
        results = evaluate_many(
            args.policy,
            scenarios,
            on=args.on,
            twin_dir=twin_dir,
            ray_address=args.ray,
            workers=args.workers,
            progress=not args.quiet,
            on_result=write,
        )
    except RayUnavailableError:
        raise  # nothing ran: bad input (exit 2)
    except ScaleOutError as exc:  # a run failed; the finished ones are written
        print(f"twinloop: error: {exc}", file=sys.stderr)
        return 1
    write_comparison(results, out_dir)
    print(out_dir)
    return 0


def _cmd_scenarios(args: argparse.Namespace) -> int:
    for name, path in sorted(shipped_scenarios().items()):
        scenario = load_scenario(path)
        print(f"{name:28s} {scenario.duration_h / 24:5.1f} d  {scenario.description.strip()}")
    return 0


def add_commands(sub: Subparsers) -> None:
    """``simulate``, ``evaluate`` and ``scenarios``."""
    sim = sub.add_parser("simulate", help="run a scenario on the plant; write KPIs and plots")
    sim.add_argument("--scenario", required=True, help="scenario YAML file or shipped name")
    sim.add_argument("--policy", default="baseline", help="control policy (default: baseline)")
    sim.add_argument("--out", required=True, help="output folder")
    sim.add_argument("--quiet", action="store_true", help="no progress bar")
    sim.set_defaults(func=_cmd_simulate)

    ev = sub.add_parser(
        "evaluate", help="run a policy over scenarios on the plant or in the twin; KPIs + plots"
    )
    ev.add_argument(
        "--policy",
        required=True,
        help="fixed-setpoints | trim-and-respond | mpc | oracle-mpc | a trained agent's folder",
    )
    ev.add_argument(
        "--scenario",
        action="append",
        required=True,
        help="scenario or suite (pre-evaluation, held-out), name or file; repeat for several",
    )
    ev.add_argument("--on", choices=("plant", "twin"), default="plant", help="default: plant")
    ev.add_argument("--twin", default=None, help="saved twin folder (with --on twin)")
    ev.add_argument("--out", required=True, help="output folder (one subfolder per scenario)")
    ev.add_argument(
        "--forecast",
        choices=FORECAST_LEVELS,
        default=None,
        help="weather-forecast error level for every scenario (default: each scenario's "
        "forecast.level, itself medium by default); the oracle keeps perfect foresight",
    )
    ev.add_argument("--quiet", action="store_true", help="no progress bar")
    add_ray_flags(ev, "scenario")
    ev.set_defaults(func=_cmd_evaluate)

    sc = sub.add_parser("scenarios", help="list the shipped scenarios")
    sc.set_defaults(func=_cmd_scenarios)

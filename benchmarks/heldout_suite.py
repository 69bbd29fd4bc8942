"""Policies on the held-out suite, on the plant (ground truth), and their comparison.

Runs each ``--policy`` (a built-in name or a trained agent's folder) over every scenario of
the suite with :func:`control.evaluation.evaluate`, writes ``OUT/<policy>/<scenario>/``
(skipping runs already there unless ``--rerun``), then the comparison of all policies under
``OUT`` (totals, savings vs fixed setpoints and trim-and-respond, share of the oracle MPC,
actuator travel, plots) into ``OUT/comparison``.

    python benchmarks/heldout_suite.py --policy fixed-setpoints --policy trim-and-respond \
        --policy mpc --policy oracle-mpc
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from control.catalog import policy_factory
from control.comparison import load_runs, write_comparison_report
from control.evaluation import evaluate
from control.suites import expand
from twin.ensemble import TwinEnsemble


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy", action="append", required=True)
    parser.add_argument("--suite", default="held-out")
    parser.add_argument("--on", choices=("plant", "twin"), default="plant")
    parser.add_argument("--twin", default=None, help="saved twin (MPC model; --on twin)")
    parser.add_argument("--out", default="out/bench/heldout")
    parser.add_argument("--rerun", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    out = Path(args.out)
    twin = TwinEnsemble.load(Path(args.twin)) if args.twin else None
    scenarios = expand([args.suite])
    for spec in args.policy:
        factory = policy_factory(spec, twin=twin)
        for scenario in scenarios:
            policy = factory(scenario)
            run_dir = out / policy.name / scenario.name
            if (run_dir / "kpis.json").exists() and not args.rerun:
                continue
            started = time.perf_counter()
            result = evaluate(policy, scenario, on=args.on, twin=twin, progress=True)
            result.write(run_dir)
            print(
                f"{policy.name} {scenario.name}: cooling {result.kpis['cooling_kwh']:.0f} kWh, "
                f"{result.kpis['violation_kh_above_27']:.4f} K·h > 27 °C, max inlet "
                f"{result.kpis['max_inlet_c']:.2f} °C ({time.perf_counter() - started:.0f} s)"
            )
    folders = sorted(p for p in out.iterdir() if p.is_dir() and any(p.glob("*/kpis.json")))
    runs = [load_runs(f) for f in folders if f.name != "comparison"]
    names = {r.policy for r in runs}
    paths = write_comparison_report(
        runs,
        out / "comparison",
        baseline="fixed-setpoints",
        reference="trim-and-respond" if "trim-and-respond" in names else None,
        oracle="oracle-mpc" if "oracle-mpc" in names else None,
    )
    print(paths[2].read_text(encoding="utf-8"))


if __name__ == "__main__":
    main()

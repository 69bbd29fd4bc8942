"""Two ways for the MPC to ride through a unit trip, measured on the plant.

``react``: the plan may use every CRAH unit; after a trip the BMS's failure sequence speeds
the others up (holding the airflow while the fans are below full speed) and the MPC reacts
through its measured inlet bias from the next period. ``n-1``: the plan keeps one unit in
reserve (``MpcConfig.crah_headroom_units=1``: fan speed at most (n-1)/n), so the sequence can
always hold the planned airflow. The oracle MPC runs under the same rule when ``--oracle``.

Each run writes ``OUT/<rule>/<policy>/<scenario>/`` (skipped when already there unless
``--rerun``); the table (cooling kWh, K·h above 27 °C, hottest inlet, savings vs fixed
setpoints from ``OUT/fixed-setpoints``) goes to stdout and ``OUT/headroom.json``.

    python benchmarks/mpc_headroom.py --scenario holdout-crah-trip --scenario \
        holdout-trips-heat-wave [--oracle]
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from control.baselines import FixedSetpoints
from control.evaluation import evaluate
from control.mpc import MpcConfig, MpcPolicy, OracleMpcPolicy
from control.policy import Policy
from control.suites import expand
from physics.plant.scenario import Scenario

RULES = {"react": 0, "n-1": 1}


def _policy(kind: str, scenario: Scenario, headroom: int) -> Policy:
    if kind == "fixed-setpoints":
        return FixedSetpoints()
    if kind == "oracle-mpc":
        return OracleMpcPolicy(
            scenario, config=MpcConfig(horizon=24, margin_k=1.0, crah_headroom_units=headroom)
        )
    config = replace(MpcConfig(), crah_headroom_units=headroom)
    return MpcPolicy(scenario=scenario, config=config)


def _kpis(out: Path, kind: str, scenario: Scenario, headroom: int, rerun: bool) -> dict[str, Any]:
    run_dir = out / kind / scenario.name
    path = run_dir / "kpis.json"
    if path.exists() and not rerun:
        return dict(json.loads(path.read_text())["kpis"])
    started = time.perf_counter()
    result = evaluate(_policy(kind, scenario, headroom), scenario, on="plant", progress=True)
    result.write(run_dir)
    print(f"{run_dir}: {time.perf_counter() - started:.0f} s", flush=True)
    return result.kpis


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", action="append", required=True)
    parser.add_argument("--oracle", action="store_true", help="also the oracle MPC per rule")
    parser.add_argument("--out", default="out/bench/headroom")
    parser.add_argument("--rerun", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    out = Path(args.out)
    rows: list[dict[str, Any]] = []
    for scenario in expand(args.scenario):
        fixed = _kpis(out / "baseline", "fixed-setpoints", scenario, 0, args.rerun)
        for rule, headroom in RULES.items():
            kinds = ["mpc", "oracle-mpc"] if args.oracle else ["mpc"]
            for kind in kinds:
                k = _kpis(out / rule, kind, scenario, headroom, args.rerun)
                saving = 100.0 * (1.0 - k["cooling_kwh"] / fixed["cooling_kwh"])
                rows.append(
                    {
                        "scenario": scenario.name,
                        "rule": rule,
                        "policy": kind,
                        "cooling_kwh": round(k["cooling_kwh"], 1),
                        "fixed_cooling_kwh": round(fixed["cooling_kwh"], 1),
                        "savings_vs_fixed_pct": round(saving, 2),
                        "violation_kh_above_27": round(k["violation_kh_above_27"], 4),
                        "max_inlet_c": round(k["max_inlet_c"], 2),
                    }
                )
                print(json.dumps(rows[-1]), flush=True)
    (out / "headroom.json").write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()

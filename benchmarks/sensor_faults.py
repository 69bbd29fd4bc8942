"""Sensor faults on the plant: how fast a biased rack-inlet or supply-air sensor is flagged,
how often a clean run flags one, and what a biased hottest-rack or supply-air sensor costs
the shipped MPC and trim-and-respond with and without the validator
(:mod:`twin.sensor_check`).

    OMP_NUM_THREADS=1 python benchmarks/sensor_faults.py [--quick]

Scenarios are the shipped ones with a ``sensor_bias`` fault added in code (onset 24 h into
the run), forecast error medium (the scenarios' default).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from typing import Any

import numpy as np
import pandas as pd

from control.catalog import policy_factory
from control.evaluation import evaluate
from control.policy import Policy
from control.suites import load_suite
from physics.kpi import compute_kpis
from physics.plant.faults import FaultEvent
from physics.plant.scenario import Scenario, load_scenario
from twin.plant_env import PlantEnv

HELD_OUT = tuple(sc.name for sc in load_suite("held-out").scenarios)


def with_fault(
    scenario: Scenario, kind: str, point: str, start_h: float, magnitude: float
) -> Scenario:
    """``scenario`` with one sensor fault added."""
    event = FaultEvent(kind=kind, start_h=start_h, magnitude=magnitude, target=point)
    return dataclasses.replace(
        scenario, name=f"{scenario.name}+{kind}:{point}", faults=(*scenario.faults, event)
    )


def hottest_racks(scenario: Scenario, hours: float = 24.0) -> list[str]:
    """Each pod's hottest rack inlet (mean reading over the first ``hours`` under the
    fixed-setpoint baseline)."""
    env = PlantEnv(scenario, episode_hours=hours, record_log=True, sensor_check=None)
    run(env, policy_factory("fixed-setpoints")(scenario))
    log = env.log_frame()
    site = scenario.site
    names = []
    for p in range(site.n_pods):
        cols = [f"rack_inlet_c.{p}.{r:02d}" for r in range(site.racks_per_pod)]
        names.append(str(log[cols].mean().idxmax()))
    return names


def run(env: PlantEnv, policy: Policy) -> list[dict[str, Any]]:
    """One episode; per period: time, flags raised."""
    obs, info = env.reset(seed=0)
    policy.reset(1)
    rows = [info]
    truncated = False
    while not truncated:
        action = np.asarray(policy.act(obs[None, :]), dtype=np.float32)[0]
        obs, _, _, truncated, info = env.step(action)
        rows.append(info)
    return rows


def time_to_flag_h(
    scenario: Scenario,
    point: str,
    bias_c: float,
    onset_h: float,
    hours: float,
    kind: str = "sensor_bias",
) -> float:
    """Hours from the fault's onset to its flag (inf if never) under the fixed-setpoint
    site."""
    faulty = with_fault(scenario, kind, point, onset_h, bias_c)
    env = PlantEnv(faulty, episode_hours=hours)
    start_h = scenario.start_h + scenario.control_period_s / 3600.0
    for info in run(env, policy_factory("fixed-setpoints")(faulty)):
        for flag in info.get("sensor_flags_raised", ()):
            if flag.point == point:
                return (
                    float(info["time_h"]) - start_h - onset_h + scenario.control_period_s / 3600.0
                )
    return float("inf")


def false_flags(scenario: Scenario, policy_name: str) -> tuple[int, float, list[str]]:
    """Flags raised on a fault-free run: count, sensor-weeks monitored, which."""
    env = PlantEnv(scenario)
    rows = run(env, policy_factory(policy_name)(scenario))
    flags = [f.summary() for info in rows for f in info.get("sensor_flags_raised", ())]
    n_sensors = scenario.site.n_racks + 1
    weeks = env.episode_periods * scenario.control_period_s / (7 * 86_400.0)
    return len(flags), n_sensors * weeks, flags


def violation(scenario: Scenario, check: bool, policy_name: str = "mpc") -> dict[str, float]:
    """A shipped policy's K·h above 27 °C, hottest true inlet and cooling energy on the
    plant, with or without the sensor check."""
    policy = policy_factory(policy_name)(scenario)
    if check:
        kpis = evaluate(policy, scenario, on="plant").kpis
    else:
        env = PlantEnv(scenario, record_log=True, sensor_check=None)
        run(env, policy)
        kpis = compute_kpis(env.log_frame(), scenario.step_s).to_dict()
    return {
        "kh_above_27": float(kpis["violation_kh_above_27"]),
        "max_inlet_c": float(kpis["max_inlet_c"]),
        "cooling_kwh": float(kpis["cooling_kwh"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer racks and no MPC runs")
    args = parser.parse_args()
    started = time.perf_counter()
    results: dict[str, object] = {}

    # 1. Time to flag a -1.5 K bias: each pod's hottest rack and two others, three sites.
    delays: list[dict[str, object]] = []
    for name in ("holdout-typical-week", "eval-summer-2d", "holdout-heat-wave"):
        sc = load_scenario(name)
        points = hottest_racks(sc)
        if not args.quick:
            points += ["rack_inlet_c.1.12", "rack_inlet_c.3.07"]
        points.append("supply_air_c")
        for point in points:
            for bias_c in (-1.5, -0.5):
                delay = time_to_flag_h(sc, point, bias_c, onset_h=24.0, hours=30.0)
                row: dict[str, object] = {"scenario": name, "point": point, "bias_c": bias_c}
                row["delay_h"] = delay
                delays.append(row)
                print(f"{name} {point} {bias_c:+.1f} K: flagged {delay:.3f} h after", flush=True)
    frame = pd.DataFrame(delays)
    frame["sensor"] = np.where(frame.point == "supply_air_c", "supply air", "rack inlet")
    stuck = [
        time_to_flag_h(load_scenario(name), point, 0.0, 24.0, 36.0, kind="sensor_stuck")
        for name in ("holdout-typical-week", "eval-summer-2d")
        for point in ("rack_inlet_c.2.05", "rack_inlet_c.0.24", "supply_air_c")
    ]
    print(f"stuck: flagged {stuck} h after onset", flush=True)
    results["stuck_time_to_flag_h"] = stuck
    results["time_to_flag_h"] = {
        f"{sensor} {bias_c:+.1f} K": {
            "n": len(group),
            "median": float(group.delay_h.median()),
            "max": float(group.delay_h.max()),
        }
        for (sensor, bias_c), group in frame.groupby(["sensor", "bias_c"])
    }

    # 2. False flags on clean 7-day runs: the held-out suite under the site's fixed
    # setpoints and under trim-and-respond, and its typical week under the MPC.
    clean: list[dict[str, object]] = []
    total, weeks = 0, 0.0
    runs = [(name, "fixed-setpoints") for name in HELD_OUT]
    runs += [(name, "trim-and-respond") for name in HELD_OUT]
    if not args.quick:
        runs.append(("holdout-typical-week", "mpc"))
    for name, policy_name in runs:
        n, sensor_weeks, which = false_flags(load_scenario(name), policy_name)
        clean.append(
            {"scenario": name, "policy": policy_name, "flags": n, "sensor_weeks": sensor_weeks}
        )
        total, weeks = total + n, weeks + sensor_weeks
        print(f"clean {name} under {policy_name}: {n} flags {which}", flush=True)
    results["false_flags"] = {"runs": clean, "per_sensor_week": total / weeks}

    # 3. A biased (-1.5 K) hottest-rack sensor under the MPC and under trim-and-respond
    # (which resets supply air from the hottest inlet reading), with and without the check;
    # and a biased supply-air sensor on the heat wave.
    if not args.quick:
        controlled: list[dict[str, object]] = []
        cases = [(name, None) for name in ("holdout-typical-week", "holdout-heat-wave")]
        cases.append(("holdout-heat-wave", "supply_air_c"))
        for name, sensor in cases:
            sc = load_scenario(name)
            point = sensor or hottest_racks(sc)[0]
            faulty = with_fault(sc, "sensor_bias", point, 24.0, -1.5)
            for policy_name in ("mpc", "trim-and-respond"):
                case: dict[str, object] = {"scenario": name, "point": point, "policy": policy_name}
                case["clean_with_check"] = violation(sc, True, policy_name)
                case["bias_with_check"] = violation(faulty, True, policy_name)
                case["bias_without_check"] = violation(faulty, False, policy_name)
                controlled.append(case)
                print(json.dumps(case), flush=True)
        results["controlled"] = controlled
    results["wall_s"] = time.perf_counter() - started
    print(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()

"""Ray suite speed: one policy over a 40-scenario suite on the plant, here and on Ray.

Writes a suite of one-day windows of the reference site (a different week and site seed
each) into ``--out``, then evaluates one policy (trim-and-respond) on it

- here, one scenario after the other in this process (``evaluate_many`` without Ray);
- on a local Ray instance with 1, 2, … workers (one task per scenario), timed twice:
  *cold* — what ``twinloop evaluate --ray local --workers N`` costs, Ray's start, the
  workers' imports and the shut-down included — and *warm* — the suite alone, on an
  instance whose workers have already imported the project.

Checks that every run gives the same KPIs as the run here, prints the wall times and the
speed-ups, and writes them to ``--out/results.json``. On a machine others share, measure
several ``--rounds`` (the order alternates so that a drifting load evens out).

    python benchmarks/ray_suite_speed.py [--scenarios 40] [--workers 1 2] [--rounds 2]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import yaml

from control.evaluation import EvaluationResult
from control.scaleout import LOCAL, evaluate_many, ray_session
from physics.plant.scenario import Scenario

SCENARIO: dict[str, Any] = {
    "site": {"variant": "reference"},
    "weather": {"file": "pvlib:miami"},
    "workload": {"kind": "diurnal", "mean_frac": 0.6, "amplitude_frac": 0.15},
    "step": "60 s",
    "control_period": "5 min",
    "sensor_noise": 1.0,
}
TIMING_KPI = "computational_time_ratio"


def write_suite(out_dir: Path, count: int, days: float) -> Path:
    """``count`` scenarios of ``days`` days, one a week from 8 January, site seeds 1–5."""
    folder = out_dir / "scenarios"
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for k in range(count):
        start = dt.date(2001, 1, 8) + dt.timedelta(days=(7 * k) % 350)
        name = f"week{k + 1:02d}-site{k % 5 + 1}"
        doc = SCENARIO | {
            "name": name,
            "description": f"Benchmark: {days:g} day(s) from {start:%d %b}, site seed {k % 5 + 1}.",
            "site": {"variant": "reference", "seed": k % 5 + 1},
            "weather": {"file": "pvlib:miami", "start": f"{start:%m-%d}"},
            "duration": f"{days * 24:g} h",
            "seed": 100 + k,
        }
        (folder / f"{name}.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
        names.append(f"scenarios/{name}.yaml")
    suite = out_dir / "suite.yaml"
    suite.write_text(
        yaml.safe_dump(
            {
                "name": "ray-bench",
                "description": f"{count} one-week-apart {days:g}-day windows (benchmark)",
                "target": "plant",
                "scenarios": names,
            },
            sort_keys=False,
        )
    )
    return suite


def _kpis(result: EvaluationResult) -> dict[str, Any]:
    return {k: v for k, v in result.kpis.items() if k != TIMING_KPI}


def _same(a: list[EvaluationResult], b: list[EvaluationResult]) -> bool:
    return all(x.scenario == y.scenario and _kpis(x) == _kpis(y) for x, y in zip(a, b, strict=True))


def _warm_up(workers: int, scenario: Scenario, policy: str) -> int:
    """Run a short evaluation on every worker (imports, compiled kernels); the number of
    distinct worker processes that ran one."""
    import ray

    @ray.remote(num_cpus=1)
    def warm() -> int:
        from control.catalog import policy_factory
        from control.evaluation import evaluate

        evaluate(policy_factory(policy)(scenario), scenario)
        time.sleep(1.0)  # hold the CPU so that the next warm-up lands on another worker
        return os.getpid()

    return len(set(ray.get([warm.remote() for _ in range(workers)])))


def _timed_here(policy: str, scenarios: list[Scenario]) -> tuple[float, list[EvaluationResult]]:
    started = time.perf_counter()
    results = evaluate_many(policy, scenarios, progress=True)
    return time.perf_counter() - started, results


def _timed_ray(
    policy: str, scenarios: list[Scenario], workers: int
) -> tuple[float, float, int, list[EvaluationResult]]:
    """Cold and warm wall times on a local instance of ``workers`` CPUs, the number of
    workers warmed, and the results (of both runs, which are checked to agree)."""
    started = time.perf_counter()
    cold = evaluate_many(policy, scenarios, ray_address=LOCAL, workers=workers, progress=True)
    cold_s = time.perf_counter() - started
    with ray_session(LOCAL, workers=workers):
        warmed = _warm_up(workers, scenarios[0], policy)
        started = time.perf_counter()
        warm = evaluate_many(policy, scenarios, ray_address=LOCAL, progress=True)
        warm_s = time.perf_counter() - started
    if not _same(cold, warm):
        raise RuntimeError(f"two runs with {workers} worker(s) disagree")
    return cold_s, warm_s, warmed, cold


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", type=int, default=40, help="suite size (default: 40)")
    parser.add_argument("--days", type=float, default=1.0, help="days per scenario (default: 1)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="Ray worker counts")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="measure every case this often, alternating the order (a shared machine's load "
        "drifts); the median is reported (default: 1)",
    )
    parser.add_argument("--policy", default="trim-and-respond")
    parser.add_argument("--out", type=Path, default=Path("out/bench/ray"))
    args = parser.parse_args()

    suite_file = write_suite(args.out, args.scenarios, args.days)
    from control.suites import load_suite

    scenarios = list(load_suite(suite_file).scenarios)
    load_before = os.getloadavg()
    print(
        f"# {platform.node()}: {os.cpu_count()} CPUs, load average "
        f"{', '.join(f'{x:.1f}' for x in load_before)}; suite {suite_file} "
        f"({len(scenarios)} × {args.days:g} d), policy {args.policy}"
    )
    evaluate_many(args.policy, scenarios[:1])  # imports and compiled kernels, untimed
    cases: list[int] = [0, *args.workers]  # 0: here, without Ray
    times: dict[int, list[tuple[float, float]]] = {n: [] for n in cases}
    warmed: dict[int, int] = {}
    same = True
    reference: list[EvaluationResult] | None = None
    for r in range(args.rounds):
        for n in cases if r % 2 == 0 else cases[::-1]:
            if n == 0:
                wall_s, results = _timed_here(args.policy, scenarios)
                times[0].append((wall_s, wall_s))
                print(f"round {r + 1}, here, one after the other: {wall_s:.1f} s")
            else:
                cold_s, warm_s, warmed[n], results = _timed_ray(args.policy, scenarios, n)
                times[n].append((cold_s, warm_s))
                print(
                    f"round {r + 1}, Ray with {n} worker(s): cold {cold_s:.1f} s (start, "
                    f"imports, suite, shut-down), warm {warm_s:.1f} s (suite alone, "
                    f"{warmed[n]} worker(s) warmed)"
                )
            reference = reference or results
            same = same and _same(reference, results)
    here_s = statistics.median(t for t, _ in times[0])
    rows: list[dict[str, Any]] = []
    for n in args.workers:
        cold_s = statistics.median(c for c, _ in times[n])
        warm_s = statistics.median(w for _, w in times[n])
        rows.append(
            {
                "workers": n,
                "cold_s": round(cold_s, 2),
                "warm_s": round(warm_s, 2),
                "cold_s_rounds": [round(c, 2) for c, _ in times[n]],
                "warm_s_rounds": [round(w, 2) for _, w in times[n]],
                "warmed_workers": warmed[n],
                "speedup_vs_here_cold": round(here_s / cold_s, 2),
                "speedup_vs_here_warm": round(here_s / warm_s, 2),
            }
        )
    base = next((row for row in rows if row["workers"] == 1), None)
    print(f"median of {args.rounds} round(s): here {here_s:.1f} s")
    for row in rows:
        if base is not None:
            row["speedup_vs_1_worker_cold"] = round(base["cold_s"] / row["cold_s"], 2)
            row["speedup_vs_1_worker_warm"] = round(base["warm_s"] / row["warm_s"], 2)
        print(
            f"  Ray, {row['workers']} worker(s): cold {row['cold_s']:.1f} s, "
            f"warm {row['warm_s']:.1f} s"
            + (
                ""
                if base is None or row is base
                else f"; vs 1 worker {row['speedup_vs_1_worker_cold']:.2f}× cold, "
                f"{row['speedup_vs_1_worker_warm']:.2f}× warm"
            )
        )
    print(f"every run gave the same KPIs: {same}")
    payload = {
        "date_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {
            "node": platform.node(),
            "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
        },
        "suite": str(suite_file),
        "scenarios": len(scenarios),
        "days_each": args.days,
        "policy": args.policy,
        "rounds": args.rounds,
        "here_s": round(here_s, 2),
        "here_s_rounds": [round(t, 2) for t, _ in times[0]],
        "ray": rows,
        "same_kpis_everywhere": same,
    }
    out = args.out / "results.json"
    out.write_text(json.dumps(payload, indent=2) + "\n")
    print(out)


if __name__ == "__main__":
    main()

"""Plant speed: simulated days per wall-clock second at a 60 s step on one CPU core.

Measures the plant's ``step`` (physics, site control, sensors, ground-truth log) for one
site and for batches of sites stepped together (the batch dimension every physics model
carries). Pin to one core with ``taskset -c 0`` for the figure the issue asks for.

    taskset -c 0 python benchmarks/plant_speed.py [--days 2] [--batches 1 64 256 1024]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

from physics.plant.plant import Plant  # noqa: E402
from physics.plant.site import site_variant  # noqa: E402
from physics.weather import hour_of_year, load_weather  # noqa: E402
from physics.workload import WorkloadSpec, make_workload  # noqa: E402


def measure(n_sites: int, days: float) -> dict[str, float]:
    step_s = 60.0
    n_steps = int(days * 86_400 / step_s)
    start_h = hour_of_year(7, 1)
    time_h = start_h + np.arange(n_steps) * step_s / 3600.0
    util = make_workload(WorkloadSpec(kind="diurnal"), time_h, 4, seed=0)
    plant = Plant(
        site_variant("reference"),
        weather=load_weather("pvlib:miami"),
        utilisation=util,
        start_h=start_h,
        seeds=tuple(range(n_sites)),
        step_s=step_s,
        warmup_steps=10,
    )
    started = time.perf_counter()
    while not plant.done:
        plant.step()
    wall = time.perf_counter() - started
    return {
        "sites": n_sites,
        "steps": n_steps,
        "wall_s": round(wall, 3),
        "step_ms": round(wall / n_steps * 1e3, 3),
        "site_days_per_s": round(n_sites * days / wall, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=float, default=1.0, help="simulated days per run")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 64, 256, 1024])
    args = parser.parse_args()
    affinity = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    print(f"# {platform.processor() or platform.machine()}, cores allowed: {affinity}")
    for n in args.batches:
        print(json.dumps(measure(n, args.days if n <= 256 else min(args.days, 0.5))))


if __name__ == "__main__":
    main()

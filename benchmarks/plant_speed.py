"""Plant speed: simulated days per wall-clock second at a 60 s step on one CPU core.

Measures ``Plant.advance`` (physics, site control, sensors, ground-truth log) for one site
and for batches of sites stepped together, run straight through and with a controller's
command every 5 minutes. Pin to one core with ``taskset -c 0`` for the figure the issue
asks for.

    taskset -c 0 python benchmarks/plant_speed.py [--days 1] [--batches 1 64 256 1024]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from typing import Any

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

from physics.plant.plant import Plant  # noqa: E402
from physics.plant.site import site_variant  # noqa: E402
from physics.plant.site_control import SetpointCommand  # noqa: E402
from physics.weather import hour_of_year, load_weather  # noqa: E402
from physics.workload import WorkloadSpec, make_workload  # noqa: E402


def measure(n_sites: int, days: float, chunk_steps: int | None) -> dict[str, Any]:
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
    if chunk_steps is None:
        plant.advance(n_steps)
    else:
        while not plant.done:
            plant.apply_command(SetpointCommand("bench", plant.time_s + 600.0, supply_air_c=22.0))
            plant.advance(min(chunk_steps, plant.n_steps - plant.step_index))
    wall = time.perf_counter() - started
    return {
        "sites": n_sites,
        "command_every_steps": chunk_steps,
        "steps": n_steps,
        "wall_s": round(wall, 3),
        "us_per_site_step": round(wall / n_steps / n_sites * 1e6, 2),
        "site_days_per_s": round(n_sites * days / wall, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=float, default=1.0, help="simulated days per run")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 64, 256, 1024])
    parser.add_argument("--repeat", type=int, default=3, help="runs per case; the median is shown")
    args = parser.parse_args()
    affinity = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    print(f"# {platform.processor() or platform.machine()}, cores allowed: {affinity}")
    measure(1, 0.01, None)  # compile (or load the cache) outside the timing
    cases = [(n, None) for n in args.batches] + [(1, 5)]
    for n, chunk in cases:
        runs = [measure(n, args.days, chunk) for _ in range(args.repeat)]
        runs.sort(key=lambda r: r["wall_s"])
        print(json.dumps({**runs[len(runs) // 2], "repeats": args.repeat}))


if __name__ == "__main__":
    main()

"""Annualised PUE of the reference site under its built-in control, tropical weather.

The year is simulated as twelve consecutive month-long segments of the same site run side
by side (one batch, per-site start hours), each after the plant's warm-up, so the whole
typical year is covered at a 60 s step. Prints PUE, inlet range and energy by subsystem.

    python benchmarks/annual_pue.py [--site-seed 7] [--weather pvlib:miami]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import pandas as pd

from physics.kpi import compute_kpis
from physics.plant.plant import Plant
from physics.plant.site import site_variant
from physics.weather import load_weather
from physics.workload import WorkloadSpec, make_workload

HOURS_PER_SEGMENT = 730.0  # 12 × 730 h = 8760 h


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--site-seed", type=int, default=7)
    parser.add_argument("--weather", default="pvlib:miami")
    parser.add_argument("--variant", default="reference")
    args = parser.parse_args()
    step_s = 60.0
    n_steps = int(HOURS_PER_SEGMENT * 3600 / step_s)
    starts = np.arange(12) * HOURS_PER_SEGMENT
    time_h = np.arange(n_steps) * step_s / 3600.0
    util = make_workload(WorkloadSpec(kind="diurnal"), time_h, 4, seed=1)
    plant = Plant(
        site_variant(args.variant),
        weather=load_weather(args.weather),
        utilisation=util,
        start_h=starts,
        seeds=(args.site_seed,) * 12,
        step_s=step_s,
    )
    logs = np.empty((12, n_steps, len(plant.log_names)))
    started = time.perf_counter()
    while not plant.done:
        k = plant.step_index
        plant.step()
        logs[:, k] = plant.last_log
    wall = time.perf_counter() - started
    frame = pd.DataFrame(logs.reshape(12 * n_steps, -1), columns=list(plant.log_names))
    year = compute_kpis(frame, step_s)
    months = [
        round(compute_kpis(pd.DataFrame(logs[m], columns=list(plant.log_names)), step_s).pue, 4)
        for m in range(12)
    ]
    print(
        json.dumps(
            {
                "weather": args.weather,
                "site": args.variant,
                "site_seed": args.site_seed,
                "simulated_hours": 12 * HOURS_PER_SEGMENT,
                "wall_s": round(wall, 1),
                "annual_pue": round(year.pue, 4),
                "monthly_pue": months,
                "min_inlet_c": round(year.min_inlet_c, 2),
                "max_inlet_c": round(year.max_inlet_c, 2),
                "violation_kh_above_27": year.violation_kh_above_27,
                "it_mwh": round(year.it_kwh / 1e3, 1),
                "cooling_mwh": round(year.cooling_kwh / 1e3, 1),
                "chiller_mwh": round(year.chiller_kwh / 1e3, 1),
                "crah_fan_mwh": round(year.crah_fan_kwh / 1e3, 1),
                "pump_mwh": round(year.pump_kwh / 1e3, 1),
                "tower_fan_mwh": round(year.tower_fan_kwh / 1e3, 1),
                "power_chain_loss_mwh": round(year.power_chain_loss_kwh / 1e3, 1),
                "wue_l_per_kwh": round(year.wue_l_per_kwh, 3),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()

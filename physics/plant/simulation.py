"""Run a scenario on the plant and keep what happened: ground truth, readings, KPIs.

A *policy* here is any callable that, once per control period, receives the latest sensor
readings and returns a :class:`SetpointCommand` (or ``None`` to leave the site's own
control in charge). ``twinloop simulate`` runs with no policy: the site's built-in control.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from physics.kpi import KpiReport, compute_kpis
from physics.plant.plant import Plant
from physics.plant.report import write_report
from physics.plant.scenario import Scenario
from physics.plant.sensors import SensorFrame
from physics.plant.site_control import SetpointCommand
from physics.workload import make_workload

logger = logging.getLogger(__name__)

Policy = Callable[[SensorFrame, float], SetpointCommand | None]
"""(readings, plant time in s) → command for the next control period, or None."""


@dataclass(frozen=True)
class SimulationResult:
    """One run: ground-truth log, sensor readings (what a BMS would show) and KPIs."""

    scenario: Scenario
    log: pd.DataFrame
    readings: pd.DataFrame
    kpis: KpiReport
    wall_s: float


def build_plant(scenario: Scenario, seeds: Sequence[int] | None = None) -> Plant:
    """The plant of a scenario: its site, weather, workload and faults."""
    time_h = scenario.start_h + np.arange(scenario.n_steps) * scenario.step_s / 3600.0
    utilisation = make_workload(scenario.workload, time_h, scenario.site.n_pods, seed=scenario.seed)
    return Plant(
        scenario.site,
        weather=scenario.weather(),
        utilisation=utilisation,
        start_h=scenario.start_h,
        faults=scenario.faults,
        seeds=tuple(seeds) if seeds is not None else (scenario.site_seed,),
        step_s=scenario.step_s,
        noise=scenario.noise,
    )


def run_scenario(
    scenario: Scenario,
    policy: Policy | None = None,
    *,
    progress: bool = False,
) -> SimulationResult:
    """Run ``scenario`` on the plant (one site) under ``policy`` or the site's control."""
    plant = build_plant(scenario)
    n, per = plant.n_steps, scenario.steps_per_period
    chunk = per if policy is not None else max(per, 1440)
    log = np.empty((n, len(plant.log_names)))
    readings = np.empty((n, len(plant.point_names)))
    frame: SensorFrame | None = None
    started = time.perf_counter()
    bar = tqdm(total=n, disable=not progress, unit="step", desc=scenario.name, leave=False)
    with bar:
        k = 0
        while k < n:
            if policy is not None and frame is not None:
                plant.apply_command(policy(frame, plant.time_s))
            m = min(chunk, n - k)
            logs, reads = plant.advance(m)
            log[k : k + m] = logs[:, 0]
            readings[k : k + m] = reads[:, 0]
            frame = plant.last_frame
            k += m
            bar.update(m)
    wall_s = time.perf_counter() - started
    log_frame = pd.DataFrame(log, columns=list(plant.log_names))
    readings_frame = pd.DataFrame(readings, columns=list(plant.point_names))
    readings_frame.insert(0, "time_h", log_frame["time_h"])
    kpis = compute_kpis(log_frame, scenario.step_s)
    logger.info(
        "%s: %.1f simulated days in %.1f s, PUE %.3f",
        scenario.name,
        scenario.duration_h / 24.0,
        wall_s,
        kpis.pue,
    )
    return SimulationResult(scenario, log_frame, readings_frame, kpis, wall_s)


def write_outputs(result: SimulationResult, out_dir: Path) -> list[Path]:
    """KPIs as JSON, the time series as Parquet, and the plot report, under ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    kpi_path = out_dir / "kpis.json"
    payload = {
        "scenario": result.scenario.name,
        "source": result.scenario.source,
        "site": result.scenario.site.name,
        "site_seed": result.scenario.site_seed,
        "duration_h": result.scenario.duration_h,
        "wall_clock_s": round(result.wall_s, 3),
        "kpis": result.kpis.to_dict(),
    }
    kpi_path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    truth_path = out_dir / "timeseries.parquet"
    result.log.to_parquet(truth_path, index=False)
    readings_path = out_dir / "sensors.parquet"
    result.readings.to_parquet(readings_path, index=False)
    plots = write_report(result.log, result.kpis, out_dir, title=result.scenario.name)
    return [kpi_path, truth_path, readings_path, *plots]

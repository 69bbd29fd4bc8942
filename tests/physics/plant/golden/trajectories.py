"""Golden trajectories of the plant: recorded once, compared at tight tolerance after.

The plant's step is written once (the compiled engine of :mod:`physics.plant.kernel`), so
its correctness cannot rest on a second copy of the code. These runs were recorded from the
plant as it stood before the physics was unified (2026-12-04, when a numpy engine and the
compiled engine agreed to 1e-7 on them) and pin its behaviour: every fault and a command on
two sites of two designs, a controller that moves every setpoint each 5-minute period, and
the KPIs of shipped scenarios. Re-record only for a deliberate physics change, with
``python -m tests.physics.plant.golden.trajectories`` and a commit message that says why.
Re-recorded once since (issue 15): the site's Guideline 36 economiser enable, the CRAH
failure sequence and the equipment status points.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from physics.plant.faults import FaultEvent
from physics.plant.plant import Plant
from physics.plant.scenario import load_scenario
from physics.plant.simulation import run_scenario
from physics.plant.site import site_variant
from physics.plant.site_control import SetpointCommand
from physics.weather import hour_of_year, load_weather
from physics.workload import WorkloadSpec, make_workload

HERE = Path(__file__).parent
VARIANTS = ("reference", "no_redundancy")
SCENARIOS = ("chiller-trip", "tropical-typical-week")

EVERY_FAULT = [
    FaultEvent("coil_fouling", 0.5, 2.0, magnitude=0.3, target=1),
    FaultEvent("chiller_trip", 1.0, 1.0, target=0),
    FaultEvent("condenser_fouling", 1.5, 2.0, magnitude=2.0),
    FaultEvent("tower_fan_failure", 2.0, 0.5, magnitude=1.0),
    FaultEvent("tower_fan_failure", 3.0, 0.5, magnitude=0.5),
    FaultEvent("crah_fan_trip", 2.5, 1.0, target=3),
    FaultEvent("stuck_valve", 0.2, 3.0, magnitude=0.8, target=5),
    FaultEvent("containment_door_open", 3.5, 1.0, target=2),
    FaultEvent("pump_wear", 1.2, 2.0, magnitude=0.3),
    FaultEvent("sensor_bias", 0.7, 1.0, magnitude=1.5, target="chw_supply_c"),
    FaultEvent("sensor_stuck", 1.7, 1.0, target="rack_inlet_c.1.03"),
    FaultEvent("workload_surge", 2.2, 1.5, magnitude=0.3, target=0),
]


def faulted_plant(variant: str, **kwargs: Any) -> Plant:
    """300 steps of two sites (a cold July and a colder January) under every fault."""
    n_steps = 300
    time_h = np.arange(n_steps) / 60.0
    util = 0.55 + 0.1 * np.sin(time_h[:, None] + np.arange(4)[None, :])
    return Plant(
        site_variant(variant),
        weather=load_weather("pvlib:sand-point"),  # cold: the economiser runs
        utilisation=util,
        start_h=[hour_of_year(7, 1), hour_of_year(1, 15)],
        seeds=(3, 4),
        faults=EVERY_FAULT,
        warmup_steps=60,
        **kwargs,
    )


def drive_with_command(plant: Plant, chunk: int) -> tuple[np.ndarray, np.ndarray]:
    """Site control, then a command that expires mid-chunk, then site control again."""
    logs, reads = [], []
    while not plant.done:
        k = plant.step_index
        if k == 46:
            plant.apply_command(
                SetpointCommand(
                    "c1",
                    expires_at_s=(k + 97) * plant.step_s + 13.0,
                    supply_air_c=np.array([24.0, np.nan]),
                    fan_speed_frac=0.65,
                    chw_supply_c=16.0,
                    cw_supply_c=20.0,
                    economiser_enable=1.0,
                )
            )
        m = min(chunk, plant.n_steps - k, 46 - k if k < 46 else chunk)
        log, read = plant.advance(m)
        logs.append(log)
        reads.append(read)
    return np.concatenate(logs), np.concatenate(reads)


def controlled_plant(**kwargs: Any) -> Plant:
    """Two Miami summer days of the reference site with a diurnal load."""
    step_s, n_steps = 60.0, 2 * 1440
    start_h = hour_of_year(7, 20)
    time_h = start_h + np.arange(n_steps) * step_s / 3600.0
    util = make_workload(WorkloadSpec(kind="diurnal"), time_h, 4, seed=0)
    return Plant(
        site_variant("reference"),
        weather=load_weather("pvlib:miami"),
        utilisation=util,
        start_h=start_h,
        seeds=(7,),
        warmup_steps=30,
        **kwargs,
    )


def drive_every_setpoint(plant: Plant) -> np.ndarray:
    """A 5-minute controller that moves all five setpoints; the hourly ground-truth rows."""
    rows = []
    period = 0
    while not plant.done:
        phase = period / 12.0
        plant.apply_command(
            SetpointCommand(
                f"p{period}",
                expires_at_s=plant.time_s + 600.0,
                supply_air_c=21.0 + 3.0 * np.sin(phase),
                fan_speed_frac=0.6 + 0.3 * np.sin(1.7 * phase),
                chw_supply_c=10.0 + 4.0 * np.sin(0.6 * phase),
                cw_supply_c=24.0 + 5.0 * np.sin(0.9 * phase),
                economiser_enable=float(period % 7 < 3),
            )
        )
        log, _ = plant.advance(min(5, plant.n_steps - plant.step_index))
        if period % 12 == 11:
            rows.append(log[-1])
        period += 1
    return np.stack(rows)


def scenario_kpis(name: str) -> dict[str, float]:
    kpis = run_scenario(load_scenario(name)).kpis.to_dict()
    return {k: float(v) for k, v in kpis.items() if isinstance(v, int | float)}


def cases() -> Iterator[tuple[str, dict[str, np.ndarray]]]:
    for variant in VARIANTS:
        log, _ = drive_with_command(faulted_plant(variant), chunk=23)
        yield f"faulted-{variant}", {"log": log}
    yield "controlled", {"hourly_log": drive_every_setpoint(controlled_plant())}


def record() -> None:
    for name, arrays in cases():
        np.savez_compressed(HERE / f"{name}.npz", **arrays)
    kpis = {name: scenario_kpis(name) for name in SCENARIOS}
    (HERE / "scenario_kpis.json").write_text(json.dumps(kpis, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    record()

"""The plot of one evaluation run (``run.png`` beside its ``kpis.json``), as ``twinloop
simulate`` draws its report: the applied setpoints, the hottest rack inlet against the
27 °C recommended and 32 °C allowable limits, and the facility and cooling power.

It reads the per-period series of :class:`control.evaluation.EvaluationResult` and draws
it with :func:`physics.plant.report.plot_control_run`. On the plant the inlet and the
powers are the plant's ground truth (the hottest inlet the sensors reported is drawn too);
in the twin they are the members' mean, the worst member's hottest inlet and the members'
range of cooling power, and the setpoints are member 0's (the members' loops differ as
their predictions do).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from physics.plant.report import Band, ControlRunSeries, plot_control_run

if TYPE_CHECKING:
    from control.evaluation import EvaluationResult

FloatArray = NDArray[np.float64]

RUN_PLOT = "run.png"
"""File name of an evaluation run's plot, in the run's output folder."""

SETPOINTS_C: dict[str, str] = {
    "sp.supply_air_c": "Supply air",
    "sp.chw_supply_c": "CHW supply",
    "sp.cw_supply_c": "CW supply",
}
"""Temperature setpoints (series column → legend label)."""

SETPOINTS_FRAC: dict[str, str] = {
    "sp.fan_speed_frac": "CRAH fan speed",
    "sp.economiser_enable": "Economiser enable",
}
"""Fraction and on/off setpoints (series column → legend label)."""

PLANT_INLET_C: dict[str, str] = {
    "true_max_inlet_c": "Hottest inlet (plant truth)",
    "max_inlet_c": "Hottest inlet (sensors)",
}
TWIN_INLET_C: dict[str, str] = {
    "max_inlet_c": "Hottest inlet (members' mean)",
    "max_inlet_c_worst": "Hottest inlet (worst member)",
}
PLANT_ENERGY_KWH: dict[str, str] = {
    "true_facility_kwh": "Facility",
    "true_it_kwh": "IT",
    "true_cooling_kwh": "Cooling",
}
"""Per-period energies of a plant run (kWh) drawn as mean power."""


def _columns(
    series: pd.DataFrame, names: dict[str, str], scale: float = 1.0
) -> dict[str, FloatArray]:
    return {
        label: series[col].to_numpy(dtype=np.float64) * scale
        for col, label in names.items()
        if col in series.columns
    }


def period_hours(series: pd.DataFrame, duration_h: float) -> float:
    """Length of one control period (h): the step of the series' clock, else the run's
    duration over its periods."""
    time_h = series["time_h"].to_numpy(dtype=np.float64) if "time_h" in series else np.empty(0)
    steps = np.diff(time_h[np.isfinite(time_h)])
    if steps.size and float(np.median(steps)) > 0.0:
        return float(np.median(steps))
    return duration_h / max(len(series), 1)


def run_series(series: pd.DataFrame, on: str, duration_h: float) -> ControlRunSeries:
    """The plotted series of an evaluation run on ``on`` (``"plant"`` or ``"twin"``)."""
    hours = period_hours(series, duration_h)
    per_kw = 1.0 / hours
    n = len(series)
    time_h = (
        series["time_h"].to_numpy(dtype=np.float64)
        if "time_h" in series
        else np.arange(1, n + 1, dtype=np.float64) * hours
    )
    power_band: Band | None = None
    if on == "plant":
        inlet = _columns(series, PLANT_INLET_C)
        power = _columns(series, PLANT_ENERGY_KWH, per_kw)
    else:
        inlet = _columns(series, TWIN_INLET_C)
        power = _columns(series, {"facility_kw": "Facility (members' mean)"})
        power |= _columns(series, {"cooling_kwh": "Cooling (members' mean)"}, per_kw)
        if {"cooling_kwh_min", "cooling_kwh_max"} <= set(series.columns):
            lo = series["cooling_kwh_min"].to_numpy(dtype=np.float64) * per_kw
            hi = series["cooling_kwh_max"].to_numpy(dtype=np.float64) * per_kw
            power_band = (lo, hi, "Cooling (members' range)")
    return ControlRunSeries(
        time_h=time_h,
        setpoints_c=_columns(series, SETPOINTS_C),
        setpoints_frac=_columns(series, SETPOINTS_FRAC),
        inlet_c=inlet,
        power_kw=power,
        power_band=power_band,
    )


def write_run_plot(result: EvaluationResult, out_dir: Path) -> Path:
    """Draw ``result`` into ``out_dir/run.png`` (the folder must exist); its path."""
    duration_h = float(result.kpis.get("duration_h", len(result.series) / 12.0))
    run = run_series(result.series, result.on, duration_h)
    title = f"{result.policy} on {result.scenario} ({result.on})"
    return plot_control_run(run, title, Path(out_dir) / RUN_PLOT)

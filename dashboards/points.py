"""The historian's point names as the dashboard groups them (plant points keep the names of
``physics.plant.sensors.point_catalog``; the live loop adds ``twin.``, ``ctl.``, ``kpi.``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from connectors.historian import Historian, Reading
from control.alarms import RACK_INLET as RACK_INLET
from control.alarms import rack_inlets as rack_inlets

IT_POWER_PREFIX = "it_power_kw."
FACILITY_POWER = "facility_power_kw"
TEMPERATURES: tuple[tuple[str, str], ...] = (
    ("supply_air_c", "supply air"),
    ("return_air_c", "return air"),
    ("chw_supply_c", "chilled water supply"),
    ("chw_return_c", "chilled water return"),
    ("cw_supply_c", "condenser water supply"),
    ("cw_return_c", "condenser water return"),
)
COOLING_SUBSYSTEMS: tuple[tuple[str, str], ...] = (
    ("chillers", "chiller_power_kw."),
    ("CRAH fans", "crah_fan_power_kw"),
    ("chilled-water pumps", "chw_pump_power_kw"),
    ("condenser pumps", "cw_pump_power_kw"),
    ("tower fans", "tower_fan_power_kw"),
)
"""Subsystem → point name, or prefix (ending in '.') of the points summed into it."""

TWIN_PREFIX = "twin."
TWIN_PARAM_PREFIX = "twin.param."
TWIN_STD_PREFIX = "twin.std."
KPI_PUE = "kpi.pue"


def matching(points: Iterable[str], pattern: str) -> list[str]:
    """The points a name or a prefix (ending in '.') stands for."""
    if pattern.endswith("."):
        return sorted(p for p in points if p.startswith(pattern))
    return [p for p in points if p == pattern]


def inlet_grid(latest: Mapping[str, Reading]) -> pd.DataFrame:
    """Newest rack-inlet temperatures as a pods × racks table (NaN where bad or missing)."""
    cells: dict[tuple[int, int], float] = {}
    for name, reading in latest.items():
        match = RACK_INLET.fullmatch(name)
        if match:
            good = reading.quality == "good"
            cells[(int(match["pod"]), int(match["rack"]))] = reading.value if good else np.nan
    if not cells:
        return pd.DataFrame(dtype=float)
    pods = sorted({p for p, _ in cells})
    racks = sorted({r for _, r in cells})
    grid = pd.DataFrame(np.nan, index=pods, columns=racks)
    for (pod, rack), value in cells.items():
        grid.loc[pod, rack] = value
    grid.index.name, grid.columns.name = "pod", "rack"
    return grid


def power_points(points: Sequence[str]) -> list[str]:
    """Every point the power-by-subsystem view reads."""
    wanted = [*matching(points, IT_POWER_PREFIX), *matching(points, FACILITY_POWER)]
    for _, pattern in COOLING_SUBSYSTEMS:
        wanted += matching(points, pattern)
    return wanted


def _sum(frame: pd.DataFrame, columns: Sequence[str]) -> pd.Series:
    """Row sums that stay NaN where any summed point has no sample (no partial totals)."""
    return frame[list(columns)].sum(axis=1, min_count=len(columns))


def subsystem_power(frame: pd.DataFrame) -> pd.DataFrame:
    """Power by subsystem (kW) from a historian frame of :func:`power_points`: IT, each
    cooling subsystem, and ``other`` (facility − IT − cooling: power-chain losses, lighting)."""
    out = pd.DataFrame(index=frame.index)
    it = matching(frame.columns, IT_POWER_PREFIX)
    if it:
        out["IT"] = _sum(frame, it)
    cooling: list[str] = []
    for label, pattern in COOLING_SUBSYSTEMS:
        columns = matching(frame.columns, pattern)
        if columns:
            out[label] = _sum(frame, columns)
            cooling.append(label)
    if FACILITY_POWER in frame.columns and it and cooling:
        out["other"] = frame[FACILITY_POWER] - out["IT"] - out[cooling].sum(axis=1, min_count=1)
    return out


def cooling_power(frame: pd.DataFrame) -> pd.Series:
    """Total cooling power (kW): the sum of the cooling subsystems."""
    parts = subsystem_power(frame)
    labels = [label for label, _ in COOLING_SUBSYSTEMS if label in parts.columns]
    return parts[labels].sum(axis=1, min_count=len(labels))


def pue(frame: pd.DataFrame) -> pd.Series:
    """Facility power over IT power, per sample, from the meters."""
    it = matching(frame.columns, IT_POWER_PREFIX)
    if not it or FACILITY_POWER not in frame.columns:
        return pd.Series(dtype=float, index=frame.index)
    total_it = _sum(frame, it)
    return frame[FACILITY_POWER] / total_it.where(total_it > 0)


# --------------------------------------------------------------------------- the twin
DERIVED_MEASUREMENTS: Mapping[str, str] = {
    "rack_inlet_max_c": "the hottest rack inlet",
    "cooling_power_kw": "the sum of the cooling subsystems",
}
"""Twin outputs whose measured counterpart is computed from several plant points."""


def twin_outputs(points: Iterable[str]) -> list[str]:
    """Names X with a prediction ``twin.X`` (not parameters, not uncertainties)."""
    return sorted(
        p.removeprefix(TWIN_PREFIX)
        for p in points
        if p.startswith(TWIN_PREFIX)
        and not p.startswith(TWIN_PARAM_PREFIX)
        and not p.startswith(TWIN_STD_PREFIX)
    )


def has_measurement(name: str, points: Sequence[str]) -> bool:
    """Whether the plant measures what the twin output ``name`` predicts."""
    if name == "rack_inlet_max_c":
        return bool(rack_inlets(points))
    if name == "cooling_power_kw":
        return any(matching(points, pattern) for _, pattern in COOLING_SUBSYSTEMS)
    return name in points


def measured(
    historian: Historian,
    name: str,
    points: Sequence[str],
    *,
    since_s: float | None,
    until_s: float | None = None,
) -> pd.Series | None:
    """The measured counterpart of the twin's output ``name`` over [since_s, until_s]; None
    if the plant has none."""
    if name == "rack_inlet_max_c":
        inlets = rack_inlets(points)
        if not inlets:
            return None
        return historian.across(inlets, since_s=since_s, until_s=until_s, how="max")
    if name == "cooling_power_kw":
        wanted = [p for _, pat in COOLING_SUBSYSTEMS for p in matching(points, pat)]
        if not wanted:
            return None
        return cooling_power(historian.series(wanted, since_s=since_s, until_s=until_s))
    if name in points:
        return historian.series([name], since_s=since_s, until_s=until_s)[name]
    return None


def align(predicted: pd.Series, actual: pd.Series, *, tolerance_s: float) -> pd.DataFrame:
    """Predictions paired with the nearest measurement within ``tolerance_s``:
    columns ``predicted``, ``measured``, ``error`` (predicted − measured), index ``time_s``."""
    left = predicted.dropna().rename("predicted").rename_axis("time_s").reset_index()
    right = actual.dropna().rename("measured").rename_axis("time_s").reset_index()
    if left.empty or right.empty:
        return pd.DataFrame(columns=["predicted", "measured", "error"], dtype=float)
    pairs = pd.merge_asof(
        left.sort_values("time_s"),
        right.sort_values("time_s"),
        on="time_s",
        direction="nearest",
        tolerance=round(tolerance_s),
    ).dropna()
    pairs["error"] = pairs["predicted"] - pairs["measured"]
    return pairs.set_index("time_s")


# --------------------------------------------------------------------------- setpoints
COMMAND_PREFIX = "ctl."
"""TwinLoop's command of a writable setpoint (``ctl.<field>``), written each control period
while it holds the point."""
SETPOINT_MEASURED: Mapping[str, tuple[str, str, str]] = {
    "supply_air_c": ("supply_air_c", "supply air", "°C"),
    "fan_speed_frac": ("crah_fan_speed_frac", "CRAH fan speed", "fraction"),
    "chw_supply_c": ("chw_supply_c", "chilled water supply", "°C"),
    "cw_supply_c": ("cw_supply_c", "condenser water supply", "°C"),
    "economiser_enable": ("economiser_enabled", "economiser", "on = 1"),
}
"""Writable setpoint → (the sensor point that measures it, its name for an operator, unit)."""


def rack_inlets_of_pod(points: Iterable[str], pod: int) -> list[str]:
    """The rack-inlet points of pod ``pod``, by rack."""
    found = [(m, p) for p in points if (m := RACK_INLET.fullmatch(p)) and int(m["pod"]) == pod]
    return [p for m, p in sorted(found, key=lambda item: int(item[0]["rack"]))]

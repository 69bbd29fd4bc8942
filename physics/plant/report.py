"""Plot report of a simulation run: an offline Plotly HTML page and matplotlib PNGs.

The report reads the plant's log frame (the columns :func:`physics.kpi.compute_kpis` reads,
plus optional air and water temperatures) and a :class:`~physics.kpi.KpiReport`. Plots are
decimated to at most :data:`MAX_PLOT_POINTS` samples per trace; the KPI table always holds
the exact values computed over the full run.

:func:`plot_control_run` draws a controlled run (an evaluation, on the plant or in the
twin) from per-period series: the applied setpoints, the hottest rack inlet against the
ASHRAE limits, and the facility and cooling power.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from numpy.typing import NDArray

from physics import kpi
from physics.constants import SECONDS_PER_HOUR

logger = logging.getLogger(__name__)

MAX_PLOT_POINTS = 5_000
"""Most samples drawn per trace (every k-th row is kept beyond this)."""
PUE_WINDOW_S = 3_600.0
"""Length of the trailing window of the rolling PUE."""

TEMPERATURE_COLUMNS: dict[str, str] = {
    "supply_air_c": "Supply air",
    "return_air_c": "Return air",
    "chw_supply_c": "CHW supply",
    "chw_return_c": "CHW return",
    "cw_supply_c": "CW supply",
    "cw_return_c": "CW return",
    "outdoor_dry_bulb_c": "Outdoor dry bulb",
    "outdoor_wet_bulb_c": "Outdoor wet bulb",
}
"""Air, water and weather temperatures plotted when present, with their legend labels."""

POWER_GROUPS: dict[str, tuple[str, ...]] = {
    "IT": ("it_power_kw",),
    "Chillers": ("chiller_power_kw",),
    "CRAH fans": ("crah_fan_power_kw",),
    "Pumps (CHW + CW)": ("chw_pump_power_kw", "cw_pump_power_kw"),
    "Tower fans": ("tower_fan_power_kw",),
    "Economiser": ("economiser_power_kw",),
    "Power-chain losses": ("ups_loss_kw", "pdu_loss_kw", "transformer_loss_kw"),
    "Lighting + aux": ("lighting_kw", "aux_kw"),
}
"""Stacked power areas, bottom to top, and the log columns summed into each."""

ASHRAE_LINES_C: dict[str, float] = {
    "ASHRAE recommended 27 °C": kpi.ASHRAE_RECOMMENDED_MAX_C,
    "ASHRAE A1 allowable 32 °C": kpi.ASHRAE_A1_ALLOWABLE_MAX_C,
}


@dataclass(frozen=True)
class ReportSeries:
    """The decimated series that every plot of the report draws (time in h, °C, kW)."""

    time_h: NDArray[np.float64]
    inlet_c: dict[str, NDArray[np.float64]]
    temperatures_c: dict[str, NDArray[np.float64]]
    power_kw: dict[str, NDArray[np.float64]]
    facility_kw: NDArray[np.float64] | None
    pue_1h: NDArray[np.float64] | None


def _column(frame: pd.DataFrame, name: str) -> NDArray[np.float64]:
    return frame[name].to_numpy(dtype=np.float64)


def _trailing_sum(x: NDArray[np.float64], window: int) -> NDArray[np.float64]:
    """Sum of the last ``window`` samples up to each sample (fewer at the start)."""
    cs = np.concatenate(([0.0], np.cumsum(x)))
    idx = np.arange(1, x.size + 1)
    return cs[idx] - cs[np.maximum(idx - window, 0)]


def report_series(frame: pd.DataFrame, kpis: kpi.KpiReport) -> ReportSeries:
    """Extract (and decimate) the plotted series from a plant log."""
    n = len(frame)
    if n == 0:
        raise ValueError("cannot report on an empty frame")
    step_h = kpis.duration_h / n if kpis.duration_h > 0.0 else 1.0 / 60.0
    stride = max(1, -(-n // MAX_PLOT_POINTS))
    rows = slice(None, None, stride)
    time_h = (
        _column(frame, "time_h")
        if "time_h" in frame.columns
        else np.arange(n, dtype=np.float64) * step_h
    )

    inlet_c: dict[str, NDArray[np.float64]] = {}
    if inlet_cols := kpi.rack_inlet_columns(frame):
        inlet = frame[inlet_cols].to_numpy(dtype=np.float64)
        inlet_c = {
            "Inlet max": np.max(inlet, axis=1)[rows],
            "Inlet mean": np.mean(inlet, axis=1)[rows],
            "Inlet min": np.min(inlet, axis=1)[rows],
        }
    temperatures_c = {
        label: _column(frame, col)[rows]
        for col, label in TEMPERATURE_COLUMNS.items()
        if col in frame.columns
    }
    power_kw = {
        label: np.sum([_column(frame, c) for c in present], axis=0)[rows]
        for label, cols in POWER_GROUPS.items()
        if (present := [c for c in cols if c in frame.columns])
    }
    facility_kw = pue_1h = None
    if "facility_power_kw" in frame.columns:
        facility = _column(frame, "facility_power_kw")
        facility_kw = facility[rows]
        if "it_power_kw" in frame.columns:
            window = max(1, round(PUE_WINDOW_S / (step_h * SECONDS_PER_HOUR)))
            ratio = kpi.pue(
                _trailing_sum(facility, window),
                _trailing_sum(_column(frame, "it_power_kw"), window),
            )
            pue_1h = np.asarray(ratio, dtype=np.float64)[rows]
    return ReportSeries(time_h[rows], inlet_c, temperatures_c, power_kw, facility_kw, pue_1h)


def format_number(value: float | None) -> str:
    """A number for a report table: thousands separated, else four significant digits."""
    if value is None:
        return "—"
    return f"{value:,.0f}" if abs(value) >= 1_000 else f"{value:.4g}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub-flavoured Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def kpi_rows(kpis: kpi.KpiReport) -> list[tuple[str, str]]:
    """``(name, formatted value)`` pairs of every KPI; per-setpoint dicts are flattened."""
    rows: list[tuple[str, str]] = []
    for name, value in kpis.to_dict().items():
        if isinstance(value, dict):
            rows.extend((f"{name}.{k}", format_number(v)) for k, v in value.items())
        else:
            rows.append((name, format_number(value)))
    return rows


def _write_html(series: ReportSeries, kpis: kpi.KpiReport, path: Path, title: str) -> Path:
    import plotly.graph_objects as go
    import plotly.io as pio
    from plotly.subplots import make_subplots

    fig = make_subplots(
        rows=5,
        cols=1,
        specs=[[{"type": "xy"}]] * 4 + [[{"type": "table"}]],
        row_heights=[0.2, 0.2, 0.2, 0.15, 0.25],
        vertical_spacing=0.05,
        subplot_titles=(
            "Rack inlet temperature (°C)",
            "Air, water and outdoor temperatures (°C)",
            "Power by subsystem (kW, stacked)",
            "PUE (rolling 1 h)",
            "KPIs",
        ),
    )
    t = series.time_h
    for label, y in series.inlet_c.items():
        fig.add_trace(go.Scatter(x=t, y=y, name=label, mode="lines"), row=1, col=1)
    for label, limit_c in ASHRAE_LINES_C.items():
        fig.add_hline(
            y=limit_c, line_dash="dash", line_color="red", annotation_text=label, row=1, col=1
        )
    for label, y in series.temperatures_c.items():
        fig.add_trace(go.Scatter(x=t, y=y, name=label, mode="lines"), row=2, col=1)
    for label, y in series.power_kw.items():
        trace = go.Scatter(x=t, y=y, name=label, mode="lines", stackgroup="power")
        fig.add_trace(trace, row=3, col=1)
    if series.facility_kw is not None:
        trace = go.Scatter(
            x=t, y=series.facility_kw, name="Facility (metered)", line={"dash": "dot"}
        )
        fig.add_trace(trace, row=3, col=1)
    if series.pue_1h is not None:
        fig.add_trace(go.Scatter(x=t, y=series.pue_1h, name="PUE 1 h"), row=4, col=1)
    names, values = zip(*kpi_rows(kpis), strict=True)
    table = go.Table(
        header={"values": ["KPI", "Value"], "align": "left"},
        cells={"values": [list(names), list(values)], "align": ["left", "right"]},
    )
    fig.add_trace(table, row=5, col=1)
    fig.update_xaxes(title_text="time (h)", row=4, col=1)
    fig.update_layout(title={"text": title}, height=1_800, hovermode="x unified")
    body = pio.to_html(fig, include_plotlyjs=True, full_html=False, config={"displaylogo": False})
    path.write_text(html_page(title, body), encoding="utf-8")
    return path


def html_page(title: str, body: str) -> str:
    """A self-contained HTML page with ``title`` as heading around ``body``."""
    escaped = html.escape(title)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8" />\n'
        f"<title>{escaped}</title>\n</head>\n<body>\n<h1>{escaped}</h1>\n{body}\n</body>\n</html>\n"
    )


def save_png(fig: Figure, path: Path) -> Path:
    """Write a matplotlib figure as the reports' PNG."""
    fig.savefig(path, dpi=100, format="png")
    return path


def draw_inlet_limits(ax: Axes) -> None:
    """The ASHRAE recommended (27 °C) and A1 allowable (32 °C) inlet limits on ``ax``."""
    for (label, limit_c), style in zip(ASHRAE_LINES_C.items(), ("--", ":"), strict=True):
        ax.axhline(limit_c, color="red", linestyle=style, label=label)


def _plot_temperatures(series: ReportSeries, title: str, path: Path) -> Path:
    fig = Figure(figsize=(11.0, 7.0), layout="constrained")
    ax_inlet, ax_loop = fig.subplots(2, 1, sharex=True)
    t = series.time_h
    if series.inlet_c:
        lo, hi = series.inlet_c["Inlet min"], series.inlet_c["Inlet max"]
        ax_inlet.fill_between(t, lo, hi, alpha=0.3, label="Inlet min–max")
        ax_inlet.plot(t, series.inlet_c["Inlet mean"], label="Inlet mean")
    draw_inlet_limits(ax_inlet)
    ax_inlet.set_ylabel("rack inlet (°C)")
    ax_inlet.legend(loc="best", fontsize="small")
    for label, y in series.temperatures_c.items():
        ax_loop.plot(t, y, label=label)
    ax_loop.set_ylabel("temperature (°C)")
    ax_loop.set_xlabel("time (h)")
    if series.temperatures_c:
        ax_loop.legend(loc="upper right", fontsize="small", ncols=2)
    fig.suptitle(f"{title}: temperatures")
    return save_png(fig, path)


def _plot_power(series: ReportSeries, title: str, path: Path) -> Path:
    fig = Figure(figsize=(11.0, 5.0), layout="constrained")
    ax = fig.subplots()
    if series.power_kw:
        ax.stackplot(series.time_h, *series.power_kw.values(), labels=list(series.power_kw))
    if series.facility_kw is not None:
        ax.plot(series.time_h, series.facility_kw, "k:", label="Facility (metered)")
    ax.set_xlabel("time (h)")
    ax.set_ylabel("power (kW)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small")
    fig.suptitle(f"{title}: power by subsystem")
    return save_png(fig, path)


def _plot_pue(series: ReportSeries, kpis: kpi.KpiReport, title: str, path: Path) -> Path:
    fig = Figure(figsize=(11.0, 4.0), layout="constrained")
    ax = fig.subplots()
    if series.pue_1h is not None:
        ax.plot(series.time_h, series.pue_1h, label="PUE (rolling 1 h)")
    if np.isfinite(kpis.pue):
        ax.axhline(kpis.pue, color="gray", linestyle="--", label=f"run PUE {kpis.pue:.3f}")
    ax.set_xlabel("time (h)")
    ax.set_ylabel("PUE (–)")
    ax.legend(loc="upper right", fontsize="small")
    fig.suptitle(f"{title}: PUE")
    return save_png(fig, path)


def write_report(frame: pd.DataFrame, kpis: kpi.KpiReport, out_dir: Path, title: str) -> list[Path]:
    """Write ``report.html`` (self-contained Plotly, works offline), ``temperatures.png``,
    ``power.png`` and ``pue.png`` into ``out_dir`` (created if needed); return their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    series = report_series(frame, kpis)
    paths = [
        _write_html(series, kpis, out_dir / "report.html", title),
        _plot_temperatures(series, title, out_dir / "temperatures.png"),
        _plot_power(series, title, out_dir / "power.png"),
        _plot_pue(series, kpis, title, out_dir / "pue.png"),
    ]
    logger.info("wrote report %r to %s", title, out_dir)
    return paths


Band = tuple[NDArray[np.float64], NDArray[np.float64], str]
"""A shaded range: lower values, upper values, legend label."""


@dataclass(frozen=True)
class ControlRunSeries:
    """What :func:`plot_control_run` draws, per control period (time in h).

    ``setpoints_c`` are the applied temperature setpoints (°C), ``setpoints_frac`` the
    fractions and switches (fan speed, economiser enable); ``inlet_c`` the hottest rack
    inlet (one or more lines); ``power_kw`` the power lines. Each band shades a range (the
    twin's members) under the lines of its panel.
    """

    time_h: NDArray[np.float64]
    setpoints_c: Mapping[str, NDArray[np.float64]]
    setpoints_frac: Mapping[str, NDArray[np.float64]]
    inlet_c: Mapping[str, NDArray[np.float64]]
    power_kw: Mapping[str, NDArray[np.float64]]
    inlet_band: Band | None = field(default=None)
    power_band: Band | None = field(default=None)


def _legend_right(ax: Axes) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small")


def _band(ax: Axes, t: NDArray[np.float64], band: Band | None, stride: int) -> None:
    if band is not None:
        lo, hi, label = band
        ax.fill_between(t, lo[::stride], hi[::stride], alpha=0.3, label=label)


def plot_control_run(run: ControlRunSeries, title: str, path: Path) -> Path:
    """A controlled run as a four-panel PNG at ``path``: the applied temperature setpoints,
    the applied fan speed and economiser enable, the hottest rack inlet against the 27 °C
    and 32 °C limits, and power. Series beyond :data:`MAX_PLOT_POINTS` samples are
    decimated."""
    stride = max(1, -(-run.time_h.size // MAX_PLOT_POINTS))
    t = run.time_h[::stride]
    fig = Figure(figsize=(12.0, 11.0), layout="constrained")
    ax_sp, ax_frac, ax_inlet, ax_power = fig.subplots(
        4, 1, sharex=True, height_ratios=(1.0, 0.6, 1.0, 1.0)
    )
    for label, y in run.setpoints_c.items():
        ax_sp.plot(t, y[::stride], label=label)
    ax_sp.set_ylabel("setpoint (°C)")
    ax_sp.set_title("Applied setpoints", fontsize=10)
    for label, y in run.setpoints_frac.items():
        ax_frac.step(t, y[::stride], where="post", label=label)
    ax_frac.set_ylabel("fraction, on/off (–)")
    ax_frac.set_ylim(-0.05, 1.05)
    _band(ax_inlet, t, run.inlet_band, stride)
    for label, y in run.inlet_c.items():
        ax_inlet.plot(t, y[::stride], label=label)
    draw_inlet_limits(ax_inlet)
    ax_inlet.set_ylabel("rack inlet (°C)")
    ax_inlet.set_title("Hottest rack inlet against the ASHRAE limits", fontsize=10)
    _band(ax_power, t, run.power_band, stride)
    for label, y in run.power_kw.items():
        ax_power.plot(t, y[::stride], label=label)
    ax_power.set_ylabel("power (kW)")
    ax_power.set_xlabel("time (h)")
    ax_power.set_title("Power", fontsize=10)
    for ax in (ax_sp, ax_frac, ax_inlet, ax_power):
        _legend_right(ax)
    fig.suptitle(title)
    return save_png(fig, path)

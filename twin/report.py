"""Accuracy report of a fitted twin on held-out recordings: JSON, Markdown, HTML and PNGs.

The metrics and the targets they are judged by are :mod:`twin.accuracy`'s; this module
renders them. :func:`write_twin_report` measures the twin
(:func:`~twin.accuracy.measure_accuracy`), writes the summary with every target and, for
reference, ASHRAE Guideline 14's hourly calibration criteria, and draws what a reviewer needs
to judge it: predicted against measured over time (one step ahead and at the end of the
open-loop horizon), a parity plot of the rack inlets, the inlet error against the horizon,
the training loss and the learned physical parameters, and, when assimilation ran, the
tracked parameters and what tracking them bought.
Conventions follow :mod:`physics.plant.report`: a self-contained Plotly page that works
offline plus matplotlib PNGs drawn on bare :class:`~matplotlib.figure.Figure` objects.
"""

from __future__ import annotations

import html
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from numpy.typing import NDArray

from physics import kpi
from physics.plant.report import (
    MAX_PLOT_POINTS,
    format_number,
    html_page,
    markdown_table,
    save_png,
)
from twin.accuracy import accuracy_summary, duration_text, measure_accuracy
from twin.dataset import METER_NAMES, STATE_POINTS, PeriodData
from twin.ensemble import TwinEnsemble
from twin.rollout import rollout, targets_along
from twinloop.errors import TwinLoopError

logger = logging.getLogger(__name__)

FloatArray = NDArray[np.float64]

ACCURACY_JSON = "accuracy.json"
ACCURACY_MD = "accuracy.md"
REPORT_HTML = "report.html"
ASSIMILATION_TABLE = "assimilation.parquet"
ASSIMILATION_FAULTS = "assimilation.json"
MAX_PARITY_POINTS = 4_000
"""Most points drawn per series of the parity plot (a fixed random subset beyond this)."""

_ERROR_COLUMNS = ("inlet_abs_error_c", "inlet_abs_error_open_c")
_DIAGNOSTIC_COLUMNS = ("nis_window_mean", "diverged")
"""Filter diagnostics the table may carry beside the parameters (not plotted as tracks)."""
_STD_SUFFIX = "_std"


class ReportError(TwinLoopError, ValueError):
    """Input the report cannot use; the message names the file or data and the problem."""


def accuracy_line(accuracy: Mapping[str, Any]) -> str:
    """One line of the headline errors: inlet one-step median, facility and cooling MAPE,
    from :meth:`Accuracy.to_dict` or :func:`accuracy_summary`."""
    return (
        "inlet 1-step median abs. error "
        f"{format_number(accuracy['inlet_median_abs_error_1step_c'])} °C, "
        f"facility MAPE {format_number(accuracy['facility_mape_percent'])} %, "
        f"cooling MAPE {format_number(accuracy['cooling_mape_percent'])} %"
    )


def targets_line(summary: Mapping[str, Any]) -> str:
    """``targets met: k of n`` with the failed ones named, from :func:`accuracy_summary`."""
    targets = summary["targets"]
    failed = [t["label"] for t in targets.values() if not t["pass"]]
    line = f"targets met: {len(targets) - len(failed)} of {len(targets)}"
    return line + (f" (not met: {'; '.join(failed)})" if failed else "")


# --------------------------------------------------------------------------- predictions
@dataclass(frozen=True)
class TracedSignal:
    """One signal over time, measured and predicted, ready to draw: NaN separates unbroken
    runs; at most :data:`MAX_PLOT_POINTS` samples per series."""

    label: str
    unit: str
    measured: tuple[FloatArray, FloatArray]
    one_step: tuple[FloatArray, FloatArray]
    ahead: tuple[FloatArray, FloatArray]
    """Predicted at the end of the open-loop horizon: (time in h, value)."""


@dataclass(frozen=True)
class TwinPredictions:
    """The twin's predictions on held-out periods, as the report draws them."""

    period_s: float
    horizon: int
    signals: tuple[TracedSignal, ...]
    """Hottest rack inlet, supply air, CHW supply, cooling power, facility power."""
    inlet_1step_c: tuple[FloatArray, FloatArray]
    """(measured, predicted) rack inlets one period ahead, every rack and window, flat."""
    inlet_ahead_c: tuple[FloatArray, FloatArray]
    """The same at the end of the open-loop horizon."""
    inlet_median_error_c: FloatArray
    """Median abs. rack-inlet error at each step of the open loop (horizon,)."""
    inlet_p95_error_c: FloatArray

    @property
    def horizon_min(self) -> FloatArray:
        return np.arange(1, self.horizon + 1, dtype=np.float64) * self.period_s / 60.0


def _series(
    time_h: FloatArray, sequence: NDArray[np.int64], idx: NDArray[np.int64], y: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """``(time, y)`` at period indices ``idx`` (ascending), decimated, NaN between runs."""
    stride = max(1, -(-idx.size // MAX_PLOT_POINTS))
    idx, y = idx[::stride], y[::stride]
    gap = (np.diff(idx) > stride) | (np.diff(sequence[idx]) != 0)
    cut = np.nonzero(gap)[0] + 1
    t = np.insert(time_h[idx], cut, np.nan)
    return t, np.insert(np.asarray(y, dtype=np.float64), cut, np.nan)


def _pick(source: Any, attr: str, i: int) -> FloatArray:
    """Element ``i`` of the last axis of ``source.<attr>`` (rack inlets: of all racks)."""
    values = getattr(source, attr)
    if attr == "rack_inlet_c":
        values = values.flatten(-2)
    return np.asarray(values[..., i].numpy(), dtype=np.float64)


@torch.no_grad()
def twin_predictions(ensemble: TwinEnsemble, data: PeriodData, *, horizon: int) -> TwinPredictions:
    """Roll the twin out one period from every period and ``horizon`` periods from every
    window of ``horizon + 1`` consecutive periods, and pair its predictions with the data."""
    one, starts = data.windows(1), data.windows(horizon)
    if starts.numel() == 0:
        raise ReportError(
            f"the held-out data has no run of {horizon + 1} consecutive control periods "
            f"(horizon {horizon})"
        )
    pred1, pred_h = rollout(ensemble, data, one, 1), rollout(ensemble, data, starts, horizon)
    time_h = data.time_h.double().numpy()
    sequence = data.sequence.numpy()
    racks_per_pod = data.rack_inlet_c.shape[-1]
    hottest = int(data.rack_inlet_c.mean(dim=0).argmax())
    pod, rack = divmod(hottest, racks_per_pod)
    picks = [  # (label, unit, attribute, index, a reading at the period's end? else its mean)
        (f"hottest rack inlet (pod {pod}, rack {rack:02d})", "°C", "rack_inlet_c", hottest, True),
        ("supply air", "°C", "hall", STATE_POINTS.index("supply_air_c"), True),
        ("CHW supply", "°C", "hall", STATE_POINTS.index("chw_supply_c"), True),
        ("cooling power", "kW", "meters", METER_NAMES.index("cooling_kw"), False),
        ("facility power", "kW", "meters", METER_NAMES.index("facility_kw"), False),
    ]
    signals = []
    for label, unit, attr, i, reading in picks:
        # Period k's reading is taken at time_h[k]; its predicted successor is period k+1's.
        # A period mean is drawn at the middle of its period and predicted for that period.
        t = time_h if reading else time_h + ensemble.step_s / 7200.0
        lead = 1 if reading else 0
        signals.append(
            TracedSignal(
                label=label,
                unit=unit,
                measured=_series(t, sequence, np.arange(len(data)), _pick(data, attr, i)),
                one_step=_series(t, sequence, one.numpy() + lead, _pick(pred1, attr, i)[0]),
                ahead=_series(
                    t, sequence, starts.numpy() + horizon - 1 + lead, _pick(pred_h, attr, i)[-1]
                ),
            )
        )
    inlet_1 = targets_along(data, one, 1)[0].numpy()
    inlet_h, pred_inlet_h = (
        targets_along(data, starts, horizon)[0].numpy(),
        pred_h.rack_inlet_c.numpy(),
    )
    return TwinPredictions(
        period_s=ensemble.step_s,
        horizon=horizon,
        signals=tuple(signals),
        inlet_1step_c=(inlet_1.ravel(), pred1.rack_inlet_c.numpy().ravel()),
        inlet_ahead_c=(inlet_h[-1].ravel(), pred_inlet_h[-1].ravel()),
        inlet_median_error_c=np.array(
            [kpi.median_abs_error(inlet_h[h], pred_inlet_h[h]) for h in range(horizon)]
        ),
        inlet_p95_error_c=np.array(
            [kpi.p95_abs_error(inlet_h[h], pred_inlet_h[h]) for h in range(horizon)]
        ),
    )


# --------------------------------------------------------------------------- training
def loss_histories(summary: Mapping[str, Any]) -> list[tuple[FloatArray, FloatArray]]:
    """(iteration, loss) per member from a fitted twin's summary (its ``loss_history`` keeps
    every ``max(1, iterations // 100)``-th iteration); empty when the twin has none."""
    iterations = int(summary.get("config", {}).get("iterations", 0))
    stride = max(1, iterations // 100)
    return [
        (np.arange(len(h), dtype=np.float64) * stride, np.asarray(h, dtype=np.float64))
        for h in summary.get("loss_history", [])
    ]


def parameter_rows(parameters: Mapping[str, float | Sequence[float]]) -> list[tuple[str, str]]:
    """``(name, formatted value)`` per learned physical parameter; per-pod lists joined."""
    if not parameters:
        return [("(none)", "the twin's card holds no learned physical parameters")]
    rows = []
    for name, value in parameters.items():
        if isinstance(value, Sequence):
            rows.append((name, ", ".join(format_number(float(v)) for v in value)))
        else:
            rows.append((name, format_number(float(value))))
    return rows


# --------------------------------------------------------------------------- assimilation
@dataclass(frozen=True)
class FaultOnset:
    kind: str
    start_h: float


@dataclass(frozen=True)
class AssimilationTrack:
    """What data assimilation tracked over a run: ``time_h``, one column per tracked parameter
    (e.g. ``coil_ua_mult``) with an optional ``<name>_std``, and the absolute rack-inlet error
    with (``inlet_abs_error_c``) and without (``inlet_abs_error_open_c``) assimilation; fault
    onsets on the same time axis."""

    frame: pd.DataFrame = field(compare=False)
    faults: tuple[FaultOnset, ...] = ()
    source: str = "assimilation"

    def __post_init__(self) -> None:
        missing = [c for c in ("time_h", *_ERROR_COLUMNS) if c not in self.frame.columns]
        if missing:
            raise ReportError(f"{self.source}: missing column(s) {', '.join(missing)}")
        if self.frame.empty:
            raise ReportError(f"{self.source}: no rows")
        wrong = [
            str(c) for c in self.frame.columns if not pd.api.types.is_numeric_dtype(self.frame[c])
        ]
        if wrong:
            raise ReportError(f"{self.source}: non-numeric column(s) {', '.join(wrong)}")

    @property
    def parameters(self) -> tuple[str, ...]:
        """The tracked parameters: every column but time, the errors and the ``*_std``."""
        skip = {"time_h", *_ERROR_COLUMNS, *_DIAGNOSTIC_COLUMNS}
        return tuple(
            str(c) for c in self.frame.columns if c not in skip and not str(c).endswith(_STD_SUFFIX)
        )

    def column(self, name: str) -> FloatArray:
        return self.frame[name].to_numpy(dtype=np.float64)

    def std(self, name: str) -> FloatArray | None:
        std = name + _STD_SUFFIX
        return self.column(std) if std in self.frame.columns else None


def load_assimilation(directory: Path) -> AssimilationTrack | None:
    """The :class:`AssimilationTrack` in ``directory`` (``assimilation.parquet`` and, when
    present, ``assimilation.json`` with ``{"faults": [{"kind": …, "start_h": …}]}``), or
    None where there is no table. A file that cannot be read raises :class:`ReportError`."""
    table = Path(directory) / ASSIMILATION_TABLE
    if not table.is_file():
        return None
    try:
        frame = pd.read_parquet(table).sort_values("time_h", kind="stable")
    except (OSError, ValueError) as exc:
        raise ReportError(f"{table}: cannot read the table ({exc})") from None
    except KeyError:
        raise ReportError(f"{table}: missing column(s) time_h") from None
    faults: list[FaultOnset] = []
    sidecar = table.with_name(ASSIMILATION_FAULTS)
    if sidecar.is_file():
        try:
            raw = json.loads(sidecar.read_text(encoding="utf-8"))
            faults = [
                FaultOnset(str(f["kind"]), float(f["start_h"])) for f in raw.get("faults", [])
            ]
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ReportError(f"{sidecar}: cannot read ({exc})") from None
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise ReportError(
                f"{sidecar}: expected {{'faults': [{{'kind': …, 'start_h': …}}]}} ({exc!r})"
            ) from None
    return AssimilationTrack(frame.reset_index(drop=True), tuple(faults), str(table))


# --------------------------------------------------------------------------- Markdown
def _criterion_rows(criteria: Mapping[str, Mapping[str, Any]]) -> list[list[str]]:
    rows = []
    for c in criteria.values():
        bound = f"within ±{c['limit']:g}" if c["absolute"] else f"≤ {c['limit']:g}"
        value = f"{format_number(c['value'])} {c['unit']}"
        rows.append([c["label"], value, f"{bound} {c['unit']}", "pass" if c["pass"] else "FAIL"])
    return rows


def _horizon_rows(pred: TwinPredictions) -> list[list[str]]:
    return [
        [f"{m:g}", format_number(float(a)), format_number(float(b))]
        for m, a, b in zip(
            pred.horizon_min, pred.inlet_median_error_c, pred.inlet_p95_error_c, strict=True
        )
    ]


def accuracy_markdown(
    summary: Mapping[str, Any],
    pred: TwinPredictions,
    parameters: Sequence[tuple[str, str]],
    title: str,
) -> str:
    """The report's tables as Markdown: targets, Guideline 14, every metric, the error by
    horizon and the learned parameters."""
    metrics = [
        [name, format_number(value)]
        for name, value in summary.items()
        if value is None or (isinstance(value, int | float) and not isinstance(value, bool))
    ]
    header = ("criterion", "value", "bound", "result")
    parts = [
        f"# {title}",
        f"{summary['periods']} held-out control periods of {summary['period_s'] / 60:g} min; "
        f"open loop over {summary['horizon_periods']} periods; {summary['members']} member(s).",
        "## Targets",
        markdown_table(header, _criterion_rows(summary["targets"])),
        "## ASHRAE Guideline 14, hourly calibration criteria (reference)",
        "Applied to control-period means, finer than the hourly data the criteria are set for.",
        markdown_table(header, _criterion_rows(summary["ashrae_guideline_14"])),
        "## All metrics",
        markdown_table(("metric", "value"), metrics),
        "## Rack-inlet abs. error by horizon (°C)",
        markdown_table(("horizon (min)", "median", "p95"), _horizon_rows(pred)),
        "## Learned physical parameters",
        markdown_table(("parameter", "value"), parameters),
    ]
    return "\n\n".join(parts) + "\n"


# --------------------------------------------------------------------------- PNGs
_COLORS = {"measured": "black", "one_step": "tab:blue", "ahead": "tab:orange"}


def _ahead_label(pred: TwinPredictions) -> str:
    return f"{duration_text(pred.horizon * pred.period_s)} ahead (open loop)"


def _plot_timeseries(pred: TwinPredictions, title: str, path: Path) -> Path:
    fig = Figure(figsize=(11.0, 2.3 * len(pred.signals) + 0.6), layout="constrained")
    axes = fig.subplots(len(pred.signals), 1, sharex=True, squeeze=False)[:, 0]
    for ax, sig in zip(axes, pred.signals, strict=True):
        ax.plot(*sig.measured, color=_COLORS["measured"], lw=0.9, label="measured")
        ax.plot(*sig.one_step, color=_COLORS["one_step"], lw=0.9, label="1 step ahead")
        ax.plot(*sig.ahead, color=_COLORS["ahead"], lw=0.9, ls="--", label=_ahead_label(pred))
        ax.set_ylabel(f"{sig.label}\n({sig.unit})", fontsize="small")
    axes[0].legend(loc="upper right", fontsize="small", ncols=3)
    axes[-1].set_xlabel("time (h of the year)")
    fig.suptitle(f"{title}: predicted vs measured")
    return save_png(fig, path)


def _parity_points(
    pair: tuple[FloatArray, FloatArray], seed: int = 0
) -> tuple[FloatArray, FloatArray]:
    measured, predicted = pair
    if measured.size <= MAX_PARITY_POINTS:
        return measured, predicted
    pick = np.random.default_rng(seed).choice(measured.size, MAX_PARITY_POINTS, replace=False)
    return measured[pick], predicted[pick]


def _plot_parity(pred: TwinPredictions, title: str, path: Path) -> Path:
    fig = Figure(figsize=(6.5, 6.5), layout="constrained")
    ax = fig.subplots()
    both = np.concatenate([*pred.inlet_1step_c, *pred.inlet_ahead_c])
    lo, hi = float(np.min(both)), float(np.max(both))
    ax.plot([lo, hi], [lo, hi], color="gray", lw=1.0, label="predicted = measured")
    for pair, key, label in (
        (pred.inlet_ahead_c, "ahead", _ahead_label(pred)),
        (pred.inlet_1step_c, "one_step", "1 step ahead"),
    ):
        x, y = _parity_points(pair)
        ax.scatter(x, y, s=3, alpha=0.4, color=_COLORS[key], label=label, rasterized=True)
    ax.set_xlabel("measured rack inlet (°C)")
    ax.set_ylabel("predicted rack inlet (°C)")
    ax.set_aspect("equal")
    ax.legend(loc="upper left", fontsize="small", markerscale=3)
    fig.suptitle(f"{title}: rack-inlet parity")
    return save_png(fig, path)


def _plot_horizon(pred: TwinPredictions, title: str, path: Path) -> Path:
    fig = Figure(figsize=(8.0, 4.5), layout="constrained")
    ax = fig.subplots()
    ax.plot(pred.horizon_min, pred.inlet_median_error_c, "o-", label="median")
    ax.plot(pred.horizon_min, pred.inlet_p95_error_c, "s-", label="p95")
    ax.axhline(0.15, color="tab:blue", ls=":", label="target: median ≤ 0.15 °C (one step)")
    ax.axhline(0.5, color="tab:orange", ls=":", label="target: p95 ≤ 0.5 °C (1 h)")
    ax.set_xlabel("open-loop horizon (min)")
    ax.set_ylabel("rack-inlet abs. error (°C)")
    ax.set_ylim(bottom=0.0)
    ax.legend(loc="best", fontsize="small")
    fig.suptitle(f"{title}: rack-inlet error vs horizon")
    return save_png(fig, path)


def _plot_training(
    histories: Sequence[tuple[FloatArray, FloatArray]],
    parameters: Sequence[tuple[str, str]],
    title: str,
    path: Path,
) -> Path:
    fig = Figure(figsize=(13.0, 5.5), layout="constrained")
    ax_loss, ax_table = fig.subplots(1, 2, width_ratios=(1.0, 1.1))
    for m, (x, y) in enumerate(histories):
        ax_loss.plot(x, y, lw=1.0, label=f"member {m}")
    if histories:
        ax_loss.set_yscale("log")
        ax_loss.legend(loc="upper right", fontsize="small")
    else:
        ax_loss.text(0.5, 0.5, "no training history in the twin's card", ha="center")
    ax_loss.set_xlabel("iteration")
    ax_loss.set_ylabel("training loss")
    ax_table.axis("off")
    if parameters:
        table = ax_table.table(
            cellText=[list(r) for r in parameters],
            colLabels=["parameter", "value"],
            loc="center",
            cellLoc="left",
            colWidths=[0.45, 0.55],
        )
        table.auto_set_font_size(False)
        table.set_fontsize(8)
    fig.suptitle(f"{title}: training loss and learned physical parameters")
    return save_png(fig, path)


def _plot_assimilation(track: AssimilationTrack, title: str, path: Path) -> Path:
    names = track.parameters
    fig = Figure(figsize=(11.0, 2.2 * (len(names) + 1) + 0.6), layout="constrained")
    axes = fig.subplots(len(names) + 1, 1, sharex=True, squeeze=False)[:, 0]
    t = track.column("time_h")
    for ax, name in zip(axes, names, strict=False):
        y = track.column(name)
        ax.plot(t, y, lw=1.0, label=name)
        if (std := track.std(name)) is not None:
            ax.fill_between(t, y - std, y + std, alpha=0.3, label="±1 std")
        ax.set_ylabel(name, fontsize="small")
        ax.legend(loc="upper right", fontsize="small")
    err = axes[-1]
    err.plot(t, track.column("inlet_abs_error_c"), lw=1.0, label="with assimilation")
    err.plot(t, track.column("inlet_abs_error_open_c"), lw=1.0, label="without")
    err.set_ylabel("rack-inlet abs.\nerror (°C)", fontsize="small")
    err.set_xlabel("time (h)")
    err.legend(loc="upper right", fontsize="small")
    for fault in track.faults:
        for ax in axes:
            ax.axvline(fault.start_h, color="red", ls="--", lw=1.0)
        axes[0].annotate(
            fault.kind,
            (fault.start_h, 1.0),
            xycoords=("data", "axes fraction"),
            fontsize="small",
            color="red",
            va="bottom",
        )
    fig.suptitle(f"{title}: data assimilation")
    return save_png(fig, path)


# --------------------------------------------------------------------------- HTML
def _html_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _figures(
    pred: TwinPredictions,
    histories: Sequence[tuple[FloatArray, FloatArray]],
    parameters: Sequence[tuple[str, str]],
    track: AssimilationTrack | None,
) -> list[tuple[str, Any, str]]:
    """(heading, Plotly figure, HTML to follow it) of each figure of the page."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    ahead = _ahead_label(pred)
    series = make_subplots(
        rows=len(pred.signals),
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.03,
        subplot_titles=[f"{s.label} ({s.unit})" for s in pred.signals],
    )
    for row, sig in enumerate(pred.signals, start=1):
        for (x, y), key, name, dash in (
            (sig.measured, "measured", "measured", None),
            (sig.one_step, "one_step", "1 step ahead", None),
            (sig.ahead, "ahead", ahead, "dash"),
        ):
            series.add_trace(
                go.Scatter(
                    x=x,
                    y=y,
                    name=name,
                    mode="lines",
                    line={"color": _COLORS[key].removeprefix("tab:"), "dash": dash},
                    legendgroup=key,
                    showlegend=row == 1,
                ),
                row=row,
                col=1,
            )
    series.update_xaxes(title_text="time (h of the year)", row=len(pred.signals), col=1)
    series.update_layout(height=260 * len(pred.signals), hovermode="x unified")

    parity = go.Figure()
    both = np.concatenate([*pred.inlet_1step_c, *pred.inlet_ahead_c])
    lo, hi = float(np.min(both)), float(np.max(both))
    parity.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", name="predicted = measured"))
    for pair, name in ((pred.inlet_ahead_c, ahead), (pred.inlet_1step_c, "1 step ahead")):
        x, y = _parity_points(pair)
        parity.add_trace(go.Scattergl(x=x, y=y, mode="markers", name=name, marker={"size": 3}))
    parity.update_layout(
        height=650,
        xaxis_title="measured rack inlet (°C)",
        yaxis={"title": "predicted rack inlet (°C)", "scaleanchor": "x"},
    )

    horizon = go.Figure()
    horizon.add_trace(go.Scatter(x=pred.horizon_min, y=pred.inlet_median_error_c, name="median"))
    horizon.add_trace(go.Scatter(x=pred.horizon_min, y=pred.inlet_p95_error_c, name="p95"))
    horizon.add_hline(y=0.15, line_dash="dot", annotation_text="median target (one step)")
    horizon.add_hline(y=0.5, line_dash="dot", annotation_text="p95 target (1 h)")
    horizon.update_layout(
        height=450, xaxis_title="open-loop horizon (min)", yaxis_title="abs. error (°C)"
    )

    loss = go.Figure()
    for m, (x, y) in enumerate(histories):
        loss.add_trace(go.Scatter(x=x, y=y, name=f"member {m}", mode="lines"))
    loss.update_layout(
        height=450, xaxis_title="iteration", yaxis={"title": "training loss", "type": "log"}
    )
    params = "<h2>Learned physical parameters</h2>\n" + _html_table(
        ("parameter", "value"), parameters
    )
    figures = [
        ("Predicted vs measured over time", series, ""),
        ("Rack-inlet parity", parity, ""),
        ("Rack-inlet error vs open-loop horizon", horizon, ""),
        ("Training loss per member", loss, params),
    ]
    if track is not None:
        figures.append(("Data assimilation", _assimilation_figure(track), ""))
    return figures


def _assimilation_figure(track: AssimilationTrack) -> Any:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    names = track.parameters
    fig = make_subplots(
        rows=len(names) + 1,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.04,
        subplot_titles=[*names, "rack-inlet abs. error (°C)"],
    )
    t = track.column("time_h")
    for row, name in enumerate(names, start=1):
        y = track.column(name)
        if (std := track.std(name)) is not None:
            band_x = np.concatenate([t, t[::-1]])
            band_y = np.concatenate([y + std, (y - std)[::-1]])
            fig.add_trace(
                go.Scatter(x=band_x, y=band_y, fill="toself", opacity=0.3, name=f"{name} ±1 std"),
                row=row,
                col=1,
            )
        fig.add_trace(go.Scatter(x=t, y=y, name=name, mode="lines"), row=row, col=1)
    last = len(names) + 1
    for column, label in zip(_ERROR_COLUMNS, ("with assimilation", "without"), strict=True):
        trace = go.Scatter(x=t, y=track.column(column), name=label, mode="lines")
        fig.add_trace(trace, row=last, col=1)
    for fault in track.faults:
        fig.add_vline(x=fault.start_h, line_dash="dash", line_color="red")
        fig.add_annotation(
            x=fault.start_h, y=1.0, yref="paper", text=fault.kind, showarrow=False, yanchor="bottom"
        )
    fig.update_xaxes(title_text="time (h)", row=last, col=1)
    fig.update_layout(height=240 * last)
    return fig


def _write_html(
    summary: Mapping[str, Any],
    pred: TwinPredictions,
    histories: Sequence[tuple[FloatArray, FloatArray]],
    parameters: Sequence[tuple[str, str]],
    track: AssimilationTrack | None,
    title: str,
    path: Path,
) -> Path:
    import plotly.io as pio

    header = ("criterion", "value", "bound", "result")
    sections = [
        "<h2>Targets</h2>",
        _html_table(header, _criterion_rows(summary["targets"])),
        "<h2>ASHRAE Guideline 14, hourly calibration criteria (reference)</h2>",
        _html_table(header, _criterion_rows(summary["ashrae_guideline_14"])),
    ]
    for i, (heading, fig, after) in enumerate(_figures(pred, histories, parameters, track)):
        body = pio.to_html(
            fig, include_plotlyjs=i == 0, full_html=False, config={"displaylogo": False}
        )
        sections += [f"<h2>{html.escape(heading)}</h2>", body, after]
    path.write_text(html_page(title, "\n".join(sections)), encoding="utf-8")
    return path


# --------------------------------------------------------------------------- entry point
def write_twin_report(
    ensemble: TwinEnsemble,
    data: PeriodData,
    out_dir: Path,
    *,
    horizon: int = 12,
    assimilation: AssimilationTrack | None = None,
    title: str = "Twin accuracy",
) -> list[Path]:
    """Measure ``ensemble`` on held-out ``data`` (control periods of the twin's step) and
    write ``accuracy.json``, ``accuracy.md``, ``report.html`` (self-contained Plotly) and
    ``timeseries.png``, ``parity.png``, ``horizon.png``, ``training.png``, plus
    ``assimilation.png`` when an ``assimilation`` track is given, into ``out_dir``."""
    if horizon < 1:
        raise ReportError(f"the horizon must be at least 1 period, got {horizon}")
    pred = twin_predictions(ensemble, data, horizon=horizon)  # checks the data is long enough
    accuracy = measure_accuracy(ensemble, data, horizon_periods=horizon)
    summary = accuracy_summary(
        accuracy, horizon=horizon, period_s=ensemble.step_s, members=len(ensemble)
    )
    histories = loss_histories(ensemble.summary)
    parameters = parameter_rows(ensemble.summary.get("parameters", {}))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / ACCURACY_JSON, out_dir / ACCURACY_MD
    json_path.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    md_path.write_text(accuracy_markdown(summary, pred, parameters, title), encoding="utf-8")
    paths = [
        json_path,
        md_path,
        _write_html(
            summary, pred, histories, parameters, assimilation, title, out_dir / REPORT_HTML
        ),
        _plot_timeseries(pred, title, out_dir / "timeseries.png"),
        _plot_parity(pred, title, out_dir / "parity.png"),
        _plot_horizon(pred, title, out_dir / "horizon.png"),
        _plot_training(histories, parameters, title, out_dir / "training.png"),
    ]
    if assimilation is not None:
        paths.append(_plot_assimilation(assimilation, title, out_dir / "assimilation.png"))
    logger.info("wrote twin report %r to %s", title, out_dir)
    return paths

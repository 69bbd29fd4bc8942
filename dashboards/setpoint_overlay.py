"""Setpoint against actual: for each writable setpoint, what TwinLoop commanded
(``ctl.<field>``, one step per control period) over what the plant measured (the matching
sensor point), in small multiples that share one time axis.

The site's own control does not publish its setpoints to the historian: where TwinLoop
holds no point the commanded line has a gap, and the event markers (live, hand-back,
rollback) say who held the plant.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from dashboards import points as pts
from dashboards.figures import empty_figure, time_values
from dashboards.site_time import SiteClock
from physics.plant.site_control import SETPOINT_FIELDS

ROW_HEIGHT = 170
COMMANDED = "#d62728"
MEASURED = "#1f77b4"


def overlay_points(names: list[str] | set[str]) -> list[str]:
    """Every point the figure reads that the historian holds: the measured and the commanded
    value of each setpoint."""
    wanted: list[str] = []
    for field in SETPOINT_FIELDS:
        sensor = pts.SETPOINT_MEASURED[field][0]
        wanted += [p for p in (sensor, pts.COMMAND_PREFIX + field) if p in names]
    return wanted


def command_steps(command: pd.Series) -> pd.Series:
    """The commands as steps that hold until the next one: the samples written (NaN rows,
    where other points have samples, dropped), with a break (NaN) one typical period after a
    command that no other follows within two periods, where TwinLoop stopped writing."""
    written = command.dropna()
    if len(written) < 2:
        return written
    spacing = np.diff(written.index.to_numpy(dtype=float))
    period = float(np.median(spacing))
    ends = written.index[:-1][spacing > 2.0 * period] + period
    breaks = pd.Series(np.nan, index=pd.Index(ends, name=written.index.name))
    steps: pd.Series = pd.concat([written, breaks]).sort_index()
    return steps


def overlay_figure(frame: pd.DataFrame, clock: SiteClock) -> go.Figure:
    """One row per setpoint whose measurement or command is in ``frame`` (a historian frame
    of :func:`overlay_points`): the measured line and the commanded steps."""
    fields = [
        f
        for f in SETPOINT_FIELDS
        if pts.SETPOINT_MEASURED[f][0] in frame.columns or pts.COMMAND_PREFIX + f in frame.columns
    ]
    if not fields or frame.dropna(how="all").empty:
        return empty_figure("no setpoint or its measurement in this range")
    titles = [f"{pts.SETPOINT_MEASURED[f][1]} ({f})" for f in fields]
    fig = make_subplots(
        rows=len(fields), cols=1, shared_xaxes=True, subplot_titles=titles, vertical_spacing=0.05
    )
    x, x_title = time_values(frame.index, clock)
    for row, field in enumerate(fields, start=1):
        sensor, _, unit = pts.SETPOINT_MEASURED[field]
        command = pts.COMMAND_PREFIX + field
        first = row == 1
        if sensor in frame.columns:
            fig.add_trace(
                go.Scatter(
                    x=x,
                    y=frame[sensor],
                    name=f"measured ({sensor})" if not first else "measured",
                    legendgroup="measured",
                    showlegend=first,
                    mode="lines",
                    connectgaps=True,
                    line={"color": MEASURED, "width": 1.5},
                ),
                row=row,
                col=1,
            )
        if command in frame.columns:
            steps = command_steps(frame[command])
            fig.add_trace(
                go.Scatter(
                    x=time_values(steps.index, clock)[0],
                    y=steps,
                    name="commanded by TwinLoop (ctl.*)",
                    legendgroup="commanded",
                    showlegend=first,
                    mode="lines",
                    line={"color": COMMANDED, "width": 1.5, "shape": "hv"},
                ),
                row=row,
                col=1,
            )
        fig.update_yaxes(title_text=unit, row=row, col=1)
    fig.update_xaxes(title_text=x_title, row=len(fields), col=1)
    fig.update_layout(
        title={
            "text": "Setpoint vs actual (commanded steps; a gap: the site's own control holds)",
            "font": {"size": 14},
        },
        height=ROW_HEIGHT * len(fields) + 140,
        margin={"l": 55, "r": 20, "t": 60, "b": 40},
        template="plotly_white",
        legend={"orientation": "h", "y": 1.0, "yanchor": "bottom", "x": 1.0, "xanchor": "right"},
    )
    return fig

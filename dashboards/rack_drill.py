"""Drill-down from the hall to a pod and a rack: the inlet trends of one pod's racks (or
one rack's alone) against the inlet limit, chosen from a dropdown or by clicking the pod's
cell on the hall's heat map."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from dashboards import points as pts
from dashboards.figures import empty_figure, style, time_values
from dashboards.site_time import SiteClock

_POD_LABEL = re.compile(r"pod (?P<pod>\d+)")


def pod_options(points: Iterable[str]) -> list[dict[str, Any]]:
    pods = sorted({int(m["pod"]) for p in points if (m := pts.RACK_INLET.fullmatch(p))})
    return [{"label": f"pod {p}", "value": p} for p in pods]


def rack_options(points: Iterable[str], pod: int | None) -> list[dict[str, Any]]:
    """The racks of ``pod`` (value: the rack's inlet point)."""
    if pod is None:
        return []
    out = []
    for point in pts.rack_inlets_of_pod(points, int(pod)):
        match = pts.RACK_INLET.fullmatch(point)
        assert match is not None
        out.append({"label": f"rack {match['rack']}", "value": point})
    return out


def pod_of_click(click: Mapping[str, Any] | None) -> int | None:
    """The pod of a click on the heat map (its cell's row, ``pod N``); None for no click."""
    if not click:
        return None
    for point in click.get("points") or []:
        match = _POD_LABEL.fullmatch(str(point.get("y", "")))
        if match:
            return int(match["pod"])
    return None


def drill_points(points: Iterable[str], pod: int | None, rack: str | None) -> list[str]:
    """The inlet points to draw: the chosen rack's alone (when it is in the pod), else the
    pod's racks, else none."""
    if pod is None:
        return []
    of_pod = pts.rack_inlets_of_pod(points, int(pod))
    if rack in of_pod:
        return [str(rack)]
    return of_pod


def drill_figure(
    frame: pd.DataFrame, pod: int | None, rack: str | None, limit_c: float, clock: SiteClock
) -> go.Figure:
    """The inlet trend of each point in ``frame`` with the limit as a line."""
    if pod is None:
        return empty_figure("choose a pod (or click its row on the heat map) to see its racks")
    if frame.empty or frame.dropna(how="all").empty:
        return empty_figure(f"no rack-inlet readings of pod {pod} in this range")
    x, x_title = time_values(frame.index, clock)
    fig = go.Figure()
    for point in frame.columns:
        match = pts.RACK_INLET.fullmatch(point)
        name = f"rack {match['rack']}" if match else point
        fig.add_trace(
            go.Scatter(
                x=x,
                y=frame[point],
                name=name,
                mode="lines",
                connectgaps=False,
                hovertemplate=f"{point}: %{{y:.2f}} °C<extra></extra>",
            )
        )
    fig.add_hline(
        y=limit_c,
        line={"color": "#c62828", "width": 1.5, "dash": "dash"},
        annotation_text=f"inlet limit {limit_c:g} °C",
        annotation_position="top left",
    )
    what = f"{rack} (pod {pod})" if rack in frame.columns else f"pod {pod}, every rack"
    title = f"Rack inlet: {what} — each point the highest reading of its interval"
    return style(fig, title, height=380, y_title="°C").update_xaxes(title=x_title)

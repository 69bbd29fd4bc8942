"""Small building blocks shared by the pages: figures with a message, time axes, tables."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

import pandas as pd
import plotly.graph_objects as go
from dash import html

from dashboards.site_time import SiteClock

MAX_POINTS = 2000
"""Samples per trace sent to the browser; longer series are thinned evenly."""

FrameOrSeries = TypeVar("FrameOrSeries", pd.DataFrame, pd.Series)


def thin(data: FrameOrSeries, max_points: int = MAX_POINTS) -> FrameOrSeries:
    """Every k-th sample so that at most ``max_points`` remain (the newest always kept)."""
    step = -(-len(data) // max_points)
    if step <= 1:
        return data
    return data.iloc[::-1].iloc[::step].iloc[::-1]


def empty_figure(message: str, *, height: int = 320) -> go.Figure:
    """A blank figure that says why it is blank."""
    fig = go.Figure()
    fig.add_annotation(text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    fig.update_layout(
        height=height,
        xaxis={"visible": False},
        yaxis={"visible": False},
        margin={"l": 20, "r": 20, "t": 30, "b": 20},
        template="plotly_white",
    )
    return fig


def style(fig: go.Figure, title: str, *, height: int = 320, y_title: str = "") -> go.Figure:
    fig.update_layout(
        title={"text": title, "font": {"size": 14}},
        height=height,
        margin={"l": 55, "r": 20, "t": 40, "b": 40},
        template="plotly_white",
        # Below the x-axis title (which sits at about -0.2 of the plot), not on it.
        legend={"orientation": "h", "y": -0.32, "yanchor": "top"},
        yaxis_title=y_title,
    )
    return fig


def time_values(index: Iterable[float], clock: SiteClock) -> tuple[Any, str]:
    """X values (site-local datetimes) and the axis title for historian times."""
    return clock.local(index), clock.axis_title()


def time_text(time_s: float, clock: SiteClock) -> str:
    """One historian time for a label, site-local."""
    return clock.text(time_s)


def number(value: float | None, digits: int = 1, unit: str = "") -> str:
    if value is None or not math.isfinite(value):
        return "—"
    text = f"{value:,.{digits}f}"
    return f"{text} {unit}".rstrip()


def table(
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    id_: str | None = None,
    wrap: Sequence[str] = (),
) -> html.Table:
    """A plain HTML table (header row, then one row per entry); the cells of the ``wrap``
    columns (free text) break long unbroken words instead of widening the page."""
    head = html.Thead(html.Tr([html.Th(c) for c in columns]))
    classes = ["tl-wrap" if c in wrap else None for c in columns]
    body = html.Tbody(
        [
            html.Tr(
                [
                    html.Td(cell) if k is None else html.Td(cell, className=k)
                    for cell, k in zip(row, classes, strict=False)
                ]
            )
            for row in rows
        ]
    )
    props: dict[str, Any] = {"className": "tl-table"}
    if id_ is not None:
        props["id"] = id_
    return html.Table([head, body], **props)


def card(label: str, value: str, *, alarm: bool = False) -> html.Div:
    """A headline number with its label."""
    return html.Div(
        [html.Div(label, className="tl-card-label"), html.Div(value, className="tl-card-value")],
        className="tl-card tl-card-alarm" if alarm else "tl-card",
    )


def notice(message: str, *, kind: str = "info") -> html.Div:
    """A one-line message; ``kind`` is info, ok or error (an error also has role=alert)."""
    props: dict[str, Any] = {"className": f"tl-notice tl-notice-{kind}"}
    if kind == "error":
        props["role"] = "alert"
    return html.Div(message, **props)

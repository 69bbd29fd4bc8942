"""Zoom and pan shared by the time charts of a page: a zoom on one chart sets the x-range of
the others (a double click, which autoscales, autoscales them all).

Plotly reports a zoom as the chart's ``relayoutData`` (``{"xaxis.range[0]": ..., ...}``);
:func:`zoom_of` reads it, :func:`axis_updates` says what to set on another figure, and the
callback of :func:`set_callbacks` sends it as a :class:`dash.Patch` (the figures are not
rebuilt). The chosen zoom is kept in a ``dcc.Store`` so that a page's refresh, which builds
its figures anew, applies it again (:func:`apply`). Ranges are the axes' own values: the
site-local date and time the charts show.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import plotly.graph_objects as go
from dash import Dash, Input, Output, Patch, State, callback_context, no_update

logger = logging.getLogger(__name__)

_RANGE_END = re.compile(r"xaxis(?P<n>\d*)\.range\[(?P<end>[01])\]")
_RANGE = re.compile(r"xaxis(?P<n>\d*)\.range")
_AUTORANGE = re.compile(r"xaxis(?P<n>\d*)\.autorange")


@dataclass(frozen=True)
class Zoom:
    """An x-range [start, end] in axis values; both None: autoscale."""

    start: Any = None
    end: Any = None

    @property
    def is_auto(self) -> bool:
        return self.start is None or self.end is None

    def to_store(self) -> list[Any] | None:
        return None if self.is_auto else [self.start, self.end]

    @classmethod
    def from_store(cls, stored: Any) -> Zoom:
        if isinstance(stored, list | tuple) and len(stored) == 2:
            return cls(stored[0], stored[1])
        return cls()


def zoom_of(relayout: Mapping[str, Any] | None) -> Zoom | None:
    """The x-zoom a chart's ``relayoutData`` reports, or None where it reports none (a
    y-only zoom, a legend click, the first drawing)."""
    if not relayout:
        return None
    ends: dict[str, Any] = {}
    for key, value in relayout.items():
        if (m := _RANGE_END.fullmatch(key)) is not None:
            ends[m["end"]] = value
        elif _RANGE.fullmatch(key) and isinstance(value, list | tuple) and len(value) == 2:
            ends = {"0": value[0], "1": value[1]}
    if "0" in ends and "1" in ends:
        return Zoom(ends["0"], ends["1"])
    if any(_AUTORANGE.fullmatch(k) and v for k, v in relayout.items()):
        return Zoom()
    return None


def axis_updates(zoom: Zoom, axes: int) -> dict[str, dict[str, Any]]:
    """Layout updates that put ``zoom`` on a figure's x-axes ``xaxis``, ``xaxis2``, ...
    (``axes`` of them: a figure of subplots has one per row)."""
    if axes < 1:
        raise ValueError(f"a time chart has at least one x-axis, got {axes}")
    value: dict[str, Any] = (
        {"autorange": True}
        if zoom.is_auto
        else {"range": [zoom.start, zoom.end], "autorange": False}
    )
    return {("xaxis" if k == 1 else f"xaxis{k}"): dict(value) for k in range(1, axes + 1)}


def apply(fig: go.Figure, stored: Any) -> go.Figure:
    """``fig`` with the page's stored zoom on every x-axis it has (unchanged without one)."""
    zoom = Zoom.from_store(stored)
    if zoom.is_auto:
        return fig
    axes = sum(1 for name in fig.layout if re.fullmatch(r"xaxis\d*", name)) or 1
    fig.update_layout(axis_updates(zoom, axes))
    return fig


def set_callbacks(
    app: Dash,
    store_id: Any,
    graphs: Sequence[tuple[Any, int]],
    resets: Sequence[tuple[Any, str]],
) -> None:
    """Share the x-zoom of ``graphs`` ((component id, number of x-axes), each a
    ``dcc.Graph``); any of ``resets`` ((id, property): the page's range controls) forgets it."""
    ids = [graph for graph, _ in graphs]

    @app.callback(
        Output(store_id, "data"),
        *(Output(graph, "figure", allow_duplicate=True) for graph in ids),
        *(Input(graph, "relayoutData") for graph in ids),
        *(Input(component, prop) for component, prop in resets),
        State(store_id, "data"),
        prevent_initial_call=True,
    )
    def _share(*args: Any) -> tuple[Any, ...]:
        stored = args[-1]
        relayouts = dict(zip(ids, args[: len(ids)], strict=True))
        trigger = callback_context.triggered_id
        return share(trigger, relayouts, graphs, stored)


def share(
    trigger: Any,
    relayouts: Mapping[Any, Mapping[str, Any] | None],
    graphs: Sequence[tuple[Any, int]],
    stored: Any,
) -> tuple[Any, ...]:
    """(stored zoom, then one figure update per graph) after ``trigger`` changed: a zoom
    on one graph is patched onto the others; a range control (a trigger that is no graph)
    forgets the zoom and leaves the figures to the page's refresh."""
    untouched = tuple(no_update for _ in graphs)
    if trigger not in relayouts:
        return (None, *untouched)
    zoom = zoom_of(relayouts[trigger])
    if zoom is None or zoom.to_store() == Zoom.from_store(stored).to_store():
        return (no_update, *untouched)
    logger.debug("shared zoom from %s: %s", trigger, zoom)
    updates: list[Any] = []
    for graph, axes in graphs:
        if graph == trigger:
            updates.append(no_update)
            continue
        patch = Patch()
        for axis, value in axis_updates(zoom, axes).items():
            for key, item in value.items():
                patch["layout"][axis][key] = item
        updates.append(patch)
    return (zoom.to_store(), *updates)

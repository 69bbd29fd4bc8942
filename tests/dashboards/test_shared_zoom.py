"""Zoom shared by a page's time charts: what a chart's relayoutData says, what is patched
onto the others, and when the stored zoom is forgotten."""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go
import pytest
from dash import Patch, no_update
from plotly.subplots import make_subplots

from dashboards.shared_zoom import Zoom, apply, axis_updates, share, zoom_of

A, B = "2026-07-01 10:00:00", "2026-07-01 11:30:00.5"
GRAPHS = (("temps", 1), ("setpoints", 3), ("drill", 1))


@pytest.mark.parametrize(
    ("relayout", "zoom"),
    [
        ({"xaxis.range[0]": A, "xaxis.range[1]": B}, Zoom(A, B)),
        ({"xaxis3.range[0]": A, "xaxis3.range[1]": B, "yaxis3.range[0]": 1}, Zoom(A, B)),
        ({"xaxis.range": [A, B]}, Zoom(A, B)),
        ({"xaxis.autorange": True, "xaxis.showspikes": False}, Zoom()),
        ({"yaxis.range[0]": 1, "yaxis.range[1]": 2}, None),
        ({"autosize": True}, None),
        (None, None),
    ],
)
def test_what_a_chart_reports(relayout: dict[str, Any] | None, zoom: Zoom | None) -> None:
    assert zoom_of(relayout) == zoom


def test_the_update_covers_every_x_axis_of_a_figure() -> None:
    assert axis_updates(Zoom(A, B), 2) == {
        "xaxis": {"range": [A, B], "autorange": False},
        "xaxis2": {"range": [A, B], "autorange": False},
    }
    assert axis_updates(Zoom(), 1) == {"xaxis": {"autorange": True}}
    with pytest.raises(ValueError, match="at least one x-axis"):
        axis_updates(Zoom(), 0)


def _patched(patch: Any) -> dict[str, Any]:
    assert isinstance(patch, Patch)
    out: dict[str, Any] = {}
    for op in patch.to_plotly_json()["operations"]:
        assert op["operation"] == "Assign"
        out[".".join(str(p) for p in op["location"])] = op["params"]["value"]
    return out


def test_a_zoom_on_one_chart_is_patched_onto_the_others() -> None:
    relayouts = {"temps": None, "setpoints": {"xaxis2.range[0]": A, "xaxis2.range[1]": B}}
    stored, temps, setpoints, drill = share("setpoints", relayouts, GRAPHS, None)
    assert stored == [A, B] and setpoints is no_update
    assert _patched(temps) == {"layout.xaxis.range": [A, B], "layout.xaxis.autorange": False}
    assert _patched(drill) == _patched(temps)
    # Autoscaling one autoscales all; a zoom already stored is not sent again (no echo).
    stored, temps, setpoints, drill = share(
        "temps", {"temps": {"xaxis.autorange": True}}, GRAPHS, [A, B]
    )
    assert stored is None and temps is no_update
    assert _patched(setpoints) == {
        f"layout.{a}.autorange": True for a in ("xaxis", "xaxis2", "xaxis3")
    }
    again = share("drill", {"drill": {"xaxis.range": [A, B]}}, GRAPHS, [A, B])
    assert all(item is no_update for item in again)


def test_a_new_range_forgets_the_zoom() -> None:
    assert share("range-choice", {"temps": {"xaxis.range": [A, B]}}, GRAPHS, [A, B]) == (
        None,
        no_update,
        no_update,
        no_update,
    )


def test_a_rebuilt_figure_gets_the_stored_zoom_on_every_axis() -> None:
    fig = make_subplots(rows=3, cols=1, shared_xaxes=True)
    apply(fig, [A, B])
    assert [fig.layout[a].range for a in ("xaxis", "xaxis2", "xaxis3")] == [(A, B)] * 3
    plain = go.Figure()
    assert apply(plain, None).layout.xaxis.range is None
    assert apply(plain, ["only one"]).layout.xaxis.range is None

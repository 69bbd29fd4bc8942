"""Event markers on every trend: approved, shadow, live, rollback, hand-back, trip.

From the historian's events of the live loop (on the readings' clock, as the plant saw
them): a watchdog ``trip`` or ``rollback``, a ``hand_back`` and a policy ``loaded`` into
shadow or live; and from the reservoir's history the approvals (on the wall clock, placed on
the readings' clock by the site's clock; left out where it cannot place them).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

import pandas as pd
import plotly.graph_objects as go

from connectors.historian import Event, HistorianStore
from control.reservoir import HistoryRecord
from dashboards.context import AppContext, DataUnavailableError
from dashboards.site_time import SiteClock

_LOADED = re.compile(r"loaded (?P<ref>\S+) \((?P<state>shadow|live)\)")
COLOURS = {
    "approved": "#2e7d32",
    "shadow": "#6a1b9a",
    "live": "#1565c0",
    "rollback": "#c62828",
    "hand-back": "#ef6c00",
    "trip": "#b71c1c",
}


@dataclass(frozen=True)
class Marker:
    time_s: float
    kind: str
    """A key of :data:`COLOURS`."""
    label: str


def event_markers(events: Iterable[Event]) -> list[Marker]:
    out: list[Marker] = []
    for e in events:
        if e.kind == "trip":
            out.append(Marker(e.time_s, "trip", f"trip: {e.message.split(':', 1)[0]}"))
        elif e.kind == "rollback":
            out.append(Marker(e.time_s, "rollback", "rollback"))
        elif e.kind == "hand_back" and e.message.startswith("handing back"):
            out.append(Marker(e.time_s, "hand-back", "hand-back to the site"))
        elif e.kind == "policy" and (m := _LOADED.search(e.message)):
            out.append(Marker(e.time_s, m["state"], f"{m['state']}: {m['ref']}"))
    return out


def approval_markers(history: Iterable[HistoryRecord], clock: SiteClock) -> list[Marker]:
    out: list[Marker] = []
    for h in history:
        if h.to_state != "approved":
            continue
        placed = clock.from_wall(_wall_s(h.at))
        if placed is not None:
            out.append(Marker(placed, "approved", f"approved: {h.policy} by {h.actor}"))
    return out


def _wall_s(iso: str) -> float:
    stamp = pd.Timestamp(iso)
    return float((stamp if stamp.tzinfo else stamp.tz_localize("UTC")).timestamp())


def add_markers(
    fig: go.Figure, markers: Iterable[Marker], clock: SiteClock, since_s: float, until_s: float
) -> go.Figure:
    """A dashed vertical line and a label at each marker within [since_s, until_s]."""
    for m in markers:
        if not since_s <= m.time_s <= until_s:
            continue
        x = clock.local([m.time_s])[0]
        colour = COLOURS.get(m.kind, "#555")
        fig.add_shape(
            type="line",
            x0=x,
            x1=x,
            y0=0,
            y1=1,
            yref="paper",
            line={"color": colour, "width": 1, "dash": "dash"},
        )
        fig.add_annotation(
            x=x,
            y=1,
            yref="paper",
            text=m.label,
            showarrow=False,
            textangle=-90,
            xanchor="right",
            yanchor="top",
            font={"size": 10, "color": colour},
        )
    return fig


def trend_markers(
    events: Iterable[Event], history: Iterable[HistoryRecord], clock: SiteClock
) -> list[Marker]:
    """Every marker, oldest first."""
    found = [*event_markers(events), *approval_markers(history, clock)]
    return sorted(found, key=lambda m: m.time_s)


def for_trends(ctx: AppContext, historian: HistorianStore, since_s: float) -> list[Marker]:
    """The markers since ``since_s`` from the app's historian and reservoir."""
    try:
        with ctx.reservoir() as res:
            history = res.history()
    except DataUnavailableError:
        history = []
    return trend_markers(historian.events(limit=500, since_s=since_s), history, ctx.config.clock)

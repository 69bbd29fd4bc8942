"""Event markers on the trends: which events and decisions mark them, placed on the site's
clock, drawn only inside the window."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import plotly.graph_objects as go

from connectors.historian import Event
from control.reservoir import HistoryRecord
from dashboards.markers import Marker, add_markers, approval_markers, event_markers
from dashboards.site_time import SiteClock, WallAnchor

MIAMI = dt.timezone(dt.timedelta(hours=-5))


def _history(to_state: str, at: str) -> HistoryRecord:
    return HistoryRecord(
        id=1,
        policy="mpc@1",
        event="transition",
        from_state="pre_evaluated",
        to_state=to_state,  # type: ignore[arg-type]
        actor="olga",
        reason="ok",
        at=at,
        artifact_hash=None,
    )


def test_which_events_mark_the_trends() -> None:
    events = [
        Event(10.0, "watchdog", "trip", "inlet_breach: hottest rack inlet 30.4 °C"),
        Event(11.0, "watchdog", "rollback", "watchdog trip (mpc@1)"),
        Event(12.0, "live", "hand_back", "handing back from mpc@1 (rolled_back by olga: x)"),
        Event(13.0, "live", "hand_back", "complete: every setpoint is at the site's"),
        Event(14.0, "live", "policy", "loaded mpc@1 (shadow)"),
        Event(15.0, "live", "policy", "loaded mpc@1 (live)"),
        Event(16.0, "shield", "shield", "chw_supply_c: 12.4475 -> 12.45 (step)"),
    ]
    assert [(m.kind, m.label) for m in event_markers(events)] == [
        ("trip", "trip: inlet_breach"),
        ("rollback", "rollback"),
        ("hand-back", "hand-back to the site"),
        ("shadow", "shadow: mpc@1"),
        ("live", "live: mpc@1"),
    ]


def test_approvals_are_placed_on_the_sites_clock_or_left_out() -> None:
    approved = [_history("approved", "2025-12-05T12:00:12+00:00"), _history("live", "x")]
    anchor = WallAnchor(plant_s=1000.0, wall_s=1_764_936_000.0, speed=300.0)
    placed = approval_markers(approved, SiteClock.plant(1962, MIAMI, anchor))
    assert placed == [Marker(1000.0 + 12 * 300.0, "approved", "approved: mpc@1 by olga")]
    assert approval_markers(approved, SiteClock.plant(1962, MIAMI)) == []
    wall = approval_markers(approved, SiteClock.wall("UTC"))
    assert [m.time_s for m in wall] == [1_764_936_012.0]


def test_markers_are_drawn_inside_the_window_only() -> None:
    clock = SiteClock.plant(1962, MIAMI)
    fig = go.Figure(go.Scatter(x=[0, 1], y=[0, 1]))
    marks = [Marker(3600.0, "trip", "trip: stale_data"), Marker(90_000.0, "live", "late")]
    add_markers(fig, marks, clock, since_s=0.0, until_s=7200.0)
    assert len(fig.layout.shapes) == 1 and len(fig.layout.annotations) == 1
    assert pd.Timestamp(fig.layout.shapes[0].x0) == pd.Timestamp("1962-01-01 01:00")
    assert fig.layout.annotations[0].text == "trip: stale_data"

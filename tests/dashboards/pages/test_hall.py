"""The live-hall callback, called as a plain function on a real historian."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from connectors.historian import Historian, Reading
from dashboards.app import create_app
from dashboards.context import AppContext
from dashboards.figures import thin
from dashboards.pages import hall
from dashboards.site_time import SiteClock
from tests.dashboards.conftest import (
    BAD_POINT,
    HOT_POINT,
    HOT_VALUE_C,
    STALE_POINT,
    Built,
    text_of,
)


def test_hall_shows_the_newest_hall(ctx: AppContext, data: Built) -> None:
    summary, heatmap, temps, power, pue, alarms, stale, events, held = hall.update(ctx, 3.0)
    with Historian(data.historian, readonly=True) as hist:
        latest = hist.latest()
    # Heat map: 4 pods × 25 racks, the bad reading blank, the hot one in place.
    assert isinstance(heatmap, go.Figure)
    z = np.asarray(heatmap.data[0].z, dtype=float)
    assert z.shape == (4, 25)
    assert math.isnan(z[1, 3])  # BAD_POINT
    assert z[2, 7] == pytest.approx(HOT_VALUE_C)
    assert z[0, 0] == pytest.approx(latest["rack_inlet_c.0.00"].value)
    # Temperatures: six supply/return lines over the window.
    assert {t.name for t in temps.data} == {
        "supply air",
        "return air",
        "chilled water supply",
        "chilled water return",
        "condenser water supply",
        "condenser water return",
    }
    assert all(len(t.x) > 100 for t in temps.data)  # 3 h of 1-min readings
    # Power by subsystem adds up to the facility meter.
    stacks = {t.name: np.asarray(t.y, dtype=float) for t in power.data}
    assert set(stacks) == {
        "IT",
        "chillers",
        "CRAH fans",
        "chilled-water pumps",
        "condenser pumps",
        "tower fans",
        "other",
    }
    total = np.sum(list(stacks.values()), axis=0)
    with Historian(data.historian, readonly=True) as hist:
        facility = hist.series(["facility_power_kw"])["facility_power_kw"].to_numpy()
    np.testing.assert_allclose(total, facility[-len(total) :], rtol=1e-9)
    # PUE from the meters plus the controller's KPI series.
    assert [t.name for t in pue.data] == ["PUE (meters)", "PUE (controller KPI)"]
    assert 1.0 < float(np.nanmedian(np.asarray(pue.data[0].y, dtype=float))) < 2.5
    text = text_of(summary)
    it_kw = sum(r.value for n, r in latest.items() if n.startswith("it_power_kw."))
    assert f"{latest['facility_power_kw'].value / it_kw:.3f}" in text
    assert f"{HOT_VALUE_C:.1f} °C ({HOT_POINT})" in text
    # Standing alarms, most severe first: the watchdog's trip (critical), the hot rack
    # (high), the stale and the bad point (medium); the fallback is an event, not an alarm.
    alarm_text = text_of(alarms)
    assert alarm_text.index("watchdog:trip") < alarm_text.index(f"inlet:{HOT_POINT}")
    assert alarm_text.index(f"inlet:{HOT_POINT}") < alarm_text.index(f"stale:{STALE_POINT}")
    assert f"stale:{BAD_POINT}" in alarm_text and "unacknowledged" in alarm_text
    assert "fallback" not in alarm_text
    # The watchdog's trip marks every trend.
    for fig in (temps, power, pue):
        assert [a.text for a in fig.layout.annotations] == ["trip: stale data from the BMS"]
    # The fixture's live loop wrote the supply air in its newest period; the rest is the site's.
    holders = text_of(held)
    assert "supply_air_c TwinLoop: a policy 21.50" in holders
    assert "chw_supply_c the site's own control —" in holders
    event_text = text_of(events)
    assert event_text.index("fallback: site control resumed") < event_text.index("trip: stale")
    # Stale: the point that stopped an hour ago, and the bad reading.
    stale_text = text_of(stale)
    assert STALE_POINT in stale_text and BAD_POINT in stale_text and "bad" in stale_text
    assert "facility_power_kw" not in stale_text


def test_window_limits_the_series(ctx: AppContext) -> None:
    _, _, temps_1h, *_ = hall.update(ctx, 1.0)
    _, _, temps_3h, *_ = hall.update(ctx, 3.0)
    assert 55 <= len(temps_1h.data[0].x) <= 62 < len(temps_3h.data[0].x)


def test_missing_historian_is_a_message_not_a_crash(ctx: AppContext, data: Built) -> None:
    data.historian.unlink()
    summary, heatmap, *_ = hall.update(ctx, 3.0)
    assert "does not exist" in text_of(summary)
    assert heatmap.layout.annotations[0].text == "no data"


def test_a_silent_feed_raises_an_alarm(ctx: AppContext, data: Built) -> None:
    clock = [1000.0]
    ctx.now_s = lambda: clock[0]  # type: ignore[method-assign]
    summary, *_, alarms, _, _, _ = hall.update(ctx, 3.0)
    assert "feed live" in text_of(summary) and "no new readings" not in text_of(alarms)
    clock[0] += 61.0
    summary, *_, alarms, _, _, _ = hall.update(ctx, 3.0)
    assert "feed silent for 61 s" in text_of(summary)
    assert text_of(alarms).index("no new readings for 61 s") < text_of(alarms).index(HOT_POINT)
    with Historian(data.historian) as hist:  # the feed resumes
        hist.write([Reading("supply_air_c", data.newest_s + 60.0, 20.1, "degC")])
    summary, *_, alarms, _, _, _ = hall.update(ctx, 3.0)
    assert "feed live" in text_of(summary)
    # Cleared, the feed's alarm stands until an operator acknowledges it.
    assert "cleared, unacknowledged" in text_of(alarms)


def test_long_series_are_thinned_evenly_keeping_the_newest() -> None:
    frame = pd.DataFrame({"v": np.arange(4001.0)}, index=np.arange(4001.0))
    shown = thin(frame, 2000)
    assert len(shown) == 1334 and shown.index[-1] == 4000.0
    assert set(np.diff(shown.index)) == {3.0}
    assert len(thin(frame.iloc[:2000], 2000)) == 2000


def test_times_are_site_local_on_the_plant_calendar(data: Built) -> None:
    miami = dt.timezone(dt.timedelta(hours=-5))
    app = create_app(data.historian, data.reservoir, data.users, clock=SiteClock.plant(1962, miami))
    context = app.server.extensions["twinloop_dashboard"]
    try:
        summary, _, temps, power, *_ = hall.update(context, 3.0)
    finally:
        context.close()
    # The tropical week starts on 1 July; the three hours of data end at 02:59 (and 1 s).
    assert "data as of 1962-07-01 02:59:01 UTC-05:00" in text_of(summary)
    assert temps.layout.xaxis.title.text == "emulated plant time (UTC-05:00)"
    first = pd.Timestamp(temps.data[0].x[0])
    assert first.date() == dt.date(1962, 7, 1) and 0 <= first.hour <= 1
    assert pd.Timestamp(power.data[0].x[-1]).hour == 2
    assert "look like an emulated plant's clock" not in text_of(summary)


def test_a_wall_clock_over_plant_times_says_how_to_date_them(ctx: AppContext) -> None:
    summary, *_ = hall.update(ctx, 3.0)
    assert "serve the dashboard with --scenario NAME" in text_of(summary)

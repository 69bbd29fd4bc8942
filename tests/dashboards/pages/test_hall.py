"""The live-hall callback, called as a plain function on a real historian."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from connectors.historian import Historian, Reading
from control.alarm_loop import AlarmLoop
from control.alarms import AlarmConfig
from dashboards import rack_drill
from dashboards.app import create_app
from dashboards.context import AppContext
from dashboards.figures import thin
from dashboards.ids import HallIds
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
    summary, heatmap, temps, power, pue, _, _, alarms, stale, events, held = hall.update(ctx, 3.0)
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


def test_a_preset_applies_to_every_trend(ctx: AppContext, data: Built) -> None:
    out = hall.update(ctx, "1h")
    temps, power, pue, setpoints, shown = out[2], out[3], out[4], out[5], out[6]
    newest = pd.Timestamp(ctx.config.clock.local([data.newest_s])[0])
    for fig in (temps, power, pue, setpoints):
        xs = pd.to_datetime(pd.Series([x for t in fig.data for x in t.x]))
        assert newest - xs.min() <= pd.Timedelta(hours=1) and xs.max() >= newest
    assert text_of(shown) == "showing last 1 h"
    # "all" reaches the first reading, three hours back.
    _, _, temps_all, *_ = hall.update(ctx, "all")
    assert len(temps_all.data[0].x) == 180 > len(temps.data[0].x)


def test_an_absolute_range_in_site_time(ctx: AppContext, data: Built) -> None:
    clock = ctx.config.clock
    start, end = (clock.text(data.newest_s - s).rsplit(" ", 1)[0] for s in (7200.0, 3600.0))
    out = hall.update(ctx, "absolute", start, end)
    xs = pd.to_datetime(pd.Series(out[2].data[0].x))
    assert xs.min() == pd.Timestamp(start) and xs.max() == pd.Timestamp(end)
    assert text_of(out[6]).startswith(f"showing {start}")
    # The drill-down follows the same range.
    drilled = hall.drill(ctx, 2, None, "absolute", start, end)
    assert pd.to_datetime(pd.Series(drilled.data[0].x)).max() == pd.Timestamp(end)


def test_a_bad_range_is_explained_and_the_default_shown(ctx: AppContext) -> None:
    for start, end, says in [
        ("2001-01-01 02:00", "2001-01-01 01:00", "is not after the start"),
        ("soon", "2001-01-01 01:00", "the start 'soon' is not a date and time"),
    ]:
        out = hall.update(ctx, "absolute", start, end)
        message = text_of(out[6])
        assert says in message and message.endswith("showing the last 6 h")
        assert out[2].data and len(out[2].data[0].x) == 180  # 6 h back: all 3 h of data


def test_setpoints_are_drawn_over_what_the_plant_measured(ctx: AppContext, data: Built) -> None:
    setpoints = hall.update(ctx, 3.0)[5]
    titles = [a.text for a in setpoints.layout.annotations]
    for label in ("supply air (supply_air_c)", "CRAH fan speed (fan_speed_frac)"):
        assert label in titles
    assert "economiser (economiser_enable)" in titles
    traces = {(t.name, t.yaxis) for t in setpoints.data}
    assert ("measured", "y") in traces and ("commanded by TwinLoop (ctl.*)", "y") in traces
    command = next(t for t in setpoints.data if t.name.startswith("commanded"))
    assert command.line.shape == "hv"
    with Historian(data.historian, readonly=True) as hist:
        written = hist.series(["ctl.supply_air_c"])["ctl.supply_air_c"]
    # The commands as written, every control period; NaN in between (no command stored).
    assert sorted(set(np.asarray(command.y, dtype=float)[~np.isnan(command.y)])) == sorted(
        set(written)
    )
    # Only the supply air is commanded here: one command trace, five measured rows.
    assert sum(t.name.startswith("commanded") for t in setpoints.data) == 1
    assert sum(t.name.startswith("measured") for t in setpoints.data) == 5
    x_axes = {k for k in setpoints.to_dict()["layout"] if k.startswith("xaxis")}
    assert len(x_axes) == dict(hall.TIME_CHARTS)[HallIds.SETPOINTS] == 5


def test_a_pod_drills_down_to_its_racks_and_a_rack_alone(ctx: AppContext, data: Built) -> None:
    nothing = hall.drill(ctx, None, None, "6h")
    assert "choose a pod" in nothing.layout.annotations[0].text
    pod = hall.drill(ctx, 2, None, "6h")
    assert [t.name for t in pod.data] == [f"rack {r:02d}" for r in range(25)]
    limit = [s for s in pod.layout.shapes if s.y0 == s.y1 == ctx.config.inlet_alarm_c]
    assert len(limit) == 1 and "inlet limit 27 °C" in [a.text for a in pod.layout.annotations]
    # The hot rack's newest reading is in its pod's trend (max per bucket, nothing averaged away).
    hot = next(t for t in pod.data if t.name == "rack 07")
    assert float(np.nanmax(np.asarray(hot.y, dtype=float))) == pytest.approx(HOT_VALUE_C)
    rack = hall.drill(ctx, 2, HOT_POINT, "6h")
    assert [t.name for t in rack.data] == ["rack 07"] and HOT_POINT in rack.layout.title.text
    # A rack of another pod is not drawn alone: the pod's racks are.
    assert len(hall.drill(ctx, 3, HOT_POINT, "6h").data) == 25
    assert (
        "no rack-inlet readings of pod 9"
        in hall.drill(ctx, 9, None, "6h").layout.annotations[0].text
    )


def test_a_click_on_the_heat_map_picks_the_pod(ctx: AppContext) -> None:
    heatmap = hall.update(ctx, 3.0)[1]
    # What Plotly reports for a click on a cell: the row's label.
    click = {"points": [{"x": heatmap.data[0].x[7], "y": heatmap.data[0].y[2], "z": 28.4}]}
    assert rack_drill.pod_of_click(click) == 2
    assert rack_drill.pod_of_click(None) is None
    assert rack_drill.pod_of_click({"points": [{"x": "rack 01", "y": "elsewhere"}]}) is None
    racks = rack_drill.rack_options(ctx.historian().points(), 2)
    assert racks[7] == {"label": "rack 07", "value": HOT_POINT} and len(racks) == 25
    assert rack_drill.rack_options(ctx.historian().points(), None) == []


def test_a_week_comes_back_bounded(ctx: AppContext, data: Built) -> None:
    week_s = 7 * 86_400.0
    times = np.arange(data.newest_s - week_s, data.newest_s - 3 * 3600.0, 60.0)
    with Historian(data.historian) as hist:
        hist.write(
            [
                Reading("supply_air_c", float(t), 20.0, "degC", seq=50_000 + k)
                for k, t in enumerate(times)
            ]
            + [
                Reading(HOT_POINT, float(t), 22.0, "degC", seq=50_000 + k)
                for k, t in enumerate(times)
            ]
        )
    assert len(times) > 9_000
    temps = hall.update(ctx, "7d")[2]
    supply = next(t for t in temps.data if t.name == "supply air")
    assert 1_900 <= len(supply.x) <= 2_001
    drilled = hall.drill(ctx, 2, HOT_POINT, "7d")
    assert len(drilled.data[0].x) <= 2_001
    # The highest reading of each bucket: the hot reading survives a week's downsampling.
    assert float(np.nanmax(np.asarray(drilled.data[0].y, dtype=float))) == pytest.approx(
        HOT_VALUE_C
    )


def test_missing_historian_is_a_message_not_a_crash(ctx: AppContext, data: Built) -> None:
    data.historian.unlink()
    summary, heatmap, *_ = hall.update(ctx, 3.0)
    assert "does not exist" in text_of(summary)
    assert heatmap.layout.annotations[0].text == "no data"


def test_a_silent_feed_is_shown_and_its_alarm_is_the_services(ctx: AppContext, data: Built) -> None:
    clock = [1000.0]
    ctx.now_s = lambda: clock[0]  # type: ignore[method-assign]
    with Historian(data.historian, readonly=True) as hist:
        log = hist.alarm_records()
    summary, *_, alarms, _, _, _ = hall.update(ctx, 3.0)
    assert "feed live" in text_of(summary) and "no new readings" not in text_of(alarms)
    clock[0] += 61.0
    summary, *_, alarms, _, _, _ = hall.update(ctx, 3.0)
    assert "feed silent for 61 s" in text_of(summary)
    # The hall shows the silence but raises nothing: the alarm is the live service's.
    assert "no new readings" not in text_of(alarms)
    with Historian(data.historian, readonly=True) as hist:
        assert hist.alarm_records() == log
    with Historian(data.historian) as hist:  # the live service, on the same wall clock
        service = AlarmLoop(hist, AlarmConfig(), wall=lambda: clock[0])
        service.evaluate()
        clock[0] += 61.0
        assert [(r.key, r.action) for r in service.evaluate()] == [("feed", "raise")]
    summary, *_, alarms, _, _, _ = hall.update(ctx, 3.0)
    text = text_of(alarms)
    assert text.index("no new readings for 61 s") < text.index(HOT_POINT)
    assert "alarms are evaluated by the live service; newest evaluation at" in text


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

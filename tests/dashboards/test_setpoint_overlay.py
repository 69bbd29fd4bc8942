"""Setpoint against actual: the commands drawn as steps that hold for their period and
break where TwinLoop stopped writing."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from dashboards.setpoint_overlay import command_steps, overlay_figure
from dashboards.site_time import SiteClock


def test_commands_hold_until_the_next_and_break_where_writing_stopped() -> None:
    # Every 300 s from 0 to 1200, then nothing until 3000 (the site held the point).
    times = [0.0, 300.0, 600.0, 900.0, 1200.0, 3000.0, 3300.0]
    frame = pd.Series(np.nan, index=np.arange(0.0, 3360.0, 60.0))
    frame[times] = np.arange(len(times), dtype=float)
    steps = command_steps(frame)
    assert steps.dropna().index.tolist() == times
    assert steps.index.tolist() == [*times[:5], 1500.0, *times[5:]] and math.isnan(steps[1500.0])
    assert command_steps(frame.iloc[:1]).tolist() == [0.0]


def test_the_figure_shows_only_what_the_historian_holds() -> None:
    clock = SiteClock.plant(1962)
    index = pd.Index(np.arange(0.0, 3000.0, 60.0), name="time_s")
    frame = pd.DataFrame({"supply_air_c": 19.0, "ctl.supply_air_c": np.nan}, index=index)
    frame.loc[::5, "ctl.supply_air_c"] = 21.0
    fig = overlay_figure(frame, clock)
    assert [t.name for t in fig.data] == ["measured", "commanded by TwinLoop (ctl.*)"]
    assert len(fig.data[1].x) == 10 and fig.data[1].line.shape == "hv"
    assert [a.text for a in fig.layout.annotations] == ["supply air (supply_air_c)"]
    empty = overlay_figure(pd.DataFrame(index=index), clock)
    assert "no setpoint" in empty.layout.annotations[0].text

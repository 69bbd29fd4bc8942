"""The live service's alarm evaluation on a real SQLite historian, no dashboard anywhere: an
inlet excursion raised by the loop's own thread, the feed alarm on the wall clock, and a
restarted service that picks up from the log without raising a standing alarm twice."""

from __future__ import annotations

import time
from pathlib import Path

from connectors.historian import Event, Historian, Reading
from control.alarm_loop import AlarmLoop
from control.alarms import ENGINE, EVALUATED_POINT, AlarmConfig, alarm_states

INLET = "rack_inlet_c.1.04"


def test_the_service_raises_an_inlet_excursion_with_no_dashboard(tmp_path: Path) -> None:
    with Historian(tmp_path / "historian.sqlite") as store:
        store.write([Reading(INLET, 60.0 * i, 24.0 + i, "degC", seq=i) for i in range(5)])
        loop = AlarmLoop(store, AlarmConfig(period_s=0.05)).start()
        try:
            deadline = time.monotonic() + 10.0
            while not store.alarm_records() and time.monotonic() < deadline:
                time.sleep(0.02)
        finally:
            loop.stop()
        log = store.alarm_records()
        beat = store.latest([EVALUATED_POINT])[EVALUATED_POINT]
    # 27.0 is not above 27 °C; 28.0 at 240 s is.
    assert [(r.key, r.action, r.severity, r.time_s, r.actor) for r in log] == [
        (f"inlet:{INLET}", "raise", "high", 240.0, ENGINE)
    ]
    assert "28.0 °C" in log[0].message and loop.evaluations >= 1 and loop.failures == 0
    # The evaluation's own reading: the newest reading it saw, and when it ran.
    assert beat.time_s == 240.0 and abs(beat.value - time.time()) < 10.0


def test_the_feed_alarm_is_judged_on_the_wall_clock(tmp_path: Path) -> None:
    wall = [1000.0]
    with Historian(tmp_path / "historian.sqlite") as store:
        store.write([Reading("supply_air_c", 0.0, 20.0, "degC")])
        loop = AlarmLoop(store, AlarmConfig(feed_silent_after_s=60.0), wall=lambda: wall[0])
        assert loop.evaluate() == []
        # The live loop's own series move on; the site's readings do not: still silent.
        store.write([Reading("kpi.pue", 300.0, 1.3, "")])
        wall[0] += 61.0
        assert [(r.key, r.action) for r in loop.evaluate()] == [("feed", "raise")]
        store.write([Reading("supply_air_c", 360.0, 20.0, "degC")])
        wall[0] += 5.0
        assert [(r.key, r.action) for r in loop.evaluate()] == [("feed", "clear")]


def test_a_restarted_service_raises_no_standing_alarm_twice(tmp_path: Path) -> None:
    path, wall = tmp_path / "historian.sqlite", [5000.0]
    config = AlarmConfig(stale_after_s=900.0, feed_silent_after_s=60.0)
    with Historian(path) as store:
        store.write(
            [
                Reading(INLET, 1000.0, 33.0, "degC"),
                Reading("supply_air_c", 1000.0, 20.0, "degC"),
                Reading("chw_supply_c", 0.0, 12.0, "degC"),
            ]
        )
        store.add_event(Event(1000.0, "watchdog", "trip", "inlet_breach: 33.0 °C"))
        first = AlarmLoop(store, config, wall=lambda: wall[0])
        first.evaluate()
        wall[0] += 120.0  # the BMS goes quiet
        first.evaluate()
        raised = [r.key for r in store.alarm_records() if r.action == "raise"]
    assert sorted(raised) == sorted(
        [f"inlet:{INLET}", "watchdog:trip", "stale:chw_supply_c", "feed"]
    )
    # A new process: its own connection, engine and feed watch, during the same outage.
    with Historian(path) as store:
        again = AlarmLoop(store, config, wall=lambda: wall[0])
        assert again.evaluate() == []
        wall[0] += 120.0
        assert again.evaluate() == []
        # The outage ends and the hot rack cools: cleared once, by the new service.
        store.write(
            [Reading(INLET, 1060.0, 25.0, "degC"), Reading("supply_air_c", 1060.0, 20.0, "degC")]
        )
        cleared = {(r.key, r.action) for r in again.evaluate()}
        assert cleared == {(f"inlet:{INLET}", "clear"), ("feed", "clear")}
        states, _ = alarm_states(store)
        assert [r.key for r in store.alarm_records() if r.action == "raise"] == raised
    assert states["stale:chw_supply_c"].active and not states[f"inlet:{INLET}"].active

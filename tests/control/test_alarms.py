"""The alarm model on a real SQLite historian: raise and clear with hysteresis, severities,
events that are alarms and those that are not, stale site points (not the live loop's own
series), a restart that picks up where the log left off, and an evaluation that finds the
log changed by another writer (an operator's answer) evaluating again on the new log."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pytest

from connectors.historian import AlarmRecord, Event, Historian, Reading
from control.alarms import ENGINE, AlarmConfig, AlarmEngine, alarm_states, event_alarm, standing

INLET = "rack_inlet_c.0.01"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Historian]:
    with Historian(tmp_path / "historian.sqlite") as h:
        yield h


def _evaluate(engine: AlarmEngine, store: Historian, silent_s: float = 0.0) -> list[str]:
    records = engine.evaluate(store, store.latest(), feed_silent_s=silent_s)
    return [f"{r.key} {r.action} {r.severity}" for r in records]


def test_an_inlet_raises_escalates_and_clears_with_hysteresis(store: Historian) -> None:
    engine = AlarmEngine(AlarmConfig(), wall=lambda: 5.0)
    # Every sample since the last look counts, not only the newest.
    values = [26.0, 27.3, 26.8, 27.9, 33.0, 26.7, 26.4]
    store.write([Reading(INLET, 60.0 * i, v, "degC", seq=i) for i, v in enumerate(values)])
    assert _evaluate(engine, store) == [
        f"inlet:{INLET} raise high",  # 27.3 > 27
        f"inlet:{INLET} raise critical",  # 33.0 > 32: worse, a new occurrence
        f"inlet:{INLET} clear critical",  # 26.4 < 27 - 0.5 (26.8 and 26.7 were not enough)
    ]
    state = alarm_states(store)[0][f"inlet:{INLET}"]
    assert not state.active and state.raised_s == 60.0 and state.cleared_s == 360.0
    assert state.status == "cleared, unacknowledged" and "33.0 °C" in state.message
    assert _evaluate(engine, store) == []  # nothing new: nothing written
    log = store.alarm_records()
    assert [r.time_s for r in log] == [60.0, 240.0, 360.0] and {r.actor for r in log} == {ENGINE}
    assert {r.wall_s for r in log} == {5.0}


def test_events_that_are_alarms_and_shield_pacing_that_is_not(store: Historian) -> None:
    pacing = Event(100.0, "shield", "shield", "chw_supply_c: 12.447574108839035 -> 12.45 (step)")
    forbidden = Event(110.0, "shield", "shield", "supply_air_c: 31.0 -> 27.0 (envelope)")
    assert event_alarm(pacing) is None
    assert event_alarm(forbidden) == ("shield:envelope", "low")
    assert event_alarm(Event(1.0, "live", "policy", "loaded mpc@1 (live)")) is None
    for event in (
        pacing,
        forbidden,
        Event(120.0, "watchdog", "trip", "inlet_breach: 32.4 °C"),
        Event(120.0, "watchdog", "rollback", "watchdog trip (mpc@1)"),
    ):
        store.add_event(event)
    store.write([Reading("supply_air_c", 120.0, 20.0, "degC")])
    engine = AlarmEngine(AlarmConfig(), wall=lambda: 1.0)
    written = _evaluate(engine, store)
    assert written == [
        "shield:envelope raise low",
        "shield:envelope clear low",
        "watchdog:trip raise critical",
        "watchdog:trip clear critical",
        "watchdog:rollback raise high",
        "watchdog:rollback clear high",
    ]
    shown = [s.key for s in standing(alarm_states(store)[0])]
    assert shown == ["watchdog:trip", "watchdog:rollback", "shield:envelope"]
    # The boundary second is not read twice; a later trip is a new occurrence.
    assert _evaluate(engine, store) == []
    store.add_event(Event(180.0, "watchdog", "trip", "stale data"))
    store.write([Reading("supply_air_c", 180.0, 20.0, "degC")])
    assert _evaluate(engine, store) == [
        "watchdog:trip raise critical",
        "watchdog:trip clear critical",
    ]
    # A new engine over the same log (a restart) raises nothing again.
    assert _evaluate(AlarmEngine(AlarmConfig(), wall=lambda: 2.0), store) == []


def test_stale_site_points_alarm_and_the_live_loops_series_do_not(store: Historian) -> None:
    store.write(
        [
            Reading("supply_air_c", 0.0, 20.0, "degC"),
            Reading("shadow.supply_air_c", 0.0, 21.0, "degC"),
            Reading("ctl.supply_air_c", 0.0, 21.0, "degC"),
            # A field device's readback after the hand-back: empty by design (Modbus NaN).
            Reading("setpoint.chw_supply_c", 2000.0, math.nan, "degC", quality="bad"),
            Reading("facility_power_kw", 2000.0, 1000.0, "kW"),
        ]
    )
    engine = AlarmEngine(AlarmConfig(stale_after_s=900.0), wall=lambda: 1.0)
    assert _evaluate(engine, store) == ["stale:supply_air_c raise medium"]
    store.write([Reading("supply_air_c", 1700.0, 20.0, "degC")])  # 300 s behind: < 450 s
    store.write([Reading("facility_power_kw", 2000.0, 1000.0, "kW", seq=1)])
    assert _evaluate(engine, store) == ["stale:supply_air_c clear medium"]
    assert _evaluate(engine, store, silent_s=61.0) == ["feed raise critical"]
    assert _evaluate(engine, store, silent_s=0.0) == ["feed clear critical"]


class AnsweredMeanwhile(Historian):
    """A real historian on which, once, an operator's record (from another connection)
    lands just after the engine has read the log."""

    def __init__(self, path: Path, answer: AlarmRecord) -> None:
        super().__init__(path)
        self.answer: AlarmRecord | None = answer
        self.reads = 0

    def alarm_records(
        self, *, limit: int = -1, key: str | None = None, newest_first: bool = False
    ) -> list[AlarmRecord]:
        log = super().alarm_records(limit=limit, key=key, newest_first=newest_first)
        self.reads += 1
        if self.answer is not None:
            with Historian(self.path) as dashboard:
                dashboard.add_alarm_records([self.answer])
            self.answer = None
        return log


def test_a_shelf_renewed_while_the_engine_evaluates_is_not_ended(tmp_path: Path) -> None:
    path, key = tmp_path / "historian.sqlite", f"inlet:{INLET}"
    with Historian(path) as h:
        h.write([Reading(INLET, 0.0, 28.0, "degC")])
        AlarmEngine(AlarmConfig(), wall=lambda: 1.0).evaluate(h, h.latest(), feed_silent_s=0.0)
        h.add_alarm_records([AlarmRecord(0.0, key, "shelve", "high", "work", "olga", 1.0, 600.0)])
        h.write([Reading(INLET, 900.0, 28.0, "degC")])  # the shelf ran out at 600 s...
    # ... and olga shelves it again (until 4500 s) just after the engine read the log.
    renewed = AlarmRecord(900.0, key, "shelve", "high", "more work", "olga", 2.0, 4500.0)
    with AnsweredMeanwhile(path, renewed) as store:
        engine = AlarmEngine(AlarmConfig(), wall=lambda: 3.0)
        assert engine.evaluate(store, store.latest(), feed_silent_s=0.0) == []
        assert store.reads == 2  # the append found the log changed: evaluated again
        state = alarm_states(store)[0][key]
    assert state.shelved_by == "olga" and state.shelved_until_s == 4500.0
    assert state.shelve_reason == "more work" and state.active

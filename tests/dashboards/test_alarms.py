"""The alarm model on a real SQLite historian: raise and clear with hysteresis, severities,
events that are alarms and those that are not, stale site points (not the live loop's own
series), a restart that picks up where the log left off, and the operator's acknowledge and
shelve with the role checked on the server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from connectors.historian import Event, Historian, Reading
from dashboards.alarm_actions import answer
from dashboards.alarms import ENGINE, AlarmConfig, AlarmEngine, event_alarm, standing
from dashboards.app import create_app
from dashboards.auth import UserStore
from dashboards.context import AppContext
from tests.dashboards.conftest import OPERATOR, OPERATOR_PASSWORD, VIEWER, session_of

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
    state = engine.states(store)[f"inlet:{INLET}"]
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
    shown = [s.key for s in standing(engine.states(store))]
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


def test_operators_acknowledge_and_shelve_and_viewers_cannot(tmp_path: Path) -> None:
    path = tmp_path / "historian.sqlite"
    with Historian(path) as h:
        h.write([Reading(INLET, 1000.0, 28.0, "degC"), Reading("supply_air_c", 1000.0, 20.0)])
        h.add_event(Event(990.0, "watchdog", "trip", "inlet_breach"))
    users = UserStore(tmp_path / "users.json")
    users.add(OPERATOR, OPERATOR_PASSWORD, "operator")
    users.add(VIEWER, "victor-password-1", "viewer")
    app = create_app(path, tmp_path / "reservoir", users.path)
    ctx = app.server.extensions["twinloop_dashboard"]
    assert isinstance(ctx, AppContext)
    try:
        ctx.evaluate_alarms(ctx.historian().latest())
        operator, viewer = session_of(OPERATOR, "operator"), session_of(VIEWER, "viewer")
        key = f"inlet:{INLET}"
        before = len(ctx.alarm_log().alarm_records())
        refused = answer(ctx, viewer, "ack", [key])
        assert not refused.ok and "operator" in refused.message
        assert len(ctx.alarm_log().alarm_records()) == before
        assert not answer(ctx, operator, "ack", []).ok
        assert "no alarm 'inlet:nope'" in answer(ctx, operator, "ack", ["inlet:nope"]).message
        done = answer(ctx, operator, "ack", [key, "watchdog:trip"])
        assert done.ok and done.message == f"{key}, watchdog:trip acknowledged by {OPERATOR}"
        states = ctx.alarms.states(ctx.alarm_log())
        assert (states[key].acked_by, states[key].acked_s) == (OPERATOR, 1000.0)
        assert states[key].status == "active, acknowledged"
        assert states["watchdog:trip"].status == "normal"
        assert "already acknowledged" in answer(ctx, operator, "ack", [key]).message
        # Shelving needs a reason and a sensible length; the shelf hides it from the list.
        assert "give a reason" in answer(ctx, operator, "shelve", [key], hours=1.0).message
        long = answer(ctx, operator, "shelve", [key], hours=1000.0, reason="work")
        assert "at most 168 h" in long.message
        too_long = answer(ctx, operator, "shelve", [key], hours=1.0, reason="x" * 501)
        assert "501 characters" in too_long.message
        shelved = answer(ctx, operator, "shelve", [key], hours=1.0, reason="rack 0.01 blanking")
        assert shelved.ok and shelved.message == f"{key} shelved for 1 h by {OPERATOR}"
        states = ctx.alarms.states(ctx.alarm_log())
        assert states[key].shelved_until_s == 4600.0 and key not in [
            s.key for s in standing(states)
        ]
        # The shelf ends on the site's clock; a worse reading meanwhile is still logged.
        with Historian(path) as h:
            h.write([Reading(INLET, 4700.0, 33.0, "degC"), Reading("supply_air_c", 4700.0, 20.0)])
        ctx.evaluate_alarms(ctx.historian().latest())
        last = ctx.alarm_log().alarm_records(key=key)[-2:]
        assert [(r.action, r.severity) for r in last] == [
            ("raise", "critical"),
            ("unshelve", "critical"),
        ]
        states = ctx.alarms.states(ctx.alarm_log())
        assert states[key].status == "active, unacknowledged" and not states[key].shelved
        assert "is not shelved" in answer(ctx, operator, "unshelve", [key]).message
    finally:
        ctx.close()

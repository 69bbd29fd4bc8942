"""Operators' answers to alarms from the dashboard, with the alarms evaluated by the live
service on its own connection (as from another process) and the dashboard appending through
its own: acknowledge and shelve with the role checked on the server, an answer the next
evaluation respects, a new occurrence that needs a new acknowledgement, a shelf the service
ends on the site's clock, and an answer refused when the service raised the alarm again
while it was being checked."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from connectors.historian import AlarmRecord, Event, Historian, Reading
from control.alarm_loop import AlarmLoop
from control.alarms import ENGINE, AlarmConfig, AlarmState, alarm_states, standing
from dashboards.alarm_actions import answer
from dashboards.app import create_app
from dashboards.auth import UserStore
from dashboards.context import AppContext
from tests.dashboards.conftest import OPERATOR, OPERATOR_PASSWORD, VIEWER, session_of

INLET = "rack_inlet_c.0.01"
KEY = f"inlet:{INLET}"


class Site:
    """A historian, the live service's alarm evaluation on it and a dashboard over it."""

    def __init__(self, tmp_path: Path) -> None:
        self.path = tmp_path / "historian.sqlite"
        self.service_store = Historian(self.path)
        self.service = AlarmLoop(self.service_store, AlarmConfig())
        users = UserStore(tmp_path / "users.json")
        users.add(OPERATOR, OPERATOR_PASSWORD, "operator")
        users.add(VIEWER, "victor-password-1", "viewer")
        app = create_app(self.path, tmp_path / "reservoir", users.path)
        ctx = app.server.extensions["twinloop_dashboard"]
        assert isinstance(ctx, AppContext)
        self.ctx = ctx

    def read(self, t: float, inlet_c: float) -> None:
        self.service_store.write(
            [Reading(INLET, t, inlet_c, "degC"), Reading("supply_air_c", t, 20.0, "degC")]
        )

    def evaluate(self) -> list[str]:
        return [f"{r.key} {r.action}" for r in self.service.evaluate()]

    def state(self, key: str = KEY) -> AlarmState:
        return alarm_states(self.service_store)[0][key]

    def close(self) -> None:
        self.ctx.close()
        self.service_store.close()


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    made = Site(tmp_path)
    yield made
    made.close()


OPERATOR_SESSION = session_of(OPERATOR, "operator")


def test_operators_acknowledge_and_shelve_and_viewers_cannot(site: Site) -> None:
    site.read(1000.0, 28.0)
    site.service_store.add_event(Event(990.0, "watchdog", "trip", "inlet_breach"))
    assert site.evaluate() == [f"{KEY} raise", "watchdog:trip raise", "watchdog:trip clear"]
    ctx, operator = site.ctx, OPERATOR_SESSION
    before = len(site.service_store.alarm_records())
    refused = answer(ctx, session_of(VIEWER, "viewer"), "ack", [KEY])
    assert not refused.ok and "operator" in refused.message
    assert len(site.service_store.alarm_records()) == before
    assert not answer(ctx, operator, "ack", []).ok
    assert "no alarm 'inlet:nope'" in answer(ctx, operator, "ack", ["inlet:nope"]).message
    done = answer(ctx, operator, "ack", [KEY, "watchdog:trip"])
    assert done.ok and done.message == f"{KEY}, watchdog:trip acknowledged by {OPERATOR}"
    states, _ = ctx.alarm_states()
    assert (states[KEY].acked_by, states[KEY].acked_s) == (OPERATOR, 1000.0)
    assert states[KEY].status == "active, acknowledged"
    assert states["watchdog:trip"].status == "normal"
    assert "already acknowledged" in answer(ctx, operator, "ack", [KEY]).message
    # Shelving needs a reason and a sensible length.
    assert "give a reason" in answer(ctx, operator, "shelve", [KEY], hours=1.0).message
    long = answer(ctx, operator, "shelve", [KEY], hours=1000.0, reason="work")
    assert "at most 168 h" in long.message
    too_long = answer(ctx, operator, "shelve", [KEY], hours=1.0, reason="x" * 501)
    assert "501 characters" in too_long.message
    # The dashboard wrote answers only; every raise and clear is the service's.
    log = site.service_store.alarm_records()
    assert {r.actor for r in log if r.action in ("raise", "clear")} == {ENGINE}
    assert {r.action for r in log if r.actor == OPERATOR} == {"ack"}


def test_an_ack_holds_until_a_new_occurrence(site: Site) -> None:
    site.read(0.0, 28.0)
    assert site.evaluate() == [f"{KEY} raise"]
    assert answer(site.ctx, OPERATOR_SESSION, "ack", [KEY]).ok
    # The next evaluations keep the dashboard's ack: still hot, but not a new occurrence.
    site.read(60.0, 28.5)
    assert site.evaluate() == []
    site.read(120.0, 26.0)
    assert site.evaluate() == [f"{KEY} clear"]
    state = site.state()
    assert state.acked_by == OPERATOR and state.status == "normal"
    # Raised again after the clear: a new occurrence, to acknowledge again.
    site.read(180.0, 27.6)
    assert site.evaluate() == [f"{KEY} raise"]
    assert site.state().status == "active, unacknowledged"
    assert answer(site.ctx, OPERATOR_SESSION, "ack", [KEY]).ok


def test_a_shelf_is_ended_by_the_service_or_by_an_operator(site: Site) -> None:
    site.read(1000.0, 28.0)
    site.evaluate()
    why = "rack 0.01 blanking"
    shelved = answer(site.ctx, OPERATOR_SESSION, "shelve", [KEY], hours=1.0, reason=why)
    assert shelved.ok and shelved.message == f"{KEY} shelved for 1 h by {OPERATOR}"
    states, _ = site.ctx.alarm_states()
    assert states[KEY].shelved_until_s == 4600.0 and KEY not in [s.key for s in standing(states)]
    # Worse while shelved: still logged by the service; it ends the shelf on the site's clock.
    site.read(4700.0, 33.0)
    assert site.evaluate() == [f"{KEY} raise", f"{KEY} unshelve"]
    last = site.service_store.alarm_records(key=KEY)[-1]
    assert (last.action, last.actor, last.message) == ("unshelve", ENGINE, "the shelf ran out")
    assert site.state().status == "active, unacknowledged"
    assert "is not shelved" in answer(site.ctx, OPERATOR_SESSION, "unshelve", [KEY]).message
    # Shelved again and taken off by the operator; the service's next look leaves it so.
    assert answer(site.ctx, OPERATOR_SESSION, "shelve", [KEY], hours=8.0, reason=why).ok
    assert site.evaluate() == []
    assert site.state().shelved_until_s == 4700.0 + 8 * 3600.0
    done = answer(site.ctx, OPERATOR_SESSION, "unshelve", [KEY])
    assert done.ok and done.message == f"{KEY} unshelved by {OPERATOR}"
    assert site.evaluate() == [] and not site.state().shelved


class RaisedMeanwhile(Historian):
    """The dashboard's own writable historian, on which the live service (another
    connection) raises the alarm again just after the dashboard read the log."""

    def __init__(self, path: Path, site: Site) -> None:
        super().__init__(path)
        self.site: Site | None = site

    def alarm_records(
        self, *, limit: int = -1, key: str | None = None, newest_first: bool = False
    ) -> list[AlarmRecord]:
        log = super().alarm_records(limit=limit, key=key, newest_first=newest_first)
        if self.site is not None:
            site, self.site = self.site, None
            site.read(60.0, 33.0)  # critical: worse, a new occurrence
            assert site.evaluate() == [f"{KEY} raise"]
        return log


def test_an_answer_to_an_alarm_raised_again_meanwhile_is_refused(site: Site) -> None:
    site.read(0.0, 28.0)
    site.evaluate()
    store = RaisedMeanwhile(site.path, site)
    site.ctx._alarm_log = store  # the dashboard's writable connection, as alarm_log() opens it
    refused = answer(site.ctx, OPERATOR_SESSION, "ack", [KEY])
    assert not refused.ok and f"{KEY} was raised again meanwhile; look again" in refused.message
    state = site.state()
    assert state.severity == "critical" and not state.acked
    # Seen now, acknowledged.
    assert answer(site.ctx, OPERATOR_SESSION, "ack", [KEY]).ok
    assert site.state().acked_by == OPERATOR

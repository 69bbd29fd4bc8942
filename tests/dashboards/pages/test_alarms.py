"""The alarms page, called as a plain function on a real historian: it shows the alarm log
the live service writes and says plainly when no service evaluates (none ever did, or the
newest evaluation is old: an archived run); it never raises or clears an alarm itself."""

from __future__ import annotations

from pathlib import Path

from connectors.historian import Event, Historian, Reading
from control.alarm_loop import AlarmLoop
from control.alarms import AlarmConfig
from dashboards.app import create_app
from dashboards.auth import UserStore
from dashboards.context import AppContext
from dashboards.pages import alarms, hall
from tests.dashboards.conftest import OPERATOR, OPERATOR_PASSWORD, text_of

HOT = "rack_inlet_c.3.02"


def test_the_page_reads_the_services_alarms_and_evaluates_none(tmp_path: Path) -> None:
    path = tmp_path / "historian.sqlite"
    with Historian(path) as h:
        h.write([Reading(HOT, 500.0, 33.5, "degC"), Reading("supply_air_c", 500.0, 20.0, "degC")])
        h.add_event(Event(450.0, "watchdog", "trip", "inlet_breach"))
    users = UserStore(tmp_path / "users.json")
    users.add(OPERATOR, OPERATOR_PASSWORD, "operator")
    ctx = create_app(path, tmp_path / "reservoir", users.path).server.extensions[
        "twinloop_dashboard"
    ]
    assert isinstance(ctx, AppContext)
    wall = [10_000.0]
    ctx.now_s = lambda: wall[0]  # type: ignore[method-assign]
    try:
        # No live service: nothing is raised, however hot the rack, and the page says why.
        for _ in range(2):
            counts, standing, _, history, options, evaluation = alarms.view(ctx)
            hall.update(ctx, 3.0)
        assert "no live service has evaluated the alarms of this historian" in text_of(evaluation)
        assert "no standing alarms" in text_of(standing) and options == []
        assert "the alarm log is empty" in text_of(history)
        with Historian(path, readonly=True) as h:
            assert h.alarm_records() == []
        # The live service evaluates (its own connection): the page shows what it raised.
        with Historian(path) as h:
            AlarmLoop(h, AlarmConfig(), wall=lambda: wall[0]).evaluate()
            logged = h.alarm_records()
        counts, standing, _, history, options, evaluation = alarms.view(ctx)
        at = ctx.config.clock.text(500.0)
        assert text_of(evaluation) == (
            f"alarms are evaluated by the live service; newest evaluation at {at}"
        )
        assert f"inlet:{HOT}" in text_of(standing) and "33.5 °C" in text_of(standing)
        assert text_of(counts).startswith("critical 2 standing high 0 standing")
        assert [o["value"] for o in options] == [f"inlet:{HOT}", "watchdog:trip"]  # newest first
        # The service stops (an archived run): said plainly, with when it last evaluated.
        wall[0] += 600.0
        *_, evaluation = alarms.view(ctx)
        assert text_of(evaluation).startswith(
            f"no live service is evaluating the alarms: the newest evaluation, at {at}, ran 600 s"
        )
        with Historian(path, readonly=True) as h:
            assert h.alarm_records() == logged  # the page wrote nothing
    finally:
        ctx.close()

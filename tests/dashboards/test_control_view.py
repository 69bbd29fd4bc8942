"""Who holds each writable point, from what the live loop leaves in a real historian."""

from __future__ import annotations

from pathlib import Path

from connectors.historian import Event, Historian, Reading
from dashboards.control_view import HANDING_BACK, OVERRIDE, SITE, holders
from physics.plant.site_control import SETPOINT_FIELDS


def _held(h: Historian, live_ref: str | None = "mpc@1") -> dict[str, str]:
    return {x.field: x.holder for x in holders(h, h.latest(), live_ref)}


def test_the_site_twinloop_a_hand_back_and_an_override(tmp_path: Path) -> None:
    with Historian(tmp_path / "h.sqlite") as h:
        h.write([Reading("kpi.pue", 300.0, 1.4)])
        assert set(_held(h).values()) == {SITE}  # nothing written
        h.write([Reading(f"ctl.{f}", 600.0, 20.0) for f in SETPOINT_FIELDS[:4]])
        h.write([Reading("kpi.pue", 600.0, 1.4)])
        held = _held(h)
        assert held["chw_supply_c"] == "TwinLoop: mpc@1"
        assert held["economiser_enable"] == SITE  # not written this period
        h.add_event(Event(900.0, "live", "hand_back", "handing back from mpc@1 to the site's"))
        h.write([Reading(f"ctl.{f}", 900.0, 19.5) for f in SETPOINT_FIELDS])
        h.write([Reading("kpi.pue", 900.0, 1.4)])
        assert set(_held(h, None).values()) == {HANDING_BACK}
        h.add_event(Event(1200.0, "live", "hand_back", "complete: every setpoint is at the site's"))
        h.write([Reading("kpi.pue", 1200.0, 1.4)])
        assert set(_held(h, None).values()) == {SITE}  # the last command was a period ago
        h.add_event(Event(1500.0, "live", "override", "operator override active: not writing"))
        assert set(_held(h).values()) == {OVERRIDE}
        h.add_event(Event(1800.0, "live", "override", "override released"))
        assert set(_held(h).values()) == {SITE}

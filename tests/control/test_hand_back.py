"""Handing control back to the site: after an operator's rollback the live controller walks
the setpoints to the site's at the shield's step limits and logs it; a hot inlet, stale data
or an override end it at once; the pure stepping rule on its own."""

# The plant-site fixtures of test_live are imported by name, and pytest passes them back in
# as arguments of the same name.
# ruff: noqa: F811

from __future__ import annotations

import pytest

from connectors.historian import Historian
from control import approval
from control.hand_back import arrived, describe, step_towards
from control.live import LiveController
from control.reservoir import Reservoir
from control.shield import CONTINUOUS_FIELDS, ShieldConfig
from physics.plant.scenario import Scenario
from physics.plant.site_control import SETPOINT_FIELDS
from tests.control.test_live import (  # noqa: F401 (fixtures)
    PERIOD_S,
    PlantSite,
    controller,
    deploy,
    historian,
    reservoir,
    scenario,
    site,
)


def test_one_step_moves_each_setpoint_by_at_most_its_step_limit() -> None:
    config = ShieldConfig()
    last = {
        "supply_air_c": 24.0,
        "fan_speed_frac": 0.5,
        "chw_supply_c": 12.0,
        "cw_supply_c": 20.2,
        "economiser_enable": 1.0,
    }
    target = {
        "supply_air_c": 19.0,
        "fan_speed_frac": 1.0,
        "chw_supply_c": 7.0,
        "cw_supply_c": 20.0,
        "economiser_enable": 0.0,
    }
    step = step_towards(last, target, config)
    assert step == {
        "supply_air_c": 23.5,
        "fan_speed_frac": 0.6,
        "chw_supply_c": 11.5,
        "cw_supply_c": 20.0,  # within one step: there
        "economiser_enable": 0.0,  # on/off: the site's state at once
    }
    assert not arrived(step, target, config)
    assert "chw_supply_c 11.50 -> 7.00" in describe(step, target)
    for _ in range(20):
        step = step_towards(step, target, config)
    assert arrived(step, target, config) and step == pytest.approx(target)


def _live_then_rolled_back(
    site: PlantSite,
    reservoir: Reservoir,
    historian: Historian,
    scenario: Scenario,
    **kwargs: object,
) -> tuple[LiveController, dict[str, float]]:
    deploy(reservoir)
    ctl = controller(site, reservoir, historian, scenario, **kwargs)
    for _ in range(24):  # two hours of trim-and-respond: the supply air rises from 19 °C
        assert ctl.step(site.plant.time_s).mode == "live"
        site.advance(PERIOD_S)
    last = {f: float(getattr(site.commands[-1], f)) for f in SETPOINT_FIELDS}
    approval.rollback(reservoir, operator="olga", reason="inlets rising")
    return ctl, last


def test_an_operators_rollback_hands_back_at_safe_rates(
    site: PlantSite, reservoir: Reservoir, historian: Historian, scenario: Scenario
) -> None:
    config = ShieldConfig()
    ctl, last = _live_then_rolled_back(site, reservoir, historian, scenario, shield=config)
    assert last["supply_air_c"] > 20.0
    modes: list[str] = []
    previous = last
    for _ in range(40):
        report = ctl.step(site.plant.time_s)
        modes.append(report.mode)
        if report.mode == "hand_back":
            for name in CONTINUOUS_FIELDS:  # never more than one step a period
                step = abs(report.written[name] - previous[name])
                assert step <= config.step_limit(name) + 1e-9, name
            previous = dict(report.written)
        site.advance(PERIOD_S)
        if report.mode == "site":
            break
    handing = modes.count("hand_back")
    assert modes[:handing] == ["hand_back"] * handing and modes[handing] == "site"
    assert handing >= (last["supply_air_c"] - 19.0) / config.supply_air_step_k - 1
    # The last hand-back command is the site's own setpoints; nothing is written after it.
    site_setpoints = ctl._site_setpoints(float("nan"))
    assert previous["supply_air_c"] == pytest.approx(site_setpoints["supply_air_c"])
    assert len(site.commands) == 24 + handing
    assert site.site_in_control()
    events = [e.message for e in historian.events(limit=-1) if e.kind == "hand_back"]
    assert events[-1].startswith(
        "handing back from trim-and-respond@1 (rolled_back by olga: inlets rising) to the "
        "site's own control at safe rates"
    )
    assert "supply_air_c" in events[-1]
    assert events[0].startswith("complete: every setpoint is at the site's")
    assert set(historian.points("ctl.")) == {f"ctl.{f}" for f in SETPOINT_FIELDS}


def test_a_hot_inlet_hands_back_at_once(
    site: PlantSite, reservoir: Reservoir, historian: Historian, scenario: Scenario
) -> None:
    # Every inlet of the hall is above 15 °C: the hand-back must not wait.
    ctl, _ = _live_then_rolled_back(
        site, reservoir, historian, scenario, hand_back_inlet_limit_c=15.0
    )
    assert ctl.step(site.plant.time_s).mode == "site"
    assert len(site.commands) == 24
    newest = historian.events(limit=1)[0]
    assert newest.kind == "hand_back" and newest.message.startswith("at once: rack inlet")
    assert "over 15 °C" in newest.message


def test_an_override_ends_the_hand_back(
    site: PlantSite, reservoir: Reservoir, historian: Historian, scenario: Scenario
) -> None:
    override = {"active": False}
    ctl, _ = _live_then_rolled_back(
        site, reservoir, historian, scenario, override=lambda: override["active"]
    )
    assert ctl.step(site.plant.time_s).mode == "hand_back"
    site.advance(PERIOD_S)
    override["active"] = True
    assert ctl.step(site.plant.time_s).mode == "override"
    site.advance(PERIOD_S)
    override["active"] = False
    assert ctl.step(site.plant.time_s).mode == "site"  # ended: not resumed
    messages = [e.message for e in historian.events(limit=-1) if e.kind == "hand_back"]
    assert messages[0] == "ended: an operator override holds the points"

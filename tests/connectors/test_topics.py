"""Tests of the MQTT topic layout."""

from __future__ import annotations

import pytest

from connectors.topics import Topics
from physics.plant.site_control import SETPOINT_FIELDS


def test_topics_follow_the_contract_layout() -> None:
    t = Topics("hall1")
    assert t.sensor("rack_inlet_c.0.07") == "twinloop/hall1/sensors/rack_inlet_c.0.07"
    assert t.setpoint("supply_air_c") == "twinloop/hall1/setpoints/supply_air_c"
    assert t.status == "twinloop/hall1/status"
    assert t.override == "twinloop/hall1/override"
    assert t.sensors_filter == "twinloop/hall1/sensors/+"
    assert Topics("s", prefix="acme").status == "acme/s/status"
    assert len(t.setpoint_topics()) == len(SETPOINT_FIELDS)


def test_parsing_round_trips_and_rejects_foreign_topics() -> None:
    t = Topics("hall1")
    assert t.point_of(t.sensor("supply_air_c")) == "supply_air_c"
    assert t.point_of("twinloop/hall2/sensors/supply_air_c") is None
    assert t.point_of("twinloop/hall1/sensors/") is None
    assert t.point_of("twinloop/hall1/sensors/a/b") is None
    assert t.field_of(t.setpoint("chw_supply_c")) == "chw_supply_c"
    assert t.field_of("twinloop/hall1/setpoints/compressor_off") is None


@pytest.mark.parametrize("site", ["", "a/b", "a+", "#", " x"])
def test_bad_site_names_are_refused(site: str) -> None:
    with pytest.raises(ValueError, match="site"):
        Topics(site)


def test_non_writable_setpoint_is_refused() -> None:
    with pytest.raises(ValueError, match="not writable"):
        Topics("s").setpoint("chiller_power_kw")

"""Setpoint resolution: command over site control, expiry, NaN fallback, clipping, dead-band."""

from __future__ import annotations

import numpy as np
import pytest

from physics.cooling_tower import approach_k
from physics.plant.site import SetpointLimits, SiteDefaults
from physics.plant.site_control import (
    SETPOINT_FIELDS,
    EconomiserEnable,
    SetpointCommand,
    Setpoints,
    resolve_setpoints,
    site_setpoints,
)

# Explicit values, so these tests pin behaviour rather than the shipped defaults.
DEFAULTS = SiteDefaults(
    supply_air_c=20.0,
    fan_speed_frac=0.85,
    chw_supply_c=7.0,
    cw_supply_c=29.4,
    economiser_cw_supply_c=22.0,
)
LIMITS = SetpointLimits(cw_supply_c=(20.0, 35.0))  # explicit, as DEFAULTS
WET_BULB = np.array([20.0, 1.0])  # site 0: humid (economiser off), site 1: cold (on)
SITE = site_setpoints(DEFAULTS, WET_BULB, chw_return_c=18.0)


def _resolve(
    command: SetpointCommand | None, time_s: float = 0.0, previous: Setpoints | None = None
) -> tuple[Setpoints, bool]:
    return resolve_setpoints(command, time_s, SITE, previous, LIMITS)


def test_site_control_is_fixed_setpoints() -> None:
    np.testing.assert_array_equal(SITE.supply_air_c, [20.0, 20.0])
    np.testing.assert_array_equal(SITE.fan_speed_frac, [0.85, 0.85])
    np.testing.assert_array_equal(SITE.chw_supply_c, [7.0, 7.0])
    # With the economiser on, the tower is asked for cold water.
    np.testing.assert_array_equal(SITE.cw_supply_c, [29.4, DEFAULTS.economiser_cw_supply_c])
    np.testing.assert_array_equal(SITE.economiser_enable, [0.0, 1.0])


def _predicted_leaving(d: SiteDefaults, wet_bulb: float) -> float:
    """G36's prediction, restated from its parts: wet bulb + YorkCalc approach at full fan
    and design flow at the design range + the exchanger's approach."""
    tower = float(approach_k(wet_bulb, d.economiser_tower_range_k, 1.0, 1.0))
    return wet_bulb + tower + d.economiser_hx_approach_k


def test_economiser_enables_where_the_exchanger_would_cool_the_return() -> None:
    d = SiteDefaults()
    wet = np.array([-5.0, 5.0, 10.0, 15.0, 25.0])
    for chw_return in (12.0, 18.0, 30.0):
        expected = [
            _predicted_leaving(d, w) < chw_return - d.economiser_enable_offset_k for w in wet
        ]
        got = site_setpoints(d, wet, chw_return).economiser_enable
        np.testing.assert_array_equal(got, np.array(expected, dtype=float))
    # A shoulder season free-cools against a warm return; a Miami summer does not.
    assert site_setpoints(d, np.array([8.0]), 22.0).economiser_enable[0] == 1.0
    assert site_setpoints(d, np.array([24.0]), 22.0).economiser_enable[0] == 0.0
    # A larger enable offset asks for more headroom.
    strict = SiteDefaults(economiser_enable_offset_k=6.0)
    assert site_setpoints(strict, np.array([8.0]), 22.0).economiser_enable[0] == 0.0


def test_economiser_enable_holds_and_delays_its_switches() -> None:
    d = SiteDefaults()
    enable = EconomiserEnable(d, 1)
    cold, warm, ret, dt = 2.0, 24.0, 20.0, 60.0
    assert enable.step(np.array([cold]), np.array([ret]), dt)[0] == 1.0  # free to switch at once
    # Warm weather: stays on for the hold time, then switches off after the disable delay.
    steps = 1
    while enable.step(np.array([warm]), np.array([ret]), dt)[0] == 1.0:
        steps += 1
    assert steps * dt >= d.economiser_hold_s
    # Cold again right away: stays off for the hold time.
    steps = 1
    while enable.step(np.array([cold]), np.array([ret]), dt)[0] == 0.0:
        steps += 1
    assert steps * dt >= d.economiser_hold_s and steps * dt <= d.economiser_hold_s + dt
    # A missing reading holds the enable.
    before = enable.enabled.copy()
    enable.step(np.array([np.nan]), np.array([ret]), dt)
    np.testing.assert_array_equal(enable.enabled, before)


def test_no_command_gives_the_site_setpoints() -> None:
    sp, active = _resolve(None)
    assert not active
    np.testing.assert_array_equal(sp.as_matrix(), SITE.as_matrix())


def test_command_fields_win_and_omitted_fields_fall_back() -> None:
    command = SetpointCommand("c1", expires_at_s=600.0, supply_air_c=23.0, chw_supply_c=9.5)
    sp, active = _resolve(command, time_s=0.0)
    assert active
    np.testing.assert_array_equal(sp.supply_air_c, [23.0, 23.0])
    np.testing.assert_array_equal(sp.chw_supply_c, [9.5, 9.5])
    np.testing.assert_array_equal(sp.fan_speed_frac, SITE.fan_speed_frac)
    np.testing.assert_array_equal(sp.cw_supply_c, SITE.cw_supply_c)
    np.testing.assert_array_equal(sp.economiser_enable, SITE.economiser_enable)


def test_per_site_values_and_nan_fall_back_per_site() -> None:
    command = SetpointCommand(
        "c2",
        expires_at_s=600.0,
        supply_air_c=np.array([22.0, np.nan]),
        fan_speed_frac=np.array([np.nan, 0.6]),
        economiser_enable=np.array([1.0, np.nan]),
    )
    sp, active = _resolve(command)
    assert active
    np.testing.assert_array_equal(sp.supply_air_c, [22.0, 20.0])
    np.testing.assert_array_equal(sp.fan_speed_frac, [0.85, 0.6])
    np.testing.assert_array_equal(sp.economiser_enable, [1.0, 1.0])


def test_command_can_switch_the_economiser_off() -> None:
    sp, _ = _resolve(SetpointCommand("c3", 600.0, economiser_enable=0.0))
    np.testing.assert_array_equal(sp.economiser_enable, [0.0, 0.0])
    sp, _ = _resolve(SetpointCommand("c3", 600.0, economiser_enable=np.array([0.7, 0.2])))
    np.testing.assert_array_equal(sp.economiser_enable, [1.0, 0.0])


def test_valid_at_is_false_at_and_after_expiry() -> None:
    command = SetpointCommand("c4", expires_at_s=300.0, supply_air_c=24.0)
    assert command.valid_at(0.0)
    assert command.valid_at(299.999)
    assert not command.valid_at(300.0)
    assert not command.valid_at(1e9)


def test_expired_command_is_ignored_entirely() -> None:
    command = SetpointCommand(
        "c5",
        expires_at_s=300.0,
        supply_air_c=24.0,
        fan_speed_frac=0.5,
        chw_supply_c=10.0,
        cw_supply_c=25.0,
        economiser_enable=0.0,
    )
    live, active = _resolve(command, time_s=299.0)
    assert active
    np.testing.assert_array_equal(live.as_matrix()[0], [24.0, 0.5, 10.0, 25.0, 0.0])
    for t in (300.0, 3600.0):
        sp, active = _resolve(command, time_s=t)
        assert not active
        np.testing.assert_array_equal(sp.as_matrix(), SITE.as_matrix())


@pytest.mark.parametrize(
    ("field", "asked", "applied"),
    [
        ("supply_air_c", 40.0, 27.0),
        ("supply_air_c", 5.0, 16.0),
        ("fan_speed_frac", 0.1, 0.3),
        ("fan_speed_frac", 1.4, 1.0),
        ("chw_supply_c", 2.0, 5.5),
        ("chw_supply_c", 25.0, 16.0),
        ("cw_supply_c", 50.0, 35.0),
        ("cw_supply_c", 10.0, 20.0),
    ],
)
def test_values_are_clipped_into_the_limits(field: str, asked: float, applied: float) -> None:
    sp, _ = _resolve(SetpointCommand("c6", 600.0, **{field: asked}))
    np.testing.assert_array_equal(getattr(sp, field), [applied, applied])


def test_site_values_outside_tighter_limits_are_clipped_too() -> None:
    tight = SetpointLimits(supply_air_c=(21.0, 24.0))
    sp, _ = resolve_setpoints(None, 0.0, SITE, None, tight)
    np.testing.assert_array_equal(sp.supply_air_c, [21.0, 21.0])


def test_deadband_ignores_tiny_changes() -> None:
    previous, _ = _resolve(None)
    tiny = SetpointCommand(
        "c7",
        600.0,
        supply_air_c=20.0 + 0.5 * LIMITS.deadband_c,
        chw_supply_c=7.0 - 0.5 * LIMITS.deadband_c,
        cw_supply_c=previous.cw_supply_c + 0.9 * LIMITS.deadband_c,  # per site
        fan_speed_frac=0.85 + 0.5 * LIMITS.deadband_frac,
    )
    sp, active = _resolve(tiny, previous=previous)
    assert active
    np.testing.assert_array_equal(sp.as_matrix(), previous.as_matrix())
    real = SetpointCommand(
        "c8",
        600.0,
        supply_air_c=20.0 + 2 * LIMITS.deadband_c,
        chw_supply_c=7.5,
        cw_supply_c=28.0,
        fan_speed_frac=0.85 + 2 * LIMITS.deadband_frac,
    )
    sp, _ = _resolve(real, previous=previous)
    np.testing.assert_allclose(sp.supply_air_c, 20.0 + 2 * LIMITS.deadband_c)
    np.testing.assert_array_equal(sp.chw_supply_c, [7.5, 7.5])
    np.testing.assert_array_equal(sp.cw_supply_c, [28.0, 28.0])
    np.testing.assert_allclose(sp.fan_speed_frac, 0.85 + 2 * LIMITS.deadband_frac)


def test_deadband_is_per_site_and_without_previous_nothing_is_held() -> None:
    previous, _ = _resolve(None)
    command = SetpointCommand("c9", 600.0, supply_air_c=np.array([20.01, 21.0]))
    sp, _ = _resolve(command, previous=previous)
    np.testing.assert_array_equal(sp.supply_air_c, [20.0, 21.0])
    sp, _ = _resolve(command, previous=None)
    np.testing.assert_array_equal(sp.supply_air_c, [20.01, 21.0])


def test_as_matrix_columns_follow_setpoint_fields() -> None:
    command = SetpointCommand(
        "c10", 600.0, supply_air_c=22.0, fan_speed_frac=0.7, chw_supply_c=8.0, cw_supply_c=27.0
    )
    sp, _ = _resolve(command)
    matrix = sp.as_matrix()
    assert matrix.shape == (2, len(SETPOINT_FIELDS))
    for col, name in enumerate(SETPOINT_FIELDS):
        np.testing.assert_array_equal(matrix[:, col], getattr(sp, name))
    np.testing.assert_array_equal(matrix[1], [22.0, 0.7, 8.0, 27.0, 1.0])


def test_a_command_that_supplies_nothing_does_not_count_as_active() -> None:
    from physics.plant.site import SetpointLimits, SiteDefaults
    from physics.plant.site_control import SetpointCommand, resolve_setpoints, site_setpoints

    site = site_setpoints(SiteDefaults(), np.array([20.0]))
    empty = SetpointCommand("e", expires_at_s=100.0, supply_air_c=float("nan"))
    _, active = resolve_setpoints(empty, 0.0, site, None, SetpointLimits())
    assert active is False
    given = SetpointCommand("g", expires_at_s=100.0, supply_air_c=22.0)
    _, active = resolve_setpoints(given, 0.0, site, None, SetpointLimits())
    assert active is True

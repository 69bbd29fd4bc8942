"""Setpoint resolution: command over site control, expiry, NaN fallback, clipping, dead-band."""

from __future__ import annotations

import numpy as np
import pytest

from physics.plant.site import SetpointLimits, SiteDefaults
from physics.plant.site_control import (
    SETPOINT_FIELDS,
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
SITE = site_setpoints(DEFAULTS, WET_BULB)


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


def test_economiser_threshold_is_chw_setpoint_minus_approach() -> None:
    threshold = DEFAULTS.chw_supply_c - DEFAULTS.economiser_approach_k  # 3 °C
    wet = np.array([threshold - 0.1, threshold, threshold + 0.01, 25.0])
    np.testing.assert_array_equal(site_setpoints(DEFAULTS, wet).economiser_enable, [1, 1, 0, 0])
    wider = SiteDefaults(economiser_approach_k=6.0)
    np.testing.assert_array_equal(site_setpoints(wider, wet).economiser_enable, [0, 0, 0, 0])


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

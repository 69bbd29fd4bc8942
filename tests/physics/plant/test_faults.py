"""Fault events, their active windows, and the effects a schedule hands the plant."""

from __future__ import annotations

import math

import numpy as np
import pytest

from physics.plant.faults import (
    ALL_BY_DEFAULT,
    DEFAULT_MAGNITUDE,
    FAULT_KINDS,
    FaultEffects,
    FaultEvent,
    FaultSchedule,
)

N_CRAH, N_CHILLERS, N_PODS = 12, 3, 4


def _schedule(*events: FaultEvent) -> FaultSchedule:
    return FaultSchedule(events, n_crah=N_CRAH, n_chillers=N_CHILLERS, n_pods=N_PODS)


def _effects(*events: FaultEvent) -> FaultEffects:
    """Effects with every given event active (all start at 0 h, permanent)."""
    return _schedule(*events).effects_at(1.0)


NOMINAL = FaultSchedule((), n_crah=N_CRAH, n_chillers=N_CHILLERS, n_pods=N_PODS).effects_at(0.0)


def _assert_nominal(fx: FaultEffects, *, skip: tuple[str, ...] = ()) -> None:
    """Every field of ``fx`` except those in ``skip`` is at its no-fault value."""
    for name in FaultEffects.__dataclass_fields__:
        if name not in skip:
            np.testing.assert_array_equal(getattr(fx, name), getattr(NOMINAL, name), err_msg=name)


# --- FaultEvent validation -------------------------------------------------------------------


def test_known_kinds_have_default_magnitudes() -> None:
    assert set(FAULT_KINDS) == set(DEFAULT_MAGNITUDE)
    assert len(FAULT_KINDS) == 11


def test_unknown_kind_is_rejected_with_the_known_list() -> None:
    with pytest.raises(ValueError, match=r"unknown fault kind 'meteor'.*coil_fouling"):
        FaultEvent("meteor", 0.0)


def test_negative_start_is_rejected() -> None:
    with pytest.raises(ValueError, match="start_h must not be negative"):
        FaultEvent("pump_wear", -0.1)


@pytest.mark.parametrize("duration", [0.0, -1.0])
def test_non_positive_duration_is_rejected(duration: float) -> None:
    with pytest.raises(ValueError, match="duration_h must be positive"):
        FaultEvent("pump_wear", 1.0, duration_h=duration)


@pytest.mark.parametrize("kind", ["sensor_bias", "sensor_stuck"])
@pytest.mark.parametrize("target", [None, 3])
def test_sensor_faults_need_a_point_name(kind: str, target: int | None) -> None:
    with pytest.raises(ValueError, match="must name a sensor point"):
        FaultEvent(kind, 1.0, target=target)
    assert FaultEvent(kind, 1.0, target="supply_air_c").target == "supply_air_c"


@pytest.mark.parametrize("kind", sorted(set(FAULT_KINDS) - {"sensor_bias", "sensor_stuck"}))
def test_unit_faults_need_an_index_not_a_name(kind: str) -> None:
    with pytest.raises(ValueError, match="must be a unit/pod index"):
        FaultEvent(kind, 1.0, target="supply_air_c")
    FaultEvent(kind, 1.0, target=0)
    FaultEvent(kind, 1.0)


@pytest.mark.parametrize("kind", sorted(ALL_BY_DEFAULT))
def test_target_all_means_every_unit_as_no_target_does(kind: str) -> None:
    assert FaultEvent(kind, 1.0, target="all") == FaultEvent(kind, 1.0)
    assert FaultEvent(kind, 1.0, target="all").target is None


def test_coil_fouling_of_all_fouls_every_unit() -> None:
    fx = _effects(FaultEvent("coil_fouling", 0.0, target="all"))
    np.testing.assert_allclose(fx.crah_ua_mult, np.full(N_CRAH, 0.7))


@pytest.mark.parametrize(
    "kind", sorted(set(FAULT_KINDS) - ALL_BY_DEFAULT - {"sensor_bias", "sensor_stuck"})
)
def test_target_all_is_refused_where_no_target_means_one_unit_or_none(kind: str) -> None:
    with pytest.raises(ValueError, match=r"must be a unit/pod index$"):
        FaultEvent(kind, 1.0, target="all")


def test_strength_defaults_per_kind() -> None:
    assert FaultEvent("coil_fouling", 0.0).strength == 0.3
    assert FaultEvent("coil_fouling", 0.0, magnitude=0.5).strength == 0.5
    assert FaultEvent("condenser_fouling", 0.0).strength == 3.0


# --- active windows ---------------------------------------------------------------------------


def test_window_is_start_inclusive_end_exclusive() -> None:
    event = FaultEvent("chiller_trip", 2.0, duration_h=1.5)
    assert not event.active(0.0)
    assert not event.active(math.nextafter(2.0, 0.0))
    assert event.active(2.0)
    assert event.active(3.4999)
    assert not event.active(3.5)
    assert not event.active(100.0)


def test_window_without_duration_is_permanent() -> None:
    event = FaultEvent("pump_wear", 5.0)
    assert not event.active(4.999)
    assert event.active(5.0)
    assert event.active(1e6)


def test_schedule_applies_effects_only_inside_the_window() -> None:
    schedule = _schedule(FaultEvent("chiller_trip", 1.0, duration_h=2.0, target=2))
    for t in (0.0, 0.999, 3.0, 10.0):
        _assert_nominal(schedule.effects_at(t))
    for t in (1.0, 2.0, 2.999):
        fx = schedule.effects_at(t)
        np.testing.assert_array_equal(fx.chiller_tripped, [False, False, True])
        _assert_nominal(fx, skip=("chiller_tripped",))


def test_schedule_sorts_events_by_start() -> None:
    late = FaultEvent("pump_wear", 5.0)
    early = FaultEvent("chiller_trip", 1.0)
    assert _schedule(late, early).events == (early, late)


def test_no_faults_gives_nominal_effects() -> None:
    np.testing.assert_array_equal(NOMINAL.crah_ua_mult, np.ones(N_CRAH))
    np.testing.assert_array_equal(NOMINAL.crah_running, np.ones(N_CRAH, dtype=bool))
    assert np.isnan(NOMINAL.crah_stuck_valve).all() and NOMINAL.crah_stuck_valve.shape == (N_CRAH,)
    np.testing.assert_array_equal(NOMINAL.chiller_tripped, np.zeros(N_CHILLERS, dtype=bool))
    np.testing.assert_array_equal(NOMINAL.condenser_lift_k, np.zeros(N_CHILLERS))
    np.testing.assert_array_equal(NOMINAL.pod_extra_recirc, np.zeros(N_PODS))
    np.testing.assert_array_equal(NOMINAL.util_delta, np.zeros(N_PODS))
    assert NOMINAL.tower_fan_max_frac == 1.0 and NOMINAL.pump_efficiency_mult == 1.0
    assert NOMINAL.sensor_bias == {} and NOMINAL.sensor_stuck == frozenset()


# --- effects of each kind ---------------------------------------------------------------------


def test_coil_fouling_on_one_unit() -> None:
    fx = _effects(FaultEvent("coil_fouling", 0.0, magnitude=0.4, target=2))
    expected = np.ones(N_CRAH)
    expected[2] = 0.6
    np.testing.assert_allclose(fx.crah_ua_mult, expected)
    _assert_nominal(fx, skip=("crah_ua_mult",))


def test_coil_fouling_without_target_fouls_every_unit() -> None:
    fx = _effects(FaultEvent("coil_fouling", 0.0))
    np.testing.assert_allclose(fx.crah_ua_mult, np.full(N_CRAH, 0.7))


def test_coil_fouling_compounds_and_is_floored() -> None:
    fx = _effects(
        FaultEvent("coil_fouling", 0.0, magnitude=0.5, target=1),
        FaultEvent("coil_fouling", 0.0, magnitude=0.5, target=1),
        FaultEvent("coil_fouling", 0.0, magnitude=0.99, target=3),
    )
    assert fx.crah_ua_mult[1] == pytest.approx(0.25)
    assert fx.crah_ua_mult[3] == pytest.approx(0.05)
    assert fx.crah_ua_mult[0] == 1.0


def test_crah_fan_trip_stops_the_target() -> None:
    fx = _effects(FaultEvent("crah_fan_trip", 0.0, target=4))
    expected = np.ones(N_CRAH, dtype=bool)
    expected[4] = False
    np.testing.assert_array_equal(fx.crah_running, expected)
    _assert_nominal(fx, skip=("crah_running",))


def test_crah_fan_trip_without_target_stops_unit_zero_only() -> None:
    fx = _effects(FaultEvent("crah_fan_trip", 0.0))
    assert not fx.crah_running[0]
    assert fx.crah_running[1:].all()


def test_stuck_valve_holds_the_target_position() -> None:
    fx = _effects(FaultEvent("stuck_valve", 0.0, magnitude=0.6, target=1))
    assert fx.crah_stuck_valve[1] == pytest.approx(0.6)
    assert np.isnan(np.delete(fx.crah_stuck_valve, 1)).all()
    _assert_nominal(fx, skip=("crah_stuck_valve",))


def test_stuck_valve_default_and_clipping() -> None:
    fx = _effects(
        FaultEvent("stuck_valve", 0.0),
        FaultEvent("stuck_valve", 0.0, magnitude=1.7, target=5),
    )
    assert fx.crah_stuck_valve[0] == pytest.approx(DEFAULT_MAGNITUDE["stuck_valve"])
    assert fx.crah_stuck_valve[5] == 1.0


def test_chiller_trip_trips_the_target() -> None:
    fx = _effects(FaultEvent("chiller_trip", 0.0, target=1))
    np.testing.assert_array_equal(fx.chiller_tripped, [False, True, False])
    _assert_nominal(fx, skip=("chiller_tripped",))
    np.testing.assert_array_equal(
        _effects(FaultEvent("chiller_trip", 0.0)).chiller_tripped, [True, False, False]
    )


def test_condenser_fouling_adds_lift() -> None:
    fx = _effects(FaultEvent("condenser_fouling", 0.0, magnitude=2.0, target=1))
    np.testing.assert_allclose(fx.condenser_lift_k, [0.0, 2.0, 0.0])
    _assert_nominal(fx, skip=("condenser_lift_k",))
    fx_all = _effects(
        FaultEvent("condenser_fouling", 0.0), FaultEvent("condenser_fouling", 0.0, target=2)
    )
    np.testing.assert_allclose(fx_all.condenser_lift_k, [3.0, 3.0, 6.0])


def test_tower_fan_failure_caps_fan_capacity() -> None:
    fx = _effects(FaultEvent("tower_fan_failure", 0.0, magnitude=0.4))
    assert fx.tower_fan_max_frac == pytest.approx(0.6)
    _assert_nominal(fx, skip=("tower_fan_max_frac",))
    assert _effects(FaultEvent("tower_fan_failure", 0.0)).tower_fan_max_frac == 0.0
    worst = _effects(
        FaultEvent("tower_fan_failure", 0.0, magnitude=0.2),
        FaultEvent("tower_fan_failure", 0.0, magnitude=0.5),
    )
    assert worst.tower_fan_max_frac == pytest.approx(0.5)


def test_containment_door_open_adds_recirculation_in_the_pod() -> None:
    fx = _effects(FaultEvent("containment_door_open", 0.0, target=3))
    np.testing.assert_allclose(fx.pod_extra_recirc, [0.0, 0.0, 0.0, 0.15])
    _assert_nominal(fx, skip=("pod_extra_recirc",))
    capped = _effects(FaultEvent("containment_door_open", 0.0, magnitude=2.0, target=0))
    assert capped.pod_extra_recirc[0] == pytest.approx(0.6)


def test_pump_wear_lowers_efficiency() -> None:
    fx = _effects(FaultEvent("pump_wear", 0.0))
    assert fx.pump_efficiency_mult == pytest.approx(0.8)
    _assert_nominal(fx, skip=("pump_efficiency_mult",))
    two = _effects(FaultEvent("pump_wear", 0.0), FaultEvent("pump_wear", 0.0))
    assert two.pump_efficiency_mult == pytest.approx(0.64)
    floored = _effects(FaultEvent("pump_wear", 0.0, magnitude=1.0))
    assert floored.pump_efficiency_mult == pytest.approx(0.05)


def test_workload_surge_adds_utilisation_to_the_pod() -> None:
    fx = _effects(FaultEvent("workload_surge", 0.0, magnitude=0.25, target=2))
    np.testing.assert_allclose(fx.util_delta, [0.0, 0.0, 0.25, 0.0])
    _assert_nominal(fx, skip=("util_delta",))
    everywhere = _effects(FaultEvent("workload_surge", 0.0))
    np.testing.assert_allclose(everywhere.util_delta, np.full(N_PODS, 0.3))


def test_sensor_bias_sums_per_point() -> None:
    fx = _effects(
        FaultEvent("sensor_bias", 0.0, magnitude=0.5, target="supply_air_c"),
        FaultEvent("sensor_bias", 0.0, magnitude=0.25, target="supply_air_c"),
        FaultEvent("sensor_bias", 0.0, target="chw_supply_c"),
    )
    assert fx.sensor_bias == {"supply_air_c": 0.75, "chw_supply_c": 1.0}
    _assert_nominal(fx, skip=("sensor_bias",))


def test_sensor_stuck_lists_the_points() -> None:
    fx = _effects(
        FaultEvent("sensor_stuck", 0.0, target="chw_supply_c"),
        FaultEvent("sensor_stuck", 0.0, target="rack_inlet_c.0.00"),
    )
    assert fx.sensor_stuck == frozenset({"chw_supply_c", "rack_inlet_c.0.00"})
    _assert_nominal(fx, skip=("sensor_stuck",))


# --- targets and caching ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "target", "top"),
    [
        ("coil_fouling", 12, 11),
        ("crah_fan_trip", 99, 11),
        ("stuck_valve", -1, 11),
        ("chiller_trip", 3, 2),
        ("condenser_fouling", 7, 2),
        ("containment_door_open", 4, 3),
        ("workload_surge", 4, 3),
    ],
)
def test_target_out_of_range_is_rejected_at_construction(kind: str, target: int, top: int) -> None:
    event = FaultEvent(kind, 100.0, duration_h=1.0, target=target)
    with pytest.raises(ValueError, match=rf"{kind}: target {target} out of range 0\.\.{top}"):
        _schedule(event)


def test_last_unit_is_in_range() -> None:
    fx = _effects(FaultEvent("crah_fan_trip", 0.0, target=N_CRAH - 1))
    assert not fx.crah_running[-1]
    assert fx.crah_running[:-1].all()


def test_effects_are_cached_per_active_set() -> None:
    schedule = _schedule(
        FaultEvent("chiller_trip", 1.0, duration_h=1.0), FaultEvent("pump_wear", 1.5)
    )
    before = schedule.effects_at(0.0)
    assert schedule.effects_at(0.5) is before
    trip = schedule.effects_at(1.0)
    assert trip is not before
    assert schedule.effects_at(1.2) is trip
    both = schedule.effects_at(1.6)
    assert both is not trip
    assert both.chiller_tripped[0] and both.pump_efficiency_mult == pytest.approx(0.8)
    wear = schedule.effects_at(2.0)
    assert not wear.chiller_tripped.any() and wear.pump_efficiency_mult == pytest.approx(0.8)
    assert schedule.effects_at(50.0) is wear
    assert schedule.effects_at(0.0) is before

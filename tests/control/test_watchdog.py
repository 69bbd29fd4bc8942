"""The watchdog's trip rules, each on its own."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest

from control.watchdog import KEY_POINTS, Freshness, Watchdog, WatchdogConfig


@dataclass(frozen=True)
class Sample:
    value: float
    ts: float
    quality: str = "good"
    stale: bool = False


def snapshot(ts: float, inlet_c: float = 24.0, n_inlets: int = 10) -> dict[str, Sample]:
    snap = {name: Sample(20.0, ts) for name in KEY_POINTS}
    snap.update({f"rack_inlet_c.0.{i:02d}": Sample(inlet_c - i * 0.1, ts) for i in range(n_inlets)})
    return snap


def test_fresh_snapshot_passes_and_reports_the_hottest_inlet() -> None:
    dog = Watchdog()
    fresh = dog.freshness(snapshot(1_000.0), 1_100.0)
    assert fresh.ok and fresh.hottest_inlet_c == pytest.approx(24.0)
    assert (fresh.fresh_inlets, fresh.inlets) == (10, 10)
    assert dog.check(1_100.0, fresh) is None


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda s: s.pop("supply_air_c"), "stale key point(s) supply_air_c"),
        (lambda s: s.update(chw_supply_c=Sample(7.0, 0.0)), "chw_supply_c (oldest 1100 s)"),
        (lambda s: s.update(cw_supply_c=Sample(math.nan, 1e3, "bad")), "cw_supply_c"),
        (lambda s: s.update(facility_power_kw=Sample(1.0, 1e3, stale=True)), "facility_power_kw"),
        (
            lambda s: s.update({f"rack_inlet_c.0.{i:02d}": Sample(24.0, 0.0) for i in range(3)}),
            "only 7 of 10 rack inlets fresh",
        ),
    ],
)
def test_stale_or_missing_data_trips(change: object, reason: str) -> None:
    dog = Watchdog(WatchdogConfig(stale_after_s=180.0))
    snap = snapshot(1_000.0)
    assert callable(change)
    change(snap)
    fresh = dog.freshness(snap, 1_100.0)
    assert not fresh.ok and reason in fresh.reason
    trip = dog.check(1_100.0, fresh)
    assert trip is not None and trip.kind == "stale_data" and reason in trip.message


def test_everything_old_trips_and_no_data_trips() -> None:
    dog = Watchdog(WatchdogConfig(stale_after_s=180.0))
    assert dog.freshness(snapshot(1_000.0), 1_180.0).ok
    assert not dog.freshness(snapshot(1_000.0), 1_181.0).ok
    assert dog.freshness(None, 0.0).reason == "no sensor data"
    assert dog.freshness({}, 0.0).reason == "no sensor data"


def test_inlet_breach_trips() -> None:
    dog = Watchdog(WatchdogConfig(inlet_trip_c=30.0))
    assert dog.check(1.0, dog.freshness(snapshot(0.0, inlet_c=30.0), 1.0)) is None
    trip = dog.check(1.0, dog.freshness(snapshot(0.0, inlet_c=30.5), 1.0))
    assert trip is not None and trip.kind == "inlet_breach" and "30.50 °C" in trip.message


def test_divergence_needs_consecutive_periods() -> None:
    dog = Watchdog(WatchdogConfig(divergence_c=2.0, divergence_periods=3))
    fresh = Freshness(True, "", 24.0, 10, 10)
    assert dog.check(1.0, fresh, predicted_inlet_c=27.0) is None
    assert dog.check(2.0, fresh, predicted_inlet_c=27.0) is None
    assert dog.check(3.0, fresh, predicted_inlet_c=24.5) is None  # back in bounds: count resets
    assert dog.check(4.0, fresh, predicted_inlet_c=21.0) is None
    assert dog.check(5.0, fresh, predicted_inlet_c=21.0) is None
    trip = dog.check(6.0, fresh, predicted_inlet_c=21.0)
    assert trip is not None and trip.kind == "divergence" and "3.00 °C" in trip.message


def test_controller_error_trip_names_the_exception() -> None:
    trip = Watchdog().controller_error(5.0, ZeroDivisionError("boom"))
    assert (trip.kind, trip.message, trip.time_s) == (
        "controller_error",
        "ZeroDivisionError: boom",
        5.0,
    )


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"stale_after_s": 0.0}, "stale_after_s"),
        ({"min_fresh_inlet_fraction": 1.5}, "min_fresh_inlet_fraction"),
        ({"inlet_trip_c": 60.0}, "inlet_trip_c"),
        ({"divergence_c": -1.0}, "divergence_c"),
        ({"divergence_periods": 0}, "divergence_periods"),
    ],
)
def test_bad_config_is_refused(kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        WatchdogConfig(**kwargs)  # type: ignore[arg-type]

"""The device's clock: served by the emulated BACnet device from the plant's calendar, read
by the client in every poll, stamped on the readings by the ingestor, and refused (named,
counted) when it is no time, outside the site's span, going backwards or racing ahead."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from bacpypes3.primitivedata import Date

from connectors.bacnet_client import BacnetClient
from connectors.bacnet_device import BacnetBmsDevice
from connectors.bacnet_stack import ClockedDevice
from connectors.device_clock import DeviceClockError, DeviceClockGuard, PlantCalendar
from connectors.field_ingestion import FieldIngestor
from connectors.historian import Historian
from physics.plant.plant import Plant
from tests.connectors.test_bacnet import free_udp_port, site_map

JULY_1_S = 181 * 86_400.0
"""Plant seconds of 1 July 00:00 on a 365-day calendar."""


class FakeMonotonic:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_the_plant_calendar_maps_seconds_both_ways_and_skips_29_february() -> None:
    cal = PlantCalendar(2020)  # a leap year
    assert cal.local(0.0) == datetime(2020, 1, 1)
    assert cal.local(JULY_1_S + 3723.5) == datetime(2020, 7, 1, 1, 2, 3, 500_000)
    assert cal.local(59 * 86_400.0) == datetime(2020, 3, 1)  # over 29 February
    assert cal.local(365 * 86_400.0) == datetime(2021, 1, 1)
    for t in (0.0, JULY_1_S + 3723.5, 59 * 86_400.0 - 1.0, 400 * 86_400.0):
        assert cal.seconds(cal.local(t)) == pytest.approx(t)
    with pytest.raises(DeviceClockError, match="365-day"):
        cal.seconds(datetime(2020, 2, 29, 12))
    with pytest.raises(DeviceClockError, match="before"):
        cal.seconds(datetime(2019, 12, 31))
    for bad in (math.nan, -1.0, math.inf, 1e15):
        with pytest.raises(DeviceClockError):
            cal.local(bad)


def test_the_guard_takes_a_clock_at_the_plants_pace_and_names_each_refusal() -> None:
    mono = FakeMonotonic()
    guard = DeviceClockGuard(
        speed=300.0, window=(JULY_1_S, JULY_1_S + 7 * 86_400.0), monotonic=mono
    )
    assert guard.check(JULY_1_S + 60.0) == (JULY_1_S + 60.0, "")
    mono.t += 1.0  # one wall second: 300 plant seconds
    assert guard.check(JULY_1_S + 360.0) == (JULY_1_S + 360.0, "")
    assert guard.check(JULY_1_S + 360.0) == (JULY_1_S + 360.0, "")  # the same sample again
    assert guard.check(JULY_1_S + 300.0) == (None, "backwards")
    assert guard.check(JULY_1_S + 360.0 + 6 * 3600.0) == (None, "ahead")
    assert guard.check(1e12) == (None, "outside_window")
    assert guard.check(JULY_1_S - 1.0) == (None, "outside_window")
    assert guard.check(None) == (None, "missing")
    assert guard.check(math.nan) == (None, "missing")
    assert guard.last_s == JULY_1_S + 360.0  # nothing refused moved it
    counts = guard.counters()
    assert counts["clock_accepted"] == 3
    assert counts["clock_refused.backwards"] == 1 and counts["clock_refused.ahead"] == 1
    assert counts["clock_refused.outside_window"] == 2 and counts["clock_refused.missing"] == 2


@pytest.fixture
def clocked(plant: Plant) -> Iterator[tuple[BacnetBmsDevice, BacnetClient]]:
    cal = PlantCalendar(2023)
    port = free_udp_port()
    point_map = site_map(plant, port)
    with (
        BacnetBmsDevice(plant, point_map, epoch_s=JULY_1_S, calendar=cal) as device,
        BacnetClient(
            point_map, local_port=free_udp_port(), timeout_s=2.0, device_clock=cal.seconds
        ) as client,
    ):
        device.step()
        yield device, client


@pytest.mark.integration
def test_the_device_serves_the_plants_clock_and_readings_carry_it(
    clocked: tuple[BacnetBmsDevice, BacnetClient], tmp_path: Path
) -> None:
    device, client = clocked
    result = client.poll()
    assert result.device_ok
    assert result.device_time_s == pytest.approx(JULY_1_S + device.plant.time_s, abs=0.01)
    assert device.local_time() == datetime(2023, 7, 1, 0, 1)  # one 60-s step in
    historian = Historian(tmp_path / "h.sqlite")
    try:
        guard = DeviceClockGuard(speed=1.0, window=(JULY_1_S, JULY_1_S + 86_400.0))
        ingestor = FieldIngestor(client, historian, device_clock=guard)
        ingestor.poll_once()
        device.step(2)
        ingestor.poll_once()
        ingestor.poll_once()  # no step between: the same sample, not stored again
        snap = ingestor.snapshot()
        point = device.plant.point_names[0]
        assert snap[point].ts == pytest.approx(JULY_1_S + 180.0, abs=0.01)
        stored = historian.series([point])
        assert [round(t - JULY_1_S) for t in stored.index] == [60, 180]
        stats = ingestor.stats()
        assert stats["repeated_samples"] == 1 and stats["answered_polls"] == 3
    finally:
        historian.close()


class _WildcardDate(ClockedDevice):  # type: ignore[misc]
    """A device object whose date is BACnet's "any year, any weekday"."""

    @property
    def localDate(self) -> Date:  # noqa: N802
        return Date((255, 7, 1, 255))

    @localDate.setter
    def localDate(self, value: Any) -> None:  # noqa: N802
        pass


class _HostileClock:
    """A device clock an attacker (or a broken controller) sets at will."""

    def __init__(self) -> None:
        self.now = datetime(2023, 7, 1, 0, 1)

    def __call__(self) -> datetime:
        return self.now


@pytest.mark.integration
def test_hostile_device_clocks_are_refused_and_the_points_go_stale(plant: Plant) -> None:
    cal = PlantCalendar(2023)
    port = free_udp_port()
    point_map = site_map(plant, port)
    hostile = _HostileClock()
    with (
        BacnetBmsDevice(plant, point_map, epoch_s=JULY_1_S, calendar=cal) as device,
        BacnetClient(
            point_map, local_port=free_udp_port(), timeout_s=2.0, device_clock=cal.seconds
        ) as client,
    ):
        device.step()
        device._app.device_object._clock = hostile  # type: ignore[union-attr]
        guard = DeviceClockGuard(speed=1.0, window=(JULY_1_S - 86_400.0, JULY_1_S + 86_400.0))
        ingestor = FieldIngestor(client, None, device_clock=guard)
        assert ingestor.poll_once().device_ok
        point = device.plant.point_names[0]
        assert ingestor.snapshot()[point].ts == pytest.approx(JULY_1_S + 60.0)
        for when, reason in (
            (datetime(2023, 6, 30, 23, 0), "backwards"),
            (datetime(2023, 7, 1, 6, 0), "ahead"),
            (datetime(2099, 7, 1), "outside_window"),
        ):
            hostile.now = when
            result = ingestor.poll_once()
            assert not result.device_ok and result.errors["device"] == f"device_clock:{reason}"
            assert ingestor.snapshot()[point].ts == pytest.approx(JULY_1_S + 60.0)
        snap = ingestor.snapshot()[point]
        assert snap.stale and snap.stale_reason.startswith("device: device_clock:")
        stats = ingestor.stats()
        for reason in ("backwards", "ahead", "outside_window"):
            assert stats[f"clock_refused.{reason}"] == 1
        # A date that is no date (BACnet's wildcards) is no time at all.
        device._app.device_object.__class__ = _WildcardDate  # type: ignore[union-attr]
        result = ingestor.poll_once()
        assert result.errors["device"] == "device_clock:missing"
        assert client.counters()["error:clock_unreadable"] == 1

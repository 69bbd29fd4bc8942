"""A device that restarts between two polls, against a real bacpypes3 device on loopback:
its restart stamp (``time-of-device-restart``) changes, so the next poll makes every COV
point stale, subscribes anew and reads the new device's values; a device without the
stamp still works; a hostile stamp is counted by name, never a crash."""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta
from typing import Any

import pytest
from bacpypes3.basetypes import DateTime, TimeStamp
from bacpypes3.primitivedata import CharacterString, Date, Real, Time

from connectors.bacnet_cov import RESTARTED
from connectors.bacnet_device import BacnetBmsDevice
from connectors.bacnet_restart import FUTURE_TOLERANCE_S, RestartWatch, stamp_of
from connectors.field_ingestion import FieldIngestor
from physics.plant.plant import Plant
from physics.plant.scenario import Scenario
from physics.plant.simulation import build_plant
from tests.connectors.test_bacnet import free_udp_port, site_map
from tests.connectors.test_bacnet_cov import _client, _sensors

NOW = datetime(2026, 12, 5, 23, 0, 0)


def _stamp(when: datetime) -> TimeStamp:
    return TimeStamp(dateTime=DateTime(when))


# ---------------------------------------------------------------------- the stamp's checks
def test_a_changed_stamp_is_a_restart_an_unchanged_one_is_not() -> None:
    watch = RestartWatch()
    assert not watch.see(_stamp(NOW), NOW)  # the first stamp: nothing to compare with
    assert not watch.see(_stamp(NOW), NOW + timedelta(minutes=5))
    assert watch.see(_stamp(NOW + timedelta(minutes=6)), NOW + timedelta(minutes=7))
    assert not watch.see(_stamp(NOW + timedelta(minutes=6)), NOW + timedelta(minutes=8))
    assert watch.see(TimeStamp(sequenceNumber=4), None)  # another kind of stamp: changed
    assert not watch.see(TimeStamp(sequenceNumber=4), None)
    assert watch.see(TimeStamp(sequenceNumber=5), None)
    assert watch.see(TimeStamp(time=Time((1, 2, 3, 4))), None)
    assert not watch.counts


def test_hostile_stamps_are_counted_by_name_never_raised() -> None:
    watch = RestartWatch()
    assert not watch.see(_stamp(NOW), NOW)
    for hostile in (CharacterString("yesterday"), Real(3.0), None, object(), 7):
        assert not watch.see(hostile, NOW)
    assert not watch.see(TimeStamp(sequenceNumber=70_000), NOW)
    assert watch.counts["restart_time:wrong_type"] == 6
    # Ahead of the device's own clock (in the same answer): not believed, the last kept.
    ahead = NOW + timedelta(seconds=FUTURE_TOLERANCE_S + 1)
    assert not watch.see(_stamp(ahead), NOW)
    assert watch.counts["restart_time:future"] == 1
    assert not watch.see(_stamp(NOW), NOW)  # still the stamp believed
    within = NOW + timedelta(seconds=FUTURE_TOLERANCE_S - 1)
    assert watch.see(_stamp(within), NOW)
    # Backwards: named, and still a restart (a controller's clock lost in a power cut).
    assert watch.see(_stamp(NOW - timedelta(days=400)), NOW)
    assert watch.counts["restart_time:backwards"] == 1


def test_a_stamp_with_wildcards_is_compared_for_equality_only() -> None:
    special = TimeStamp(dateTime=DateTime(date=Date((255, 255, 255, 255)), time=Time((1, 0, 0, 0))))
    stamp, when = stamp_of(special)
    assert when is None and stamp[0] == "dateTime"
    watch = RestartWatch()
    assert not watch.see(special, NOW)
    assert not watch.see(special, NOW)
    assert watch.see(_stamp(NOW), NOW)
    assert not watch.counts


# ---------------------------------------------------------------------- against a device
def _device_object(device: BacnetBmsDevice) -> Any:
    assert device._app is not None and device._app.device_object is not None
    return device._app.device_object


def _set_stamp(device: BacnetBmsDevice, value: Any) -> None:
    async def put() -> None:
        _device_object(device).timeOfDeviceRestart = value

    device._loop.call(put(), 5.0)


def test_the_device_serves_its_restart(plant: Plant) -> None:
    before = datetime.now()
    with BacnetBmsDevice(plant, site_map(plant, free_udp_port())) as device:
        obj = _device_object(device)
        _stamp_numbers, when = stamp_of(obj.timeOfDeviceRestart)
        assert when is not None and before - timedelta(seconds=1) <= when <= datetime.now()
        assert str(obj.lastRestartReason) == "coldstart"


def test_a_restarted_device_is_subscribed_anew_by_the_next_poll(
    plant: Plant, scenario: Scenario, caplog: pytest.LogCaptureFixture
) -> None:
    point_map = site_map(plant, free_udp_port())
    with BacnetBmsDevice(plant, point_map) as device:
        device.step()
        sensors = _sensors(device)
        client = _client(device).start()
        ingestor = FieldIngestor(client, None)
        ingestor.poll_once()
        old = {k: s.value for k, s in ingestor.snapshot().items()}
        assert client.counters()["device_restarts"] == 0
    try:
        # A new device at the same address, same instance, between two polls: a plant
        # half an hour on, so its values are not the old device's.
        later = build_plant(scenario)
        with BacnetBmsDevice(later, point_map) as back:
            back.step(30)
            frame = later.last_frame
            assert frame is not None
            truth = {n: float(frame.values[0][i]) for i, n in enumerate(later.point_names)}
            good = {n for i, n in enumerate(later.point_names) if frame.quality[0][i]}
            moved = [n for n in sensors if n in good and truth[n] != pytest.approx(old[n])]
            assert moved, "the new device's values should differ from the old one's"
            caplog.set_level(logging.WARNING, logger="connectors.bacnet_cov")
            started = time.monotonic()
            result = ingestor.poll_once()
            took_s = time.monotonic() - started
            counts = client.counters()
            assert counts["device_restarts"] == 1
            assert counts["cov_subscribes"] == 2 * len(sensors)  # every point anew
            assert counts["cov_subscribed"] == len(sensors)
            assert any(
                "restarted" in r.getMessage() and f"{len(sensors)} points stale" in r.getMessage()
                for r in caplog.records
            )
            assert result.errors == {}
            snap = ingestor.snapshot()
            assert not any(s.stale for s in snap.values())
            for name in sensors:
                if name not in good:
                    assert snap[name].quality == "bad", name
                    continue
                assert snap[name].value == pytest.approx(truth[name], rel=1e-6, abs=1e-6), name
            assert took_s < 5.0  # within the poll: well inside one period
            # A restart is counted once: the next poll finds the same stamp.
            ingestor.poll_once()
            assert client.counters()["device_restarts"] == 1
    finally:
        client.stop()


def test_a_restart_makes_every_cov_point_stale_until_notified_again(
    plant: Plant,
) -> None:
    with BacnetBmsDevice(plant, site_map(plant, free_udp_port())) as device:
        device.step()
        with _client(device) as client:
            client.poll()
            cov = client._cov
            assert cov is not None

            async def restart() -> tuple[Any, Any]:
                again = cov._restarted()
                marked = cov._values(0.0, None)
                await cov._subscribe(again)
                return marked, cov._values(0.0, None)

            (before_values, before_errors), (after_values, after_errors) = client._call(restart())
            sensors = _sensors(device)
            assert before_values == {}
            assert before_errors == dict.fromkeys(sensors, RESTARTED)
            assert after_errors == {} and len(after_values) == len(sensors)


def test_a_device_without_the_restart_stamp_still_works(plant: Plant) -> None:
    """A stock bacpypes3 device lacks the property's value and refuses the whole request
    for it: the client asks again without it and goes on as before."""
    with BacnetBmsDevice(plant, site_map(plant, free_udp_port())) as device:
        device.step()
        _set_stamp(device, None)
        with _client(device) as client:
            first = client.poll()
            sensors = _sensors(device)
            assert first.device_ok and first.errors == {}
            assert set(first.readings) >= set(sensors)
            counts = client.counters()
            assert counts["restart_time:unserved"] == 1
            requests = counts["read_requests"]
            second = client.poll()
            assert second.errors == {} and set(second.readings) >= set(sensors)
            assert client.counters()["read_requests"] == requests + 1  # asked without it
            assert client.counters()["device_restarts"] == 0


def test_hostile_restart_stamps_from_the_device_are_counted(plant: Plant) -> None:
    with BacnetBmsDevice(plant, site_map(plant, free_udp_port())) as device:
        device.step()
        sensors = _sensors(device)
        with _client(device) as client:
            client.poll()
            _set_stamp(device, _stamp(datetime.now() + timedelta(days=365)))
            result = client.poll()
            counts = client.counters()
            assert counts["restart_time:future"] == 1 and counts["device_restarts"] == 0
            assert result.errors == {} and set(result.readings) >= set(sensors)
            _set_stamp(device, _stamp(datetime(2000, 1, 1)))  # a clock lost: still a restart
            result = client.poll()
            counts = client.counters()
            assert counts["restart_time:backwards"] == 1 and counts["device_restarts"] == 1
            assert counts["cov_subscribes"] == 2 * len(sensors)
            assert result.errors == {} and set(result.readings) >= set(sensors)

            # A character string on the wire: the device's answer is unreadable with it.
            obj = _device_object(device)
            read = obj.read_property

            async def lying(attr: int | str, index: int | None = None) -> object:
                name = obj._property_identifier_class(attr).attr if isinstance(attr, int) else attr
                if name == "timeOfDeviceRestart":
                    return CharacterString("yesterday")
                return await read(attr, index)

            async def lie() -> None:
                object.__setattr__(obj, "read_property", lying)  # bacpypes3 traps properties

            device._loop.call(lie(), 5.0)
            result = client.poll()
            assert client.counters()["restart_time:wrong_type"] == 1
            assert result.device_ok and result.errors == {}
            assert set(result.readings) >= set(sensors)

"""Sensor reads by COV subscription against a real bacpypes3 device on loopback: a changed
value is notified, a steady one sends nothing and stays fresh, a dead device makes every
point stale within two polls (the watchdog trips), a refused subscription or renewal falls
back to polling (``auto``) or is stale (``cov``), and forged notifications are counted by
name and believed by nothing."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from bacpypes3.apdu import (
    ConfirmedCOVNotificationRequest,
    ErrorRejectAbortNack,
    UnconfirmedCOVNotificationRequest,
)
from bacpypes3.basetypes import PropertyValue, StatusFlags
from bacpypes3.constructeddata import Any as AnyValue
from bacpypes3.pdu import Address
from bacpypes3.primitivedata import CharacterString, ObjectIdentifier, Real

from connectors.bacnet_client import BacnetClient
from connectors.bacnet_cov import COV_INCREMENT_BY_UNIT, ReadMode
from connectors.bacnet_device import BacnetBmsDevice
from connectors.bacnet_stack import LoopThread, open_application
from connectors.field_ingestion import FieldIngestor
from connectors.historian import Historian
from control.watchdog import Watchdog
from physics.plant.plant import Plant
from physics.plant.scenario import Scenario
from physics.plant.sensors import SensorNoise
from physics.plant.simulation import build_plant
from tests.connectors.test_bacnet import INSTANCE, free_udp_port, site_map

pytestmark = pytest.mark.integration

REFUSED = "services/cov-subscription-failed"


@pytest.fixture
def device(plant: Plant) -> Iterator[BacnetBmsDevice]:
    with BacnetBmsDevice(plant, site_map(plant, free_udp_port())) as dev:
        dev.step()
        yield dev


def _client(device: BacnetBmsDevice, reads: ReadMode = "cov", **kw: Any) -> BacnetClient:
    kw.setdefault("timeout_s", 2.0)
    return BacnetClient(device.point_map, local_port=free_udp_port(), reads=reads, **kw)


def _sensors(device: BacnetBmsDevice) -> list[str]:
    return [e.name for e in device.point_map.for_device("bms") if e.point is not None]


def _wait(condition: Callable[[], bool], timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def _all_notified(device: BacnetBmsDevice, client: BacnetClient, base: tuple[int, int]) -> bool:
    """Every notification the device sent since ``base`` has been taken by the client."""
    sent = device.counters()["cov_notifications"] - base[0]
    taken = client.counters()["cov_notifications"] - base[1]
    return taken == sent


def _bases(device: BacnetBmsDevice, client: BacnetClient) -> tuple[int, int]:
    return device.counters()["cov_notifications"], client.counters()["cov_notifications"]


@pytest.mark.parametrize("confirmed", [False, True], ids=["unconfirmed", "confirmed"])
def test_a_changed_value_is_notified_and_read(
    device: BacnetBmsDevice, plant: Plant, confirmed: bool
) -> None:
    sensors = _sensors(device)
    with _client(device, cov_confirmed=confirmed) as client:
        ingestor = FieldIngestor(client, None)
        first = ingestor.poll_once()
        counts = client.counters()
        assert counts["cov_subscribed"] == len(sensors) == counts["cov_subscribes"]
        assert counts["read_requests"] == 1  # health, enable and setpoints only
        assert set(first.readings) >= set(sensors) and first.errors == {}
        base = _bases(device, client)
        device.step(10)  # ten minutes of plant time: some values move past their increment
        assert _wait(lambda: _all_notified(device, client, base))
        assert device.counters()["cov_notifications"] > base[0]
        second = ingestor.poll_once()
        frame = plant.last_frame
        assert frame is not None
        moved = 0
        for i, name in enumerate(plant.point_names):
            entry = device.point_map.entry(name)
            reading = second.readings[name]
            if not frame.quality[0][i]:
                assert reading.quality == "bad"
                continue
            truth = float(frame.values[0][i])
            step = 0.5 if entry.unit == "bool" else COV_INCREMENT_BY_UNIT[entry.unit]
            assert abs(reading.value - truth) < step * (1 + 1e-6) + 1e-4, name
            moved += reading.value != first.readings[name].value
        assert moved > 0
        assert client.counters()["read_requests"] == 2


def test_a_sensor_going_to_fault_is_notified_as_bad_quality(scenario: Scenario) -> None:
    """bacpypes3 derives status flags from the reliability without announcing them: the
    device announces them, so a dropout reaches a COV client as a bad-quality reading."""
    plant = build_plant(replace(scenario, noise=SensorNoise(dropout_prob=0.3)))
    with BacnetBmsDevice(plant, site_map(plant, free_udp_port())) as device:
        device.step()
        with _client(device) as client:
            client.poll()
            for _ in range(5):
                base = _bases(device, client)
                device.step()
                assert _wait(lambda b=base: _all_notified(device, client, b))
                result = client.poll()
                frame = plant.last_frame
                assert frame is not None
                for i, name in enumerate(plant.point_names):
                    bad = result.readings[name].quality == "bad"
                    assert bad == (not frame.quality[0][i]), name
            assert client.counters()["bad_quality"] > 0


def test_a_steady_value_sends_nothing_and_stays_fresh(
    device: BacnetBmsDevice, tmp_path: Path
) -> None:
    now = [1000.0]
    with (
        Historian(tmp_path / "historian.sqlite") as historian,
        _client(device) as client,
    ):
        ingestor = FieldIngestor(client, historian, clock=lambda: now[0])
        ingestor.poll_once()
        base = _bases(device, client)
        for _ in range(3):  # the plant does not move: nothing is sent
            time.sleep(0.1)
            now[0] += 60.0
            ingestor.poll_once()
        assert _bases(device, client) == base
        snap = ingestor.snapshot()
        assert not any(s.stale for s in snap.values())
        assert snap["supply_air_c"].ts == now[0]
        assert Watchdog().freshness(snap, now[0]).ok
        stored = historian.series(["supply_air_c"])
        assert len(stored) == 4  # every period's value is a reading of that period
        assert client.counters()["read_requests"] == 4


def _poll_until_fresh(ingestor: FieldIngestor, timeout_s: float = 10.0) -> None:
    """Poll until every point is fresh: a point is fresh with its first notification, which
    on a busy host may arrive after the poll that subscribed it."""
    deadline = time.monotonic() + timeout_s
    ingestor.poll_once()
    while any(s.stale for s in ingestor.snapshot().values()):
        assert time.monotonic() < deadline, f"points still stale {timeout_s:g} s on"
        time.sleep(0.2)
        ingestor.poll_once()


def test_a_dead_device_makes_every_point_stale_within_two_polls(plant: Plant) -> None:
    point_map = site_map(plant, free_udp_port())
    with BacnetBmsDevice(plant, point_map) as device:
        device.step()
        client = _client(device, timeout_s=0.5).start()
        ingestor = FieldIngestor(client, None, failed_polls_to_stale=2)
        _poll_until_fresh(ingestor)
    try:
        # Killed with every value steady: no notification is missed, the health read fails.
        started = time.monotonic()
        ingestor.poll_once()
        assert not any(s.stale for s in ingestor.snapshot().values())  # once: age tells
        ingestor.poll_once()
        assert time.monotonic() - started < 3.0
        snap = ingestor.snapshot()
        assert snap and all(s.stale and s.stale_reason == "device: timeout" for s in snap.values())
        watchdog = Watchdog()
        trip = watchdog.check(0.0, watchdog.freshness(snap, 0.0))
        assert trip is not None and trip.kind == "stale_data"
        with BacnetBmsDevice(plant, point_map) as back:  # restarted: subscriptions forgotten
            back.step()
            ingestor.poll_once()
            counts = client.counters()
            assert counts["cov_subscribes"] == 2 * len(_sensors(back))
            _poll_until_fresh(ingestor)
            assert client.counters()["cov_subscribes"] == 2 * len(_sensors(back))
    finally:
        client.stop()


@pytest.mark.parametrize("reads", ["cov", "auto"])
def test_a_device_without_cov(plant: Plant, reads: ReadMode) -> None:
    with BacnetBmsDevice(plant, site_map(plant, free_udp_port()), cov=False) as device:
        device.step()
        sensors = _sensors(device)
        with _client(device, reads=reads) as client, _client(device, reads="poll") as poller:
            result = client.poll()
            counts = client.counters()
            assert counts[f"cov_refused:{REFUSED}"] == len(sensors)
            assert counts["cov_subscribed"] == 0
            if reads == "auto":  # every sensor polled instead, as a polling client does
                assert counts["cov_fallback"] == len(sensors) and result.errors == {}
                assert set(result.readings) == set(poller.poll().readings)
                assert counts["read_requests"] == poller.counters()["read_requests"]
            else:
                assert {result.errors[s] for s in sensors} == {f"cov_refused:{REFUSED}"}
                assert not set(sensors) & set(result.readings)


@pytest.mark.parametrize("reads", ["cov", "auto"])
def test_a_refused_renewal_makes_the_point_stale(device: BacnetBmsDevice, reads: ReadMode) -> None:
    with _client(device, reads=reads, cov_lifetime_s=2) as client:
        ingestor = FieldIngestor(client, None)
        ingestor.poll_once()
        time.sleep(1.1)  # past half the lifetime: the next poll renews
        ingestor.poll_once()
        assert client.counters()["cov_renewals"] == len(_sensors(device))
        assert not any(s.stale for s in ingestor.snapshot().values())
        device.cov = False  # the device stops taking subscriptions (out of slots...)
        time.sleep(1.1)
        ingestor.poll_once()
        snap = ingestor.snapshot()
        reason = f"cov_refused:{REFUSED}" if reads == "cov" else f"cov_renew:{REFUSED}"
        assert snap["supply_air_c"].stale and snap["supply_air_c"].stale_reason == reason
        ingestor.poll_once()
        stale = ingestor.snapshot()["supply_air_c"].stale
        assert stale == (reads == "cov")  # auto polls it now; cov leaves it stale


def _notification(
    device: BacnetBmsDevice,
    client: BacnetClient,
    name: str,
    value: Any,
    *,
    confirmed: bool = False,
    process_id: int | None = None,
    instance: int | None = None,
) -> Any:
    entry = device.point_map.entry(name)
    assert entry.bacnet is not None and client._cov is not None
    apdu = (ConfirmedCOVNotificationRequest if confirmed else UnconfirmedCOVNotificationRequest)()
    apdu.pduDestination = Address(f"127.0.0.1:{client.local_port}")
    apdu.subscriberProcessIdentifier = process_id or client._cov.process_id
    apdu.initiatingDeviceIdentifier = ObjectIdentifier(("device", INSTANCE))
    apdu.monitoredObjectIdentifier = ObjectIdentifier(
        (entry.bacnet.object, entry.bacnet.instance if instance is None else instance)
    )
    apdu.timeRemaining = 100
    apdu.listOfValues = [
        PropertyValue(propertyIdentifier="present-value", value=AnyValue(value)),
        PropertyValue(propertyIdentifier="status-flags", value=AnyValue(StatusFlags([0, 0, 0, 0]))),
    ]
    return apdu


def test_forged_notifications_are_counted_and_believed_by_nothing(
    device: BacnetBmsDevice,
) -> None:
    with _client(device) as client:
        ingestor = FieldIngestor(client, None)
        ingestor.poll_once()
        before = ingestor.snapshot()["supply_air_c"].value
        # From another address, with everything else right (the process id guessed).
        loop = LoopThread("forger")
        loop.start()
        forger = loop.call(
            open_application("127.0.0.1", free_udp_port(), device_instance=INSTANCE, name="forger"),
            10.0,
        )

        async def forge(apdu: Any) -> Any:
            return await forger.request(apdu)

        try:
            loop.call(forge(_notification(device, client, "supply_air_c", Real(35.0))), 5.0)
            # From the device's own address (its socket): what a spoofer could send.
            sends = [
                _notification(device, client, "supply_air_c", Real(36.0), process_id=7),
                _notification(device, client, "supply_air_c", Real(36.0), instance=4_000_000),
                _notification(device, client, "supply_air_c", CharacterString("hot")),
                _notification(device, client, "it_power_kw.0", Real(-5.0)),
                _notification(device, client, "return_air_c", Real(math.inf)),
            ]

            async def send_all() -> Any:
                app = device._app  # the device's own socket, for forged traffic
                assert app is not None
                for apdu in sends:
                    await app.request(apdu)
                confirmed_answer = None
                try:
                    confirmed_answer = await app.request(
                        _notification(
                            device, client, "supply_air_c", Real(37.0), confirmed=True, process_id=9
                        )
                    )
                except ErrorRejectAbortNack as exc:  # the client's error answer
                    confirmed_answer = exc
                return confirmed_answer

            answer = device._loop.call(send_all(), 10.0)
            assert "unknown-subscription" in str(getattr(answer, "errorCode", answer))
            expected = {
                "cov_rejected:foreign_address": 1,
                "cov_rejected:unknown_process": 2,
                "cov_rejected:unknown_object": 1,
                "cov_rejected:wrong_type": 1,
                "cov_rejected:out_of_range": 1,
                "cov_rejected:non_finite": 1,
            }
            assert _wait(lambda: all(client.counters().get(k) == v for k, v in expected.items())), (
                client.counters()
            )
            ingestor.poll_once()
            snap = ingestor.snapshot()
            assert snap["supply_air_c"].value == before
            # The device's own address said something unbelievable: that point is stale
            # until a good value comes, as a bad polled value would be.
            assert snap["supply_air_c"].stale_reason == "wrong_type"
            assert snap["it_power_kw.0"].stale_reason == "out_of_range"
            assert snap["return_air_c"].stale_reason == "non_finite"
            assert not snap["chw_supply_c"].stale
        finally:

            async def close() -> None:
                forger.close()

            loop.call(close(), 5.0)
            loop.stop()

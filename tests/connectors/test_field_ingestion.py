"""Field ingestion over a real bacpypes3 device on loopback: every point into the snapshot and
the historian, and staleness from the device's health (a device that stops answering makes
every point stale after two failed polls; one that answers again makes them fresh)."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from connectors.bacnet_client import BacnetClient
from connectors.bacnet_device import BacnetBmsDevice
from connectors.field_ingestion import FieldIngestor
from connectors.historian import Historian
from physics.plant.plant import Plant
from tests.connectors.test_bacnet import free_udp_port, site_map

pytestmark = pytest.mark.integration


@pytest.fixture
def historian(tmp_path: Path) -> Iterator[Historian]:
    with Historian(tmp_path / "historian.sqlite") as store:
        yield store


@pytest.fixture
def bacnet(plant: Plant) -> Iterator[tuple[BacnetBmsDevice, BacnetClient]]:
    port = free_udp_port()
    with (
        BacnetBmsDevice(plant, site_map(plant, port)) as device,
        # 3 s per request: a CI machine's two loaded cores once let one request of the poll
        # go unanswered within 0.5 s, and the test is about what a poll carries, not timing.
        BacnetClient(device.point_map, local_port=free_udp_port(), timeout_s=3.0) as client,
    ):
        device.step()
        yield device, client


def test_a_poll_feeds_the_snapshot_and_the_historian(
    bacnet: tuple[BacnetBmsDevice, BacnetClient], historian: Historian, plant: Plant
) -> None:
    device, client = bacnet
    now = [1000.0]
    ingestor = FieldIngestor(client, historian, clock=lambda: now[0])
    first = ingestor.poll_once()
    assert not first.errors, first.errors  # names the request that went unanswered
    snap = ingestor.snapshot()
    frame = plant.last_frame
    assert frame is not None
    for i, name in enumerate(plant.point_names):
        state = snap[name]
        assert state.ts == 1000.0 and not state.stale and state.seq == 1
        if frame.quality[0][i]:
            assert state.quality == "good"
            assert state.value == pytest.approx(float(frame.values[0][i]), rel=1e-6, abs=1e-4)
        else:
            assert state.quality == "bad" and math.isnan(state.value)
    assert snap["setpoint.supply_air_c"].value == 19.0
    device.step()
    now[0] = 1060.0
    ingestor.poll_once()
    stored = historian.series(["supply_air_c"])
    assert len(stored) == 2
    assert historian.latest(["supply_air_c"])["supply_air_c"].time_s == 1060.0
    assert ingestor.stats()["answered_polls"] == 2


def test_a_device_that_stops_answering_makes_every_point_stale(
    plant: Plant, historian: Historian
) -> None:
    port = free_udp_port()
    point_map = site_map(plant, port)
    with BacnetClient(point_map, local_port=free_udp_port(), timeout_s=0.5) as client:
        ingestor = FieldIngestor(client, historian, failed_polls_to_stale=2)
        with BacnetBmsDevice(plant, point_map) as device:
            device.step()
            ingestor.poll_once()
        assert not any(s.stale for s in ingestor.snapshot().values())
        ingestor.poll_once()  # no answer once: the readings stand, their age tells
        assert not any(s.stale for s in ingestor.snapshot().values())
        ingestor.poll_once()  # twice: the device is down
        snap = ingestor.snapshot()
        assert all(s.stale and s.stale_reason == "device: timeout" for s in snap.values())
        assert [e.kind for e in historian.events()] == ["device_lost"]
        with BacnetBmsDevice(plant, point_map) as device:  # back at the same address
            device.step()
            ingestor.poll_once()
        assert not any(s.stale for s in ingestor.snapshot().values())
        assert [e.kind for e in historian.events()] == ["device_back", "device_lost"]
        assert ingestor.stats()["failed_polls"] == 2


def test_no_answered_poll_for_too_long_makes_every_point_stale(
    bacnet: tuple[BacnetBmsDevice, BacnetClient],
) -> None:
    _, client = bacnet
    ingestor = FieldIngestor(client, None, stale_after_s=0.2)
    ingestor.poll_once()
    assert not ingestor.snapshot()["supply_air_c"].stale
    time.sleep(0.3)  # the poller stopped: nothing asks, so nothing is known
    assert ingestor.snapshot()["supply_air_c"].stale_reason == "no answered poll"


def test_the_poller_thread_polls_until_stopped(
    bacnet: tuple[BacnetBmsDevice, BacnetClient],
) -> None:
    _, client = bacnet
    ingestor = FieldIngestor(client, None).start(0.05)
    deadline = time.monotonic() + 10.0
    while ingestor.stats().get("polls", 0) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    ingestor.stop()
    polls = ingestor.stats()["polls"]
    assert polls >= 3
    time.sleep(0.2)
    assert ingestor.stats()["polls"] == polls
    with pytest.raises(ValueError, match="interval_s"):
        ingestor.start(0.0)

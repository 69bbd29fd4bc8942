"""Discovering a real bacpypes3 device on loopback by its address alone (no Who-Is): its
instance through the wildcard instance, its object list, names and units, and the point
map drafted from them; devices that cannot be discovered are one named error."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from connectors.bacnet_device import BacnetBmsDevice
from connectors.bacnet_discovery import BacnetDiscoveryError, discover, draft_point_map
from connectors.catalog import PointCatalog
from connectors.point_map import load_point_map
from physics.plant.plant import Plant
from tests.connectors.test_bacnet import free_udp_port, site_map

pytestmark = pytest.mark.integration


@pytest.fixture
def device(plant: Plant) -> Iterator[BacnetBmsDevice]:
    with BacnetBmsDevice(plant, site_map(plant, free_udp_port())) as running:
        yield running


def _entries(points: object) -> set[tuple[str, str, int, bool]]:
    assert isinstance(points, list)
    return {(e.name, e.bacnet.object, e.bacnet.instance, e.writable) for e in points}


def test_discover_lists_the_objects_and_drafts_the_map_the_device_serves(
    device: BacnetBmsDevice, plant: Plant, tmp_path: Path
) -> None:
    address = f"127.0.0.1:{device.port}"
    inventory = discover(address, local_host="127.0.0.1", local_port=free_udp_port(), timeout_s=2)
    assert inventory.device_instance == 1001 and inventory.address == address
    served = device.point_map.points
    assert len(inventory.objects) == len(served) + 2  # and the heartbeat and the enable
    names = {(o.object, o.instance): o.name for o in inventory.objects}
    assert names[("analog-input", 0)] == served[0].point
    assert names[("analog-value", 900)] == "twinloop_heartbeat"
    inlet = next(o for o in inventory.objects if o.name == "rack_inlet_c.0.00")
    assert inlet.units == "degrees-celsius"
    catalog = PointCatalog.for_site(plant.config)
    draft, unmapped = draft_point_map(inventory, catalog)
    assert unmapped == []
    assert _entries(draft.points) == _entries(served)
    bms = draft.devices["bms"]
    assert (bms.address, bms.device_instance) == (address, 1001)
    assert bms.heartbeat == device.point_map.devices["bms"].heartbeat
    assert bms.supervisory_enable == device.point_map.devices["bms"].supervisory_enable
    path = tmp_path / "draft.yaml"
    path.write_text(draft.to_yaml(), encoding="utf-8")
    assert _entries(load_point_map(path, catalog).points) == _entries(served)


def test_a_given_instance_is_checked_by_the_device(device: BacnetBmsDevice) -> None:
    address = f"127.0.0.1:{device.port}"
    found = discover(address, device_instance=1001, local_port=free_udp_port(), timeout_s=2)
    assert len(found.objects) == len(device.point_map.points) + 2
    with pytest.raises(BacnetDiscoveryError, match="cannot read the object list"):
        discover(address, device_instance=77, local_port=free_udp_port(), timeout_s=2)


def test_nobody_at_the_address_is_one_named_error() -> None:
    address = f"127.0.0.1:{free_udp_port()}"
    with pytest.raises(BacnetDiscoveryError, match=f"{address}: no answer"):
        discover(address, local_host="127.0.0.1", local_port=free_udp_port(), timeout_s=0.5)
    with pytest.raises(BacnetDiscoveryError, match="must be HOST:PORT"):
        discover("127.0.0.1", timeout_s=0.5)

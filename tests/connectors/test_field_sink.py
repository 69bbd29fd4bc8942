"""The live controller's sink and override source over a real bacpypes3 device on loopback:
writes in TwinLoop's slot audited with the device's own answer, refusals raised and named,
the hand-back by relinquish, and the operator's override and supervisory enable."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pytest

from connectors.bacnet_client import BacnetClient
from connectors.bacnet_device import OPERATOR_PRIORITY, BacnetBmsDevice
from connectors.field_ingestion import FieldIngestor
from connectors.field_sink import FieldOverride, FieldSetpointSink, FieldWriteError
from connectors.historian import Historian
from physics.plant.plant import Plant
from tests.connectors.test_bacnet import free_udp_port, site_map

pytestmark = pytest.mark.integration


@pytest.fixture
def historian(tmp_path: Path) -> Iterator[Historian]:
    with Historian(tmp_path / "historian.sqlite") as store:
        yield store


@pytest.fixture
def device(plant: Plant) -> Iterator[BacnetBmsDevice]:
    port = free_udp_port()
    narrow = site_map(plant, port, supply_air_c=[18.0, 24.0])  # the device's own envelope
    with BacnetBmsDevice(plant, narrow) as running:
        running.step()
        yield running


@pytest.fixture
def client(device: BacnetBmsDevice, plant: Plant) -> Iterator[BacnetClient]:
    point_map = site_map(plant, device.port)  # TwinLoop's map: the plant's whole envelope
    with BacnetClient(point_map, local_port=free_udp_port(), timeout_s=1.0) as c:
        yield c


def test_writes_are_audited_and_the_hand_back_relinquishes(
    device: BacnetBmsDevice, client: BacnetClient, historian: Historian
) -> None:
    sink = FieldSetpointSink(client, historian, protocol="bacnet")
    sink.write(
        {"supply_air_c": 21.0, "fan_speed_frac": 0.6}, 600.0, issued_at_s=300.0, command_id="c1"
    )
    assert device.control_of("supply_air_c") == device.control_of("fan_speed_frac") == "twinloop"
    assert sink.held == {"supply_air_c", "fan_speed_frac"}
    rows = {a.command_id: a for a in historian.audit()}
    assert rows["c1.supply_air_c"].outcome == "applied"
    assert rows["c1.supply_air_c"].detail == "bacnet: applied"
    assert rows["c1.supply_air_c"].value == 21.0 and rows["c1.supply_air_c"].expires_at_s == 600.0
    # A field the next command leaves out is handed back first.
    sink.write({"supply_air_c": 21.5}, 900.0, issued_at_s=600.0, command_id="c2")
    assert device.control_of("fan_speed_frac") == "site"
    assert sink.held == {"supply_air_c"}
    # A period without a command hands back the rest.
    sink.period_done(900.0, {"supply_air_c": 21.5})
    assert device.control_of("supply_air_c") == "twinloop"
    sink.period_done(1200.0, {})
    assert device.control_of("supply_air_c") == "site" and not sink.held
    back = [a for a in historian.audit() if a.command_id.startswith("handback-")]
    assert {a.field for a in back} == {"supply_air_c", "fan_speed_frac"}
    assert all(a.outcome == "applied" and math.isnan(a.value) for a in back)
    assert all(a.detail.startswith("bacnet: relinquished") for a in back)
    assert [e.kind for e in historian.events()] == ["hand_back", "hand_back"]


def test_a_refusal_raises_naming_the_field_and_the_devices_answer(
    device: BacnetBmsDevice, client: BacnetClient, historian: Historian
) -> None:
    sink = FieldSetpointSink(client, historian, protocol="bacnet")
    with pytest.raises(FieldWriteError, match=r"supply_air_c: bacnet:property/value-out-of-range"):
        sink.write(
            {"supply_air_c": 26.0, "chw_supply_c": 9.0}, 600.0, issued_at_s=300.0, command_id="c1"
        )
    rows = {a.field: a for a in historian.audit()}
    assert rows["supply_air_c"].outcome == "refused"
    assert rows["supply_air_c"].detail == "bacnet: refused bacnet:property/value-out-of-range"
    assert rows["chw_supply_c"].outcome == "applied"
    assert sink.held == {"chw_supply_c"}  # handed back by the controller's next empty period
    assert device.control_of("supply_air_c") == "site"


def test_an_operator_override_is_the_controllers_override_and_never_fought(
    device: BacnetBmsDevice, client: BacnetClient, historian: Historian
) -> None:
    sink = FieldSetpointSink(client, historian, protocol="bacnet")
    ingestor = FieldIngestor(client, historian)
    override = FieldOverride(lambda: ingestor.last_poll, historian)
    ingestor.poll_once()
    assert override() is False
    sink.write({"chw_supply_c": 10.0}, 600.0, issued_at_s=300.0, command_id="c1")
    device.operator_write("chw_supply_c", 8.0, priority=OPERATOR_PRIORITY)
    writes = device.counters()["writes"]
    # Between polls the write itself sees it: withheld, not sent, not an error.
    sink.write({"chw_supply_c": 11.0}, 900.0, issued_at_s=600.0, command_id="c2")
    assert device.counters()["writes"] == writes
    assert sink.withheld_overrides == {"chw_supply_c": f"override at priority {OPERATOR_PRIORITY}"}
    c2 = next(a for a in historian.audit() if a.command_id == "c2.chw_supply_c")
    assert c2.outcome == "refused" and c2.detail.endswith("(not sent)")
    ingestor.poll_once()
    assert override() is True
    texts = [e.message for e in historian.events() if e.kind == "override"]
    assert texts == ["chw_supply_c held by the BMS (priority 8): TwinLoop backs off"]
    device.operator_write("chw_supply_c", None)
    ingestor.poll_once()
    assert override() is False
    assert "chw_supply_c given back by the BMS" in historian.events()[0].message
    # The supervisory enable off is an override of every field.
    device.operator_write("supervisory_enable", 0.0)
    ingestor.poll_once()
    assert override() is True
    assert "supervisory_enable held by the BMS (off)" in historian.events()[0].message


def test_a_dead_device_is_not_taken_for_an_override(plant: Plant, historian: Historian) -> None:
    nobody = site_map(plant, free_udp_port())
    with BacnetClient(nobody, local_port=free_udp_port(), timeout_s=0.3) as client:
        ingestor = FieldIngestor(client, historian)
        override = FieldOverride(lambda: ingestor.last_poll, historian)
        ingestor.poll_once()
        assert override() is False  # the watchdog's: its points go stale
        sink = FieldSetpointSink(client, historian, protocol="bacnet")
        with pytest.raises(FieldWriteError, match="identity_mismatch"):
            sink.write({"supply_air_c": 21.0}, 600.0, issued_at_s=300.0, command_id="c1")

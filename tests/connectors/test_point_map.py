"""The point map: the emulated site's default map, YAML round trip, one-line errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from connectors.catalog import PointCatalog
from connectors.point_map import (
    PointMapError,
    load_point_map,
    parse_point_map,
    reference_point_map,
)

CATALOG = PointCatalog.reference()


def _reference() -> dict[str, Any]:
    pm = reference_point_map(CATALOG, address="127.0.0.1:47901", device_instance=1001)
    data: dict[str, Any] = yaml.safe_load(pm.to_yaml())
    return data


def test_reference_map_covers_the_catalog_and_the_setpoints(tmp_path: Path) -> None:
    pm = reference_point_map(CATALOG, address="127.0.0.1:47901", device_instance=1001)
    sensors = [e for e in pm.points if e.point is not None]
    assert [e.point for e in sensors] == list(CATALOG.points)
    writable = {e.setpoint for e in pm.points if e.writable}
    assert writable == {
        "supply_air_c",
        "fan_speed_frac",
        "chw_supply_c",
        "cw_supply_c",
        "economiser_enable",
    }
    assert pm.entry("setpoint.supply_air_c").limits == (16.0, 27.0)
    assert pm.entry("rack_inlet_c.0.00").limits == (-50.0, 150.0)
    assert pm.entry("chillers_on").limits == (0.0, 3.0)  # the catalog's tighter bound
    assert pm.entry("crah_running.00").bacnet is not None
    assert pm.entry("crah_running.00").bacnet.object == "binary-input"  # type: ignore[union-attr]
    path = tmp_path / "map.yaml"
    path.write_text(pm.to_yaml())
    assert load_point_map(path, CATALOG) == pm


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda d: d["points"][3]["bacnet"].update(instance=5_000_000),
            "points[3].bacnet.instance: Input should be less than or equal to 4194302",
        ),
        (
            lambda d: d["points"][0].update(point="rack_inlet_c.9.99"),
            "points[0].point: 'rack_inlet_c.9.99' is not in the site's catalog",
        ),
        (
            lambda d: d["points"][0].update(unit="kW"),
            "points[0].unit: 'kW', the point's unit is 'degC'",
        ),
        (
            lambda d: d["points"][-5].update(limits=[10.0, 30.0]),
            "points[-5]",
        ),
        (lambda d: d["devices"]["bms"].pop("heartbeat"), "needs 'heartbeat'"),
        (lambda d: d["devices"]["bms"].update(priority=6), "priority 6 is reserved"),
        (lambda d: d["devices"]["bms"].update(address="nohost"), "must be host:port"),
        (lambda d: d["points"][1].update(writable=True), "a sensor point is never writable"),
        (lambda d: d["points"][1].update(colour="red"), "points[1].colour: Extra inputs"),
        (lambda d: d["points"][2].update(device="meter"), "points[2].device: unknown device"),
        (lambda d: d["points"].append(dict(d["points"][0])), "is mapped twice"),
        (lambda d: d["points"][-1].update(setpoint="valve"), "unknown setpoint 'valve'"),
        (lambda d: d["points"][0].update(scale=0.0), "scale 0.0 must be finite and non-zero"),
    ],
)
def test_a_bad_map_stops_with_one_line_naming_the_field(
    tmp_path: Path, edit: Any, message: str
) -> None:
    data = _reference()
    edit(data)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(PointMapError) as info:
        load_point_map(path, CATALOG)
    text = str(info.value)
    assert "\n" not in text and text.startswith(f"point map {path}: ")
    if message.startswith("points[-5]"):  # the index of the fifth entry from the end
        n = len(data["points"]) - 5
        assert f"points[{n}].limits: [10.0, 30.0] wider than the allowed [16, 27]" in text
    else:
        assert message in text


def test_writable_entries_must_be_commandable() -> None:
    data = _reference()
    data["points"][-2]["bacnet"]["object"] = "analog-input"
    with pytest.raises(PointMapError, match=r"points\[\d+\]: Value error|no priority array"):
        parse_point_map(data, CATALOG)


def test_unreadable_files_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(PointMapError, match="cannot read it"):
        load_point_map(tmp_path / "missing.yaml", CATALOG)
    bad = tmp_path / "bad.yaml"
    bad.write_text("site: [unclosed\n")
    with pytest.raises(PointMapError, match=r"bad.yaml: line \d+"):
        load_point_map(bad, CATALOG)
    bad.write_text("- a list\n")
    with pytest.raises(PointMapError, match="must be a mapping"):
        load_point_map(bad, CATALOG)


def test_modbus_entries() -> None:
    data = _reference()
    data["devices"]["meter"] = {
        "protocol": "modbus",
        "address": "127.0.0.1:5020",
        "unit_id": 1,
    }
    data["points"][-6] = {  # the last sensor point, now from the meter
        **{k: data["points"][-6][k] for k in ("point", "unit")},
        "device": "meter",
        "modbus": {"address": 3000, "function": 4, "type": "float32", "word_order": "little"},
        "scale": 0.1,
    }
    pm = parse_point_map(data, CATALOG)
    entry = pm.points[-6]
    assert entry.modbus is not None and entry.modbus.words == 2 and entry.scale == 0.1
    data["points"][-6]["modbus"]["address"] = 65535
    with pytest.raises(PointMapError, match="runs past register 65535"):
        parse_point_map(data, CATALOG)
    data["points"][-6]["modbus"] = {"address": 1, "function": 4}
    data["points"][-6]["bacnet"] = {"object": "analog-input", "instance": 1}
    with pytest.raises(PointMapError, match="exactly one of 'bacnet' and 'modbus'"):
        parse_point_map(data, CATALOG)


def test_modbus_writes_are_float32_holding_registers_with_a_heartbeat() -> None:
    data = _reference()
    data["devices"]["plant"] = {
        "protocol": "modbus",
        "address": "127.0.0.1:5020",
        "unit_id": 1,
        "heartbeat": {"address": 900, "function": 3},
        "supervisory_enable": {"address": 901, "function": 4},
    }
    data["points"][-3] = {  # chw_supply_c, now on the plant controller
        "setpoint": "chw_supply_c",
        "device": "plant",
        "modbus": {"address": 100, "function": 3, "type": "float32"},
        "unit": "degC",
        "writable": True,
    }
    parse_point_map(data, CATALOG)
    data["points"][-3]["modbus"]["type"] = "int16"
    with pytest.raises(PointMapError, match="must be a float32"):
        parse_point_map(data, CATALOG)
    data["points"][-3]["modbus"]["type"] = "float32"
    data["devices"]["plant"]["heartbeat"]["function"] = 4
    with pytest.raises(PointMapError, match=r"devices\.plant: .*heartbeat must be a holding"):
        parse_point_map(data, CATALOG)

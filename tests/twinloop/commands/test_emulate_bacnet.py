"""``twinloop emulate --protocol bacnet`` as a user runs it, with TwinLoop's BACnet client
reading and writing the device it serves."""

from __future__ import annotations

import json
import signal
import socket
from pathlib import Path

import pytest

from connectors.bacnet_client import BacnetClient
from connectors.catalog import PointCatalog
from connectors.point_map import load_point_map
from physics.plant.scenario import load_scenario
from physics.plant.simulation import build_plant
from tests.twinloop.cli_process import one_error_line, start_emulator
from twinloop.cli import main


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.integration
def test_emulate_serves_the_plant_over_bacnet(tmp_path: Path) -> None:
    port = free_udp_port()
    map_file = tmp_path / "map.yaml"
    args = ["--protocol", "bacnet", "--scenario", "chiller-trip", "--bind", f"127.0.0.1:{port}"]
    proc = start_emulator(
        [*args, "--speed", "600", "--write-point-map", str(map_file)],
        "BACnet device 1001",
        tmp_path,
    )
    try:
        plant = build_plant(load_scenario("chiller-trip"))
        point_map = load_point_map(map_file, PointCatalog.for_site(plant.config))
        with BacnetClient(point_map, local_port=free_udp_port(), timeout_s=2.0) as client:
            result = client.poll()
            assert result.device_ok and result.errors == {}
            assert len(result.readings) == len(plant.point_names) + 5
            assert client.write({"supply_air_c": 21.0})["supply_air_c"].status == "applied"
            assert client.relinquish(["supply_air_c"])["supply_air_c"].status == "relinquished"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        counts = json.loads(out.strip().splitlines()[-1])
        assert counts["writes"] == 1 and counts["relinquishes"] == 1 and counts["steps"] > 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_emulate_bacnet_errors_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def error(*argv: str) -> str:
        assert main(["emulate", "--protocol", "bacnet", "--scenario", "chiller-trip", *argv]) == 2
        return one_error_line(capsys.readouterr().err)

    assert "--bind must be HOST:PORT" in error("--bind", "nohost")
    assert "--priority must be 1-16 but not 6" in error("--priority", "6")
    bad = tmp_path / "bad.yaml"
    bad.write_text("site: x\ndevices: {}\npoints: []\n")
    assert f"point map {bad}: devices:" in error("--point-map", str(bad))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        assert f"BACnet address 127.0.0.1:{port}" in error("--bind", f"127.0.0.1:{port}")

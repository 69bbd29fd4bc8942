"""``twinloop bacnet discover`` as a user runs it against a real bacpypes3 device on
loopback: the objects listed, a point map drafted that ``serve`` can load; bad flags and
an empty address are one error line."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from connectors.bacnet_device import BacnetBmsDevice
from connectors.catalog import PointCatalog
from connectors.point_map import load_point_map, reference_point_map
from physics.plant.scenario import load_scenario
from physics.plant.simulation import build_plant
from tests.twinloop.cli_process import one_error_line
from twinloop.cli import main


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.integration
def test_discover_lists_a_device_and_drafts_its_map(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plant = build_plant(load_scenario("tropical-typical-week"))  # the reference site
    catalog = PointCatalog.for_site(plant.config)
    port = free_udp_port()
    served = reference_point_map(catalog, address=f"127.0.0.1:{port}", device_instance=4321)
    out_file = tmp_path / "draft.yaml"
    with BacnetBmsDevice(plant, served):
        status = main(
            [
                "bacnet",
                "discover",
                "--address",
                f"127.0.0.1:{port}",
                "--local",
                f"127.0.0.1:{free_udp_port()}",
                "--write-point-map",
                str(out_file),
            ]
        )
    assert status == 0
    out = capsys.readouterr().out
    assert f"device 4321 at 127.0.0.1:{port}" in out
    assert "analog-input,0  rack_inlet_c.0.00  [degrees-celsius]" in out
    assert f"draft map: {len(served.points)} points (5 writable setpoints), 0 objects" in out
    draft = load_point_map(out_file, catalog)
    assert draft.devices["bms"].device_instance == 4321
    assert [e.name for e in draft.points] == [e.name for e in served.points]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--address", "127.0.0.1:notaport"], "--address must be HOST:PORT"),
        (["--address", "127.0.0.1:47999", "--local", "47808"], "--local must be HOST:PORT"),
        (["--address", "127.0.0.1:47999", "--timeout", "0"], "--timeout must be"),
        (["--address", "127.0.0.1:47999", "--device-instance", "-1"], "--device-instance"),
        (["--address", "127.0.0.1:47999", "--site-variant", "moon"], "unknown --site-variant"),
    ],
)
def test_bad_flags_are_one_error_line(
    flags: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bacnet", "discover", *flags]) == 2
    assert message in one_error_line(capsys.readouterr().err)


@pytest.mark.integration
def test_nobody_at_the_address_is_one_error_line(capsys: pytest.CaptureFixture[str]) -> None:
    port = free_udp_port()
    local = f"127.0.0.1:{free_udp_port()}"
    flags = ["--address", f"127.0.0.1:{port}", "--local", local, "--timeout", "0.5"]
    assert main(["bacnet", "discover", *flags]) == 2
    assert f"127.0.0.1:{port}: no answer" in one_error_line(capsys.readouterr().err)

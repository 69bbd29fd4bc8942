"""``twinloop serve`` with ``protocol: bacnet`` in the site file: its validation (one error
line), and the service as a real process against a real bacpypes3 device on loopback: it
takes TwinLoop's slot, hands it back when stopped, and when killed the device's heartbeat
timeout releases it."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from connectors.bacnet_device import BacnetBmsDevice
from connectors.catalog import PointCatalog
from connectors.point_map import reference_point_map
from control.reservoir import Reservoir
from physics.plant.scenario import load_scenario
from physics.plant.simulation import build_plant
from physics.plant.site import site_variant
from tests.twinloop.cli_process import (
    check_serve_hands_back_and_is_released_when_killed,
    live_rule_reservoir,
    one_error_line,
)
from twinloop.cli import main

SPEED = 100.0
"""Plant seconds per wall second: a 300 s period is 3 s, the 900 s heartbeat timeout 9 s."""


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _site_file(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "site.yaml"
    path.write_text(body, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "site: a\nprotocol: bacnet\nhistorian: h.sqlite\nreservoir: r\n",
            "bacnet: Field required",
        ),
        (
            "site: a\nprotocol: bacnet\nbacnet: {point_map: m.yaml}\nclock: plant\n"
            "historian: h.sqlite\nreservoir: r\n",
            "with clock plant needs 'scenario'",
        ),
        (
            "site: a\nprotocol: bacnet\nbacnet: {point_map: m.yaml, local: '47808'}\n"
            "historian: h.sqlite\nreservoir: r\n",
            "bacnet: local: '47808' is not host:port",
        ),
        (
            "site: a\nprotocol: bacnet\nbacnet: {point_map: m.yaml, reads: sometimes}\n"
            "historian: h.sqlite\nreservoir: r\n",
            "bacnet.reads: Input should be 'cov', 'poll' or 'auto'",
        ),
        (
            "site: a\nprotocol: bacnet\nbacnet: {point_map: m.yaml, cov_lifetime_s: 5}\n"
            "historian: h.sqlite\nreservoir: r\n",
            "bacnet.cov_lifetime_s: Input should be greater than or equal to 60",
        ),
        ("site: a\nprotocol: knx\nhistorian: h.sqlite\nreservoir: r\n", "protocol: Input should"),
    ],
)
def test_a_bad_bacnet_site_file_is_one_error_line(
    tmp_path: Path, body: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    site = _site_file(tmp_path, body)
    assert main(["serve", "--site", str(site)]) == 2
    assert message in one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "h.sqlite").exists()


def test_a_bad_point_map_is_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    Reservoir(tmp_path / "reservoir").close()
    (tmp_path / "map.yaml").write_text("site: a\ndevices: {}\npoints: []\n", encoding="utf-8")
    site = _site_file(
        tmp_path,
        "site: a\nprotocol: bacnet\nbacnet: {point_map: map.yaml}\n"
        "historian: h.sqlite\nreservoir: reservoir\n",
    )
    assert main(["serve", "--site", str(site)]) == 2
    assert "point map" in one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "h.sqlite").exists()  # nothing opened before the error


def test_a_cov_lifetime_under_two_polls_is_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    Reservoir(tmp_path / "reservoir").close()
    catalog = PointCatalog.for_site(site_variant("reference"))
    point_map = reference_point_map(catalog, address="127.0.0.1:47901", device_instance=1001)
    (tmp_path / "map.yaml").write_text(point_map.to_yaml(), encoding="utf-8")
    site = _site_file(
        tmp_path,
        "site: hall-a\nprotocol: bacnet\nbacnet: {point_map: map.yaml, cov_lifetime_s: 100}\n"
        "sensor_step_s: 60\nhistorian: h.sqlite\nreservoir: reservoir\n",
    )
    assert main(["serve", "--site", str(site)]) == 2
    assert "cov_lifetime_s 100 s is under two poll intervals" in one_error_line(
        capsys.readouterr().err
    )


@pytest.fixture
def served_site(tmp_path: Path) -> Iterator[tuple[BacnetBmsDevice, Path]]:
    """A paced BACnet device of the emulated site, its map, a reservoir with a live rule
    policy and the site file of ``serve``."""
    live_rule_reservoir(tmp_path / "reservoir")
    plant = build_plant(replace(load_scenario("tropical-typical-week"), duration_h=12.0))
    point_map = reference_point_map(
        PointCatalog.for_site(plant.config),
        address=f"127.0.0.1:{free_udp_port()}",
        device_instance=1001,
    )
    (tmp_path / "map.yaml").write_text(point_map.to_yaml(), encoding="utf-8")
    site = _site_file(
        tmp_path,
        "site: hall-a\n"
        "protocol: bacnet\n"
        f"bacnet: {{point_map: map.yaml, local: '127.0.0.1:{free_udp_port()}', timeout_s: 1.0}}\n"
        "historian: historian.sqlite\n"
        "reservoir: reservoir\n"
        "control_period_s: 300\n"
        "sensor_step_s: 60\n"
        f"time_scale: {SPEED}\n",
    )
    with BacnetBmsDevice(plant, point_map, speed=SPEED, heartbeat_timeout_s=900.0) as device:
        yield device, site


@pytest.mark.integration
@pytest.mark.slow
def test_serve_over_bacnet_hands_back_when_stopped_and_is_released_when_killed(
    served_site: tuple[BacnetBmsDevice, Path],
) -> None:
    device, site = served_site
    check_serve_hands_back_and_is_released_when_killed(device, site, "bacnet")
    assert device.counters()["cov_notifications"] > 0  # reads: auto took the device's COV

"""``twinloop broker`` (run a secured Mosquitto), ``twinloop emulate`` (serve a scenario's
plant over MQTT as a BMS, with ``--protocol bacnet`` as a BACnet/IP device, ``modbus`` as a
Modbus TCP device, or ``mixed`` as both at once) and ``twinloop ingest`` (MQTT →
historian)."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Protocol

from twinloop.commands.arguments import CommandError, Subparsers

if TYPE_CHECKING:
    from collections.abc import Callable

    from connectors.broker import BrokerAddress
    from connectors.catalog import PointCatalog
    from connectors.device_clock import PlantCalendar
    from connectors.point_map import PointMap
    from connectors.topics import Topics
    from physics.plant.plant import Plant
    from physics.plant.scenario import Scenario

MAX_WORKERS = 64
"""The most ingestion processes ``twinloop ingest --workers`` starts."""


class _StopFlag:
    """Set by SIGINT/SIGTERM, so a foreground service stops cleanly."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self._previous = {
            sig: signal.signal(sig, self._handle) for sig in (signal.SIGINT, signal.SIGTERM)
        }

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.event.set()

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _address(args: argparse.Namespace, identity: str) -> BrokerAddress:
    """The broker and identity the flags name (``--credentials``, else ``--host`` …)."""
    from connectors.broker import BrokerAddress, BrokerError

    try:
        if args.credentials:
            return BrokerAddress.from_credentials(
                args.credentials, args.identity or identity, tls=args.tls
            )
        return BrokerAddress(
            host=args.host,
            port=args.port,
            username=args.username,
            password=_password(args.password_file),
            ca_file=Path(args.ca_file) if args.ca_file else None,
        )
    except (BrokerError, ValueError) as exc:  # the address's own checks of the flags
        raise CommandError(str(exc)) from exc


def _password(path: str | None) -> str | None:
    """The password in ``--password-file``, if one is named."""
    if not path:
        return None
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise CommandError(f"--password-file {path}: cannot read ({exc.strerror})") from None


def _topics(args: argparse.Namespace) -> Topics:
    """The site's topics; a site name or prefix they refuse is a bad flag."""
    from connectors.topics import Topics

    try:
        return Topics(args.site, prefix=args.prefix)
    except ValueError as exc:
        raise CommandError(str(exc)) from exc


# --------------------------------------------------------------------------- broker
def _cmd_broker(args: argparse.Namespace) -> int:
    from connectors.broker import BrokerError, MosquittoBroker

    folder = Path(args.dir)
    args.site = args.site or ["site1"]
    if folder.exists() and not folder.is_dir():
        raise CommandError(f"broker --dir {folder} exists and is not a folder")
    try:
        broker = MosquittoBroker(
            folder,
            port=args.port,
            tls_port=args.tls_port,
            host=args.host,
            plain_host=args.plain_host,
            sites=args.site,
        )
    except BrokerError as exc:
        raise CommandError(str(exc).splitlines()[0]) from exc
    except OSError as exc:  # the folder cannot be made or written
        raise CommandError(f"broker --dir {folder}: {exc}") from exc
    stop = _StopFlag()
    try:
        broker.start()
    except BrokerError as exc:  # e.g. a port taken: Mosquitto's log says so
        stop.restore()
        raise CommandError(str(exc).splitlines()[0]) from exc
    try:
        print(f"mosquitto running: mqtt://{broker.plain_host}:{broker.port}", flush=True)
        print(
            f"TLS listener: mqtts://{broker.host}:{broker.tls_port} "
            f"(CA {broker.tls_files.ca_file})",
            flush=True,
        )
        print(
            f"credentials: {broker.credentials_file} (identities: {', '.join(broker.users)})",
            flush=True,
        )
        print(f"sites: {', '.join(broker.sites or ('any',))} (ACLs name only these)", flush=True)
        print("press Ctrl-C to stop", flush=True)
        while not stop.event.wait(0.5):
            if not broker.running:
                tail = broker.log_tail(5).replace("\n", " | ")
                print(f"twinloop: error: mosquitto exited unexpectedly: {tail}", file=sys.stderr)
                return 1
    finally:
        broker.stop()
        stop.restore()
    print("mosquitto stopped", flush=True)
    return 0


# --------------------------------------------------------------------------- emulate
def _cmd_emulate(args: argparse.Namespace) -> int:
    from connectors.bms_emulator import BmsEmulator
    from connectors.broker import BrokerError
    from physics.plant.scenario import load_scenario
    from physics.plant.simulation import build_plant

    if not args.speed > 0:
        raise CommandError(f"emulate --speed must be positive, got {args.speed}")
    if args.protocol == "bacnet":
        return _emulate_bacnet(args)
    if args.protocol == "modbus":
        return _emulate_modbus(args)
    if args.protocol == "mixed":
        return _emulate_mixed(args)
    topics = _topics(args)
    address = _address(args, "bms")
    scenario = load_scenario(args.scenario)
    plant = build_plant(scenario)
    emulator = BmsEmulator(plant, address, topics, speed=args.speed)
    stop = _StopFlag()
    try:
        emulator.start(wait_s=args.connect_timeout)
        print(
            f"BMS emulator: {scenario.name} on {address} as site {topics.site!r} "
            f"({len(plant.point_names)} points every {plant.step_s:g} s of plant time, "
            f"speed x{args.speed:g}); Ctrl-C stops",
            flush=True,
        )
        while not stop.event.wait(1.0) and not plant.done:
            pass
    except BrokerError as exc:  # the broker cannot be reached
        raise CommandError(str(exc)) from exc
    finally:
        emulator.stop()
        stop.restore()
    print(json.dumps(emulator.counters()), flush=True)
    return 0


def _bind_address(
    args: argparse.Namespace, default_port: int, flag: str = "bind"
) -> tuple[str, int]:
    bind = getattr(args, flag.replace("-", "_")) or f"127.0.0.1:{default_port}"
    host, sep, port = bind.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise CommandError(f"emulate --{flag} must be HOST:PORT, got {bind!r}")
    return host, int(port)


def _plant_and_point_map(
    args: argparse.Namespace, default_map: Callable[[PointCatalog], PointMap]
) -> tuple[Scenario, Plant, PointMap]:
    """The scenario's plant and its point map: ``--point-map``'s file, else ``default_map`` of
    the plant's point catalog; written to ``--write-point-map`` when asked."""
    from connectors.catalog import PointCatalog
    from connectors.point_map import load_point_map
    from physics.plant.scenario import load_scenario
    from physics.plant.simulation import build_plant

    scenario = load_scenario(args.scenario)
    plant = build_plant(scenario)
    catalog = PointCatalog.for_site(plant.config)
    if args.point_map:
        point_map = load_point_map(Path(args.point_map), catalog)
    else:
        point_map = default_map(catalog)
    if args.write_point_map:
        Path(args.write_point_map).write_text(point_map.to_yaml())
    return scenario, plant, point_map


def _emulate_mixed(args: argparse.Namespace) -> int:
    """The scenario's plant as a mixed site (docs/bacnet.md): a BACnet/IP BMS on ``--bind``
    and the meters' and chiller plant's Modbus TCP device on ``--modbus-bind``, one plant."""
    from connectors.bacnet_device import BacnetDeviceError
    from connectors.mixed_emulator import MixedEmulatorError, MixedPlantEmulator, mixed_point_map
    from connectors.modbus_device import ModbusDeviceError

    host, port = _bind_address(args, 47808)
    modbus_host, modbus_port = _bind_address(args, 5020, "modbus-bind")
    _check_bacnet_device_args(args)
    if not 0 <= args.unit_id <= 247:
        raise CommandError(f"--unit-id must be 0-247, got {args.unit_id}")
    scenario, plant, point_map = _plant_and_point_map(
        args,
        lambda catalog: mixed_point_map(
            catalog,
            bacnet_address=f"{host}:{port}",
            modbus_address=f"{modbus_host}:{modbus_port}",
            device_instance=args.device_instance,
            unit_id=args.unit_id,
            site=args.site,
            priority=args.priority,
        ),
    )
    try:
        emulator = MixedPlantEmulator(
            plant,
            point_map,
            speed=args.speed,
            heartbeat_timeout_s=args.heartbeat_timeout,
            epoch_s=scenario.start_h * 3600.0,
            calendar=plant_calendar(scenario),
        )
        emulator.start()
    except (MixedEmulatorError, ModbusDeviceError, BacnetDeviceError) as exc:
        raise CommandError(str(exc)) from exc
    bms, meters = emulator.bacnet, emulator.modbus
    return _run_device(
        emulator,
        plant,
        f"Mixed site: {scenario.name}: BACnet device {bms.device_instance} on {bms.host}:"
        f"{bms.port} ({len(point_map.for_device('bms'))} objects, TwinLoop at priority "
        f"{bms.twinloop_priority}) and Modbus device {meters.unit_id} on {meters.host}:"
        f"{meters.port} ({len(point_map.for_device('plant'))} registers' points), heartbeat "
        f"timeout {args.heartbeat_timeout:g} s of plant time, speed x{args.speed:g}; "
        "Ctrl-C stops",
    )


def _emulate_modbus(args: argparse.Namespace) -> int:
    """The scenario's whole plant behind one Modbus TCP device on ``--bind``
    (docs/bacnet.md): every point in input registers, the setpoints in holding registers."""
    from connectors.modbus_device import ModbusDeviceError, ModbusPlantDevice, site_map

    host, port = _bind_address(args, 5020)
    if not (args.heartbeat_timeout > 0 and 0 <= args.unit_id <= 247):
        raise CommandError("--heartbeat-timeout must be positive, --unit-id 0-247")
    try:
        scenario, plant, point_map = _plant_and_point_map(
            args,
            lambda catalog: site_map(
                catalog, address=f"{host}:{port}", unit_id=args.unit_id, site=args.site
            ),
        )
        device = ModbusPlantDevice(
            plant,
            point_map,
            host=host,
            port=port,
            speed=args.speed,
            heartbeat_timeout_s=args.heartbeat_timeout,
        )
        device.start()
    except ModbusDeviceError as exc:
        raise CommandError(str(exc)) from exc
    return _run_device(
        device,
        plant,
        f"Modbus device {device.unit_id}: {scenario.name} on {host}:{port} "
        f"({len(point_map.points)} registers' points, heartbeat timeout "
        f"{args.heartbeat_timeout:g} s of plant time, speed x{args.speed:g}); Ctrl-C stops",
    )


class _FieldDevice(Protocol):
    def stop(self) -> None: ...
    def counters(self) -> dict[str, int]: ...


def _run_device(device: _FieldDevice, plant: Plant, banner: str) -> int:
    """Serve a started emulated device until Ctrl-C or the scenario's end; its counters."""
    stop = _StopFlag()
    try:
        print(banner, flush=True)
        while not stop.event.wait(1.0) and not plant.done:
            pass
    finally:
        device.stop()
        stop.restore()
    print(json.dumps(device.counters()), flush=True)
    return 0


def plant_calendar(scenario: Scenario) -> PlantCalendar | None:
    """The calendar of ``scenario``'s weather year (None for weather without a date)."""
    from connectors.device_clock import PlantCalendar

    start = scenario.weather().start
    return None if start is None else PlantCalendar(int(start.year))


def _emulate_bacnet(args: argparse.Namespace) -> int:
    """The scenario's plant as a BACnet/IP device on ``--bind`` (docs/bacnet.md)."""
    from connectors.bacnet_device import BacnetBmsDevice
    from connectors.point_map import reference_point_map

    host, port_number = _bind_address(args, 47808)
    port = str(port_number)
    _check_bacnet_device_args(args)
    scenario, plant, point_map = _plant_and_point_map(
        args,
        lambda catalog: reference_point_map(
            catalog,
            address=f"{host}:{port}",
            device_instance=args.device_instance,
            site=args.site,
            priority=args.priority,
        ),
    )
    device = BacnetBmsDevice(
        plant,
        point_map,
        host=host,
        port=int(port),
        speed=args.speed,
        heartbeat_timeout_s=args.heartbeat_timeout,
        # Its clock is the plant's, on the weather year's calendar (serve's clock: plant).
        epoch_s=scenario.start_h * 3600.0,
        calendar=plant_calendar(scenario),
    )
    try:
        device.start()
    except BaseException:
        device.stop()  # the loop thread it started
        raise
    return _run_device(
        device,
        plant,
        f"BACnet device {device.device_instance}: {scenario.name} on {host}:{port} "
        f"({len(point_map.points)} objects, TwinLoop at priority {device.twinloop_priority}, "
        f"heartbeat timeout {args.heartbeat_timeout:g} s of plant time, "
        f"speed x{args.speed:g}); Ctrl-C stops",
    )


# --------------------------------------------------------------------------- ingest
def _cmd_ingest(args: argparse.Namespace) -> int:
    from connectors.broker import BrokerError
    from connectors.historian import HistorianStore, open_historian
    from connectors.ingest_pool import IngestPool
    from connectors.ingestion import MqttIngestor
    from physics.plant.sensors import point_catalog
    from physics.plant.site import site_variant

    if not 1 <= args.workers <= MAX_WORKERS:
        raise CommandError(f"--workers must be between 1 and {MAX_WORKERS}, got {args.workers}")
    topics = _topics(args)
    address = _address(args, "ingest")
    historian: HistorianStore = open_historian(args.historian)
    ingestor: MqttIngestor | IngestPool
    if args.workers == 1:
        ingestor = MqttIngestor(address, topics, historian)
    else:
        # Opened above for its schema and a clear error; each worker opens its own.
        historian.close()
        points = [p.name for p in point_catalog(site_variant("reference"))]
        addresses = _pool_addresses(args, address)
        try:
            ingestor = IngestPool(addresses, topics, args.historian, points, workers=args.workers)
        except ValueError as exc:  # the pool's check of the worker count
            raise CommandError(f"--workers: {exc}") from exc
    stop = _StopFlag()
    try:
        if isinstance(ingestor, IngestPool):
            ingestor.start(wait_s=max(args.connect_timeout, 30.0))
        else:
            ingestor.start(wait_s=args.connect_timeout)
        print(
            f"ingesting {topics.sensors_filter} from {address} into {args.historian} "
            f"({args.workers} process{'es' if args.workers > 1 else ''})",
            flush=True,
        )
        last = time.monotonic()
        while not stop.event.wait(0.5):
            if time.monotonic() - last >= args.report_every:
                last = time.monotonic()
                print(json.dumps(ingestor.stats()), flush=True)
    except BrokerError as exc:  # the broker cannot be reached
        raise CommandError(str(exc)) from exc
    finally:
        ingestor.stop()
        historian.close()
        stop.restore()
    print(json.dumps(ingestor.stats()), flush=True)
    return 0


def _pool_addresses(args: argparse.Namespace, address: BrokerAddress) -> list[BrokerAddress]:
    """One identity per worker: ``ingest.0`` … from ``--credentials`` (the broker binds client
    ids to user names), else ``address`` for every worker (a broker that does not)."""
    from connectors.broker import POOL_IDENTITIES, BrokerAddress, BrokerError

    if not args.credentials or args.identity:
        return [address] * args.workers
    if args.workers > len(POOL_IDENTITIES):
        raise CommandError(
            f"--workers {args.workers}: the broker's credentials have "
            f"{len(POOL_IDENTITIES)} ingestion worker identities"
        )
    try:
        return [
            BrokerAddress.from_credentials(args.credentials, name, tls=args.tls)
            for name in POOL_IDENTITIES[: args.workers]
        ]
    except BrokerError as exc:  # the credentials lack a worker's identity
        raise CommandError(str(exc)) from exc


# --------------------------------------------------------------------------- parser
def _add_address_flags(p: argparse.ArgumentParser, identity: str) -> None:
    g = p.add_argument_group("broker")
    g.add_argument("--credentials", help="credentials.json written by `twinloop broker`")
    g.add_argument("--identity", default=None, help=f"identity in --credentials ({identity})")
    g.add_argument("--tls", action="store_true", help="use the TLS listener from --credentials")
    g.add_argument("--host", default="127.0.0.1", help="your broker's host (no --credentials)")
    g.add_argument("--port", type=int, default=1883, help="your broker's port")
    g.add_argument("--username", default=None)
    g.add_argument("--password-file", default=None, help="file holding the password")
    g.add_argument("--ca-file", default=None, help="CA certificate for a TLS broker")
    g.add_argument("--connect-timeout", type=float, default=10.0, help="seconds (default 10)")


def add_commands(sub: Subparsers) -> None:
    """Register ``broker``, ``emulate`` and ``ingest``."""
    br = sub.add_parser(
        "broker", help="run a secured Mosquitto broker in the foreground (Ctrl-C stops)"
    )
    br.add_argument("--dir", required=True, help="folder for config, credentials, TLS, data")
    br.add_argument("--port", type=int, default=0, help="plain listener (default: free port)")
    br.add_argument("--tls-port", type=int, default=0, help="TLS listener (default: free port)")
    br.add_argument("--host", default="127.0.0.1", help="TLS listener's address (default loopback)")
    br.add_argument(
        "--plain-host",
        default="127.0.0.1",
        help="plaintext listener's address (default loopback, whatever --host is)",
    )
    br.add_argument(
        "--site",
        action="append",
        default=None,
        help="a site whose topics the identities may use (repeatable; default site1)",
    )
    br.set_defaults(func=_cmd_broker)

    em = sub.add_parser(
        "emulate", help="serve a scenario's plant as a site's BMS (MQTT, BACnet/IP, Modbus TCP)"
    )
    em.add_argument("--scenario", required=True, help="scenario YAML file or shipped name")
    em.add_argument("--site", default="site1", help="site name in the topics (default site1)")
    em.add_argument("--prefix", default="twinloop", help="topic prefix (default twinloop)")
    em.add_argument(
        "--speed", type=float, default=60.0, help="plant seconds per wall second (default 60)"
    )
    em.add_argument(
        "--protocol",
        choices=("mqtt", "bacnet", "modbus", "mixed"),
        default="mqtt",
        help="mqtt: a BMS gateway on the broker (default); bacnet: a BACnet/IP device; "
        "modbus: one Modbus TCP device with every point; mixed: a BACnet/IP BMS and the "
        "meters' and chiller plant's Modbus TCP device, one plant",
    )
    _add_address_flags(em, "bms")
    bac = em.add_argument_group(
        "BACnet and Modbus (--protocol bacnet|modbus|mixed; docs/bacnet.md)"
    )
    bac.add_argument(
        "--bind",
        default=None,
        help="the device's HOST:PORT (default 127.0.0.1:47808 for BACnet, 127.0.0.1:5020 "
        "for Modbus; mixed: the BACnet device's)",
    )
    bac.add_argument(
        "--modbus-bind",
        default=None,
        help="mixed: the Modbus device's HOST:PORT (default 127.0.0.1:5020)",
    )
    bac.add_argument("--unit-id", type=int, default=1, help="Modbus unit id (default 1)")
    bac.add_argument("--device-instance", type=int, default=1001, help="default 1001")
    bac.add_argument("--priority", type=int, default=10, help="TwinLoop's slot (default 10)")
    bac.add_argument(
        "--heartbeat-timeout",
        type=float,
        default=900.0,
        help="plant seconds without a new heartbeat before TwinLoop's slot is released",
    )
    bac.add_argument("--point-map", default=None, help="serve this point map (YAML)")
    bac.add_argument(
        "--write-point-map", default=None, help="write the map served (for TwinLoop's side)"
    )
    em.set_defaults(func=_cmd_emulate)

    ing = sub.add_parser("ingest", help="store a site's sensor readings in a historian")
    ing.add_argument(
        "--historian", required=True, help="historian: SQLite file or postgresql:// URL"
    )
    ing.add_argument("--site", default="site1", help="site name in the topics (default site1)")
    ing.add_argument("--prefix", default="twinloop", help="topic prefix (default twinloop)")
    ing.add_argument("--report-every", type=float, default=10.0, help="seconds between stats")
    ing.add_argument(
        "--workers",
        type=int,
        default=1,
        help="ingestion processes, each subscribed to its share of the site's points "
        "(default 1; more for high message rates)",
    )
    _add_address_flags(ing, "ingest")
    ing.set_defaults(func=_cmd_ingest)


def _check_bacnet_device_args(args: argparse.Namespace) -> None:
    """The emulated BACnet device's heartbeat timeout, instance and TwinLoop's priority."""
    if not (args.heartbeat_timeout > 0 and 0 <= args.device_instance <= 4_194_302):
        raise CommandError("--heartbeat-timeout must be positive, --device-instance 0-4194302")
    if not 1 <= args.priority <= 16 or args.priority == 6:
        raise CommandError(
            f"--priority must be 1-16 but not 6 (minimum on/off), got {args.priority}"
        )

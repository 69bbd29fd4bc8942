"""The live control service behind ``twinloop serve --site CONFIG``.

A site file (YAML, validated with pydantic; unknown keys refused) names the site, the MQTT
broker and the identities to use there, the historian, the reservoir, the control period,
the shield and watchdog limits, and how to tell time::

    site: hall-a                  # MQTT topics twinloop/hall-a/...
    site_variant: reference       # the site's design (physics.plant.site.SITE_VARIANTS)
    broker:
      host: 127.0.0.1
      port: 1883
      credentials: broker/credentials.json   # or username/password per identity below
      ingest: {username: serve-ingest, password: ...}
      controller: {username: controller, password: ...}
      override: {username: override, password: ...}   # optional, else the controller's
    historian: runs/historian.sqlite
    reservoir: runs/reservoir
    control_period_s: 300
    clock: unix                   # unix: wall clock; plant: the data's own clock (emulators)
    time_scale: 1.0               # plant seconds per wall second (an emulator running fast)
    scenario: null                # optional: weather forecasts (and MPC) from a scenario
    twin: null                    # optional: a saved twin folder, or "drawings"
    shield: {supply_air_step_k: 0.5, ...}
    watchdog: {stale_after_s: 180, ...}
    alarms: {inlet_high_c: 27, period_s: 10, ...}   # control.alarms.AlarmConfig

The site's field protocol is ``protocol``: ``mqtt`` (the default, the ``broker`` section
above), ``bacnet``, TwinLoop talking BACnet/IP to the BMS itself, or ``modbus``, to a Modbus
TCP gateway of the BMS (docs/bacnet.md)::

    protocol: bacnet
    bacnet:
      point_map: bms-map.yaml     # the allow-list and every point (relative to this file)
      device: bms                 # the map's BACnet device
      local: 0.0.0.0:47808        # TwinLoop's own BACnet/IP address
      timeout_s: 3.0              # per request
      reads: auto                 # sensors by COV where the device offers it, else polled
      cov_lifetime_s: 300         # each subscription's lifetime, renewed at half of it
      cov_confirmed: false        # ask for confirmed notifications
    clock: unix                   # or plant: an emulated site's clock, read from the device

Over BACnet with ``clock: plant`` (an emulated site: ``twinloop emulate --protocol bacnet``,
``twinloop demo --protocol bacnet``) each poll's readings are stamped with the device's own
``local-date``/``local-time``, the plant's time on the calendar of ``scenario``'s weather
year, checked first (:class:`~connectors.device_clock.DeviceClockGuard`: monotonic, within
the scenario's span, not ahead of the plant's pace; a refused clock is a poll without an
answer). Modbus carries no clock: ``clock: unix`` only.

    protocol: modbus
    modbus:
      point_map: gateway-map.yaml # the map's Modbus device: address, unit id, registers
      device: plant
      timeout_s: 3.0

A mixed site, a BACnet BMS beside Modbus TCP meters, UPS and chiller plant controller, is
``protocol: mixed``: every device of one point map, each over its own protocol
(:class:`~connectors.multi_link.MultiLink`; docs/bacnet.md)::

    protocol: mixed
    mixed:
      point_map: site-map.yaml    # the devices (bacnet and modbus, several of each) and points
      local: 0.0.0.0:47808        # TwinLoop's BACnet/IP address for the map's first BACnet
                                  # device; the n-th one is reached from the port n-1 above
      timeout_s: 3.0              # per request, every device
      reads: auto                 # the BACnet devices' sensors (cov_* as under bacnet)
      clock_device: bms           # clock: plant only: the BACnet device whose clock is read
    clock: unix                   # or plant, with clock_device and scenario

A device that stops answering makes only its own points stale (the watchdog then trips if
they matter, and hands back); a setpoint is written to, and handed back at, the device that
owns it in the map, each with its own heartbeat. With ``clock: plant`` the readings of every
device are stamped with ``clock_device``'s ``local-date``/``local-time``: a BACnet device (a
Modbus device carries no clock), so that device's loss stops the whole site's clock.

Over BACnet or Modbus every point is read each ``sensor_step_s`` (scaled by ``time_scale``) into
the controller's snapshot and the historian (:class:`~connectors.field_ingestion.FieldIngestor`;
a device that stops answering makes every point stale; over BACnet the sensors by COV
subscription where the device takes it, :mod:`connectors.bacnet_cov`), commands are written in
TwinLoop's priority slot with the device's heartbeat, and every period without a command
relinquishes the slot (:class:`~connectors.field_sink.FieldSetpointSink`); an operator
holding a setpoint above TwinLoop's priority, or the supervisory enable off (Modbus has
no priorities: only the enable), is the override (:class:`~connectors.field_sink.FieldOverride`).

:class:`LiveService` starts ingestion, the setpoint writer and the override monitor, and runs
:class:`~control.live.LiveController` once per control period until stopped. Beside it, every
``alarms.period_s`` of wall time, it evaluates the alarms (:class:`~control.alarm_loop.AlarmLoop`)
and appends their transitions to the historian's alarm log: the service is the one evaluator,
whether a dashboard is open or not; the dashboard only shows the log and appends operators'
answers.
"""

from __future__ import annotations

import logging
import math
import re
import statistics
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any, Literal, TypeVar, cast

import numpy as np
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from connectors.bacnet_client import BacnetClient, BacnetClientError
from connectors.bacnet_cov import (
    COV_INCREMENT_BY_UNIT,
    DEFAULT_LIFETIME_S,
    MAX_LIFETIME_S,
    ReadMode,
)
from connectors.broker import BrokerAddress
from connectors.catalog import PointCatalog
from connectors.device_clock import DeviceClockGuard, PlantCalendar
from connectors.field_ingestion import FieldIngestor
from connectors.field_sink import FieldOverride, FieldSetpointSink
from connectors.historian import POSTGRES_SCHEMES, open_historian
from connectors.ingestion import MqttIngestor, PointState
from connectors.modbus_client import ModbusClient
from connectors.multi_link import DeviceLink, MultiLink
from connectors.point_map import PointMap, load_point_map
from connectors.setpoint_writer import SetpointWriter
from connectors.topics import Topics
from control.alarm_loop import AlarmLoop
from control.alarms import AlarmConfig
from control.catalog import PolicyNotFoundError
from control.live import (
    LiveController,
    SetpointSink,
    persistence_forecast,
    plant_hour_of_year,
    unix_hour_of_year,
)
from control.period_schedule import PeriodSchedule
from control.policy import Policy
from control.preevaluation import policy_factory_of
from control.reservoir import PolicyRecord, Reservoir
from control.shield import ShieldConfig
from control.site_link import MqttSetpointSink, OverrideMonitor
from control.twin_tracker import TwinTracker
from control.watchdog import WatchdogConfig
from physics.plant.scenario import Scenario, load_scenario
from physics.plant.sensors import point_catalog
from physics.plant.site import SITE_VARIANTS, site_variant
from twin.assimilation import EnsembleKalmanAssimilator
from twin.design import TwinDesign
from twin.ensemble import TwinEnsemble
from twin.forecast import WeatherForecast
from twin.sensor_check import SensorCheckConfig
from twin.spaces import FORECAST_WET_BULB_H, HallReadings
from twin.surrogate import PhysicsTwin
from twinloop.errors import TwinLoopError

logger = logging.getLogger(__name__)

DEFAULT_SCENARIO = "tropical-typical-week"
_FIELD_FIRST = re.compile(r"^([a-z_]+\.[a-z_]+): ")
"""A whole-file check's message that starts with the field it is about (``mixed.x: ...``)."""
_T = TypeVar("_T")


class ServiceConfigError(TwinLoopError, ValueError):
    """A site file that cannot be used; the message names the file and the problem."""


class Identity(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    username: str = Field(min_length=1)
    password: str | None = None


SERVE_IDENTITIES: dict[str, str] = {
    "ingest": "serve-ingest",
    "controller": "controller",
    "override": "override",
}
"""The identities of ``credentials.json`` (``twinloop broker``) that ``serve`` connects as."""


class BrokerSection(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    host: str = "127.0.0.1"
    port: int = Field(default=1883, gt=0, lt=65536)
    ca_file: Path | None = None
    credentials: Path | None = None
    """A ``credentials.json`` written by ``twinloop broker`` (host, port and identities)."""
    ingest: Identity | None = None
    controller: Identity | None = None
    override: Identity | None = None
    """The override monitor's own identity (a broker binding client ids to user names lets
    one connection per identity); the controller's when not given."""

    @model_validator(mode="after")
    def _identities(self) -> BrokerSection:
        if self.credentials is None and (self.ingest is None or self.controller is None):
            raise ValueError("give either 'credentials' or both 'ingest' and 'controller'")
        return self

    def address(
        self, identity: Literal["ingest", "controller", "override"], base: Path
    ) -> BrokerAddress:
        """Where the service's ``identity`` connects: from ``credentials`` the identities
        ``twinloop broker`` makes for serve (``serve-ingest``, ``controller``, ``override``),
        never those of ``twinloop ingest`` (one process per identity)."""
        if self.credentials is not None:
            path = self.credentials if self.credentials.is_absolute() else base / self.credentials
            return BrokerAddress.from_credentials(
                path, SERVE_IDENTITIES[identity], tls=self.ca_file is not None
            )
        ident = {
            "ingest": self.ingest,
            "controller": self.controller,
            "override": self.override or self.controller,
        }[identity]
        assert ident is not None
        return BrokerAddress(self.host, self.port, ident.username, ident.password, self.ca_file)


class _BacnetOptions(BaseModel):
    """TwinLoop's BACnet/IP side: its address, timeouts and how sensors are read."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    local: str = "0.0.0.0:47808"
    """TwinLoop's own BACnet/IP address, ``host:port``."""
    timeout_s: float = Field(default=3.0, gt=0, le=60)
    reads: ReadMode = "auto"
    """Sensors by COV subscription (``cov``), ReadPropertyMultiple (``poll``), or COV where
    the device takes it and polling where it refuses (``auto``; connectors.bacnet_cov)."""
    cov_lifetime_s: int = Field(default=DEFAULT_LIFETIME_S, ge=60, le=MAX_LIFETIME_S)
    """Each subscription's lifetime in seconds: at least two poll intervals."""
    cov_confirmed: bool = False
    temperature_cov_increment_c: float = Field(
        default=COV_INCREMENT_BY_UNIT["degC"], ge=0.0, le=5.0
    )
    """The coarsest COV increment of the device's temperature sensors (K; the emulator's
    0.3 K by default): a sensor read by COV shows no change smaller than it, so the sensor
    check's stuck rule waits for that much more movement of its neighbours."""

    @model_validator(mode="after")
    def _local(self) -> _BacnetOptions:
        self.local_address()
        return self

    def local_address(self) -> tuple[str, int]:
        host, sep, port = self.local.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"local: {self.local!r} is not host:port")
        return host, int(port)


class BacnetSection(_BacnetOptions):
    """TwinLoop's BACnet/IP side (``protocol: bacnet``)."""

    point_map: Path
    device: str = Field(default="bms", min_length=1)


class MixedSection(_BacnetOptions):
    """A mixed site (``protocol: mixed``): every device of the map over its own protocol."""

    point_map: Path
    clock_device: str | None = Field(default=None, min_length=1)
    """With ``clock: plant``: the BACnet device whose local date and time is the plant's."""


class ModbusSection(BaseModel):
    """TwinLoop's Modbus TCP side (``protocol: modbus``): the device is the map's."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    point_map: Path
    device: str = Field(default="plant", min_length=1)
    timeout_s: float = Field(default=3.0, gt=0, le=60)


def _historian_location(value: Path | str, base: Path) -> Path | str:
    """A PostgreSQL URL as it is; a file relative to the site file's folder."""
    if isinstance(value, str) and value.startswith(POSTGRES_SCHEMES):
        return value
    path = Path(value)
    return path if path.is_absolute() else base / path


class ServiceConfig(BaseModel):
    """A site file (module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    site: str = Field(min_length=1)
    site_variant: str = "reference"
    protocol: Literal["mqtt", "bacnet", "modbus", "mixed"] = "mqtt"
    broker: BrokerSection | None = Field(default=None, validate_default=True)
    """Required with ``protocol: mqtt``."""
    bacnet: BacnetSection | None = Field(default=None, validate_default=True)
    """Required with ``protocol: bacnet``."""
    modbus: ModbusSection | None = Field(default=None, validate_default=True)
    """Required with ``protocol: modbus``."""
    mixed: MixedSection | None = Field(default=None, validate_default=True)
    """Required with ``protocol: mixed``."""
    historian: Path | str
    """A SQLite file (relative to the site file), or a ``postgresql://`` URL."""
    reservoir: Path
    control_period_s: float = Field(default=300.0, gt=0)
    clock: Literal["unix", "plant"] = "unix"
    time_scale: float = Field(default=1.0, gt=0)
    scenario: str | None = None
    twin: Path | None = None
    """A saved twin (``twinloop twin fit``): assimilated and forecasting beside the loop; its
    forecasts feed the watchdog's divergence rule. "drawings": the site's physics alone."""
    sensor_step_s: float = Field(default=60.0, gt=0)
    """How often the BMS samples every point (the twin cuts periods from these rows)."""
    shield: dict[str, Any] = Field(default_factory=dict)
    watchdog: dict[str, Any] = Field(default_factory=dict)
    alarms: dict[str, Any] = Field(default_factory=dict)
    """The alarm model's limits and the evaluation's period (:class:`AlarmConfig`)."""

    @field_validator("broker", "bacnet", "modbus", "mixed")
    @classmethod
    def _link_section(cls, value: Any, info: ValidationInfo) -> Any:
        protocol = info.data.get("protocol", "mqtt")
        wanted = "broker" if protocol == "mqtt" else protocol
        if value is None and info.field_name == wanted:
            raise ValueError(
                "Field required" + ("" if wanted == "broker" else f" (protocol {protocol})")
            )
        return value

    @model_validator(mode="after")
    def _checks(self) -> ServiceConfig:
        if self.site_variant not in SITE_VARIANTS:
            raise ValueError(
                f"unknown site_variant {self.site_variant!r} (known: {', '.join(SITE_VARIANTS)})"
            )
        Topics(self.site)  # raises for a name that cannot be a topic level
        if self.protocol == "modbus" and self.clock != "unix":
            raise ValueError("protocol modbus: clock must be unix (Modbus carries no plant clock)")
        if self.protocol in ("bacnet", "mixed") and self.clock == "plant" and self.scenario is None:
            raise ValueError(
                f"protocol {self.protocol} with clock plant needs 'scenario': the device's "
                "clock is read on the calendar of the scenario's weather year"
            )
        if self.mixed is not None and self.protocol == "mixed":
            if self.clock == "plant" and self.mixed.clock_device is None:
                raise ValueError(
                    "mixed.clock_device: required with clock plant (the BACnet device whose "
                    "local-date/local-time is the plant's clock; Modbus carries none)"
                )
            if self.clock == "unix" and self.mixed.clock_device is not None:
                raise ValueError(
                    "mixed.clock_device: only with clock plant (clock unix reads no device clock)"
                )
        self.shield_config()
        self.watchdog_config()
        self.alarm_config()
        return self

    def shield_config(self) -> ShieldConfig:
        return _dataclass_from(ShieldConfig, self.shield, "shield")

    def watchdog_config(self) -> WatchdogConfig:
        return _dataclass_from(WatchdogConfig, self.watchdog, "watchdog")

    def alarm_config(self) -> AlarmConfig:
        return _dataclass_from(AlarmConfig, self.alarms, "alarms")


def _dataclass_from(cls: type[_T], values: dict[str, Any], section: str) -> _T:
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(
            f"{section}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})"
        )
    converted = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    try:
        return cls(**converted)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{section}: {exc}") from None


def load_service_config(path: Path) -> ServiceConfig:
    """Read and validate a site file; relative paths in it are relative to the file."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ServiceConfigError(f"site config {path}: cannot read ({exc})") from None
    if not isinstance(raw, dict):
        raise ServiceConfigError(f"site config {path}: expected a mapping of settings")
    try:
        config = ServiceConfig.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "file"
        message = str(first["msg"]).removeprefix("Value error, ")
        named = _FIELD_FIRST.match(message)
        if where == "file" and named is not None:  # a check across fields names its field
            where, message = named.group(1), message[named.end() :]
        raise ServiceConfigError(f"site config {path}: {where}: {message}") from None
    base = path.parent
    bacnet = config.bacnet
    if bacnet is not None and not bacnet.point_map.is_absolute():
        bacnet = bacnet.model_copy(update={"point_map": base / bacnet.point_map})
    modbus = config.modbus
    if modbus is not None and not modbus.point_map.is_absolute():
        modbus = modbus.model_copy(update={"point_map": base / modbus.point_map})
    mixed = config.mixed
    if mixed is not None and not mixed.point_map.is_absolute():
        mixed = mixed.model_copy(update={"point_map": base / mixed.point_map})
    return config.model_copy(
        update={
            "bacnet": bacnet,
            "modbus": modbus,
            "mixed": mixed,
            "historian": _historian_location(config.historian, base),
            "reservoir": config.reservoir
            if config.reservoir.is_absolute()
            else base / config.reservoir,
        }
    )


class ScenarioForecast:
    """Wet-bulb forecasts for an emulated site: the scenario's weather file (the truth) plus
    the error of its forecast level (:class:`~twin.forecast.WeatherForecast`)."""

    def __init__(self, scenario: Scenario) -> None:
        self._weather = scenario.weather()
        self._last_h = float(self._weather.time_h[-1])
        self.forecast = WeatherForecast.for_scenario(scenario)

    def __call__(self, time_h: float, hall: HallReadings) -> tuple[float, float]:
        leads = np.asarray(FORECAST_WET_BULB_H)
        ahead = np.minimum(time_h + leads, self._last_h)
        truth = self._weather.at(ahead).wet_bulb_c[None, :]
        wet_bulb = self.forecast.forecast_c(truth, time_h, leads)[0]
        return float(wet_bulb[0]), float(wet_bulb[1])


def plant_clock(
    snapshot: Mapping[str, PointState], points: Sequence[str], time_scale: float
) -> float:
    """The plant clock from the data: the median over ``points`` of each one's newest ``ts``
    plus its age in plant seconds; NaN before any of them arrived. A median: one bad sample
    (or a point outside ``points``) cannot move it."""
    estimates = [
        s.ts + s.age_s * time_scale for name in points if (s := snapshot.get(name)) is not None
    ]
    return float(statistics.median(estimates)) if estimates else math.nan


class LiveService:
    """Ingestion + controller + setpoint writer for one site (module docstring)."""

    def __init__(self, config: ServiceConfig, *, base: Path = Path(".")) -> None:
        self.config = config
        self.topics = Topics(config.site)
        self.site = site_variant(config.site_variant)
        self._stop = threading.Event()
        self._scenario: Scenario | None = None
        # A bad point map, or one without the device, is reported before anything is
        # opened or created (the client binds nothing until it starts).
        self.field_client: BacnetClient | ModbusClient | MultiLink | None = (
            self._bacnet_client()
            if config.protocol == "bacnet"
            else self._modbus_client()
            if config.protocol == "modbus"
            else self._mixed_link()
            if config.protocol == "mixed"
            else None
        )
        self.historian = open_historian(config.historian)
        self.reservoir = Reservoir(config.reservoir, create=False)
        self._field_started = False
        self.field_sink: FieldSetpointSink | None = None
        self.writer: SetpointWriter | None = None
        self.ingestor: MqttIngestor | FieldIngestor
        self.override: OverrideMonitor | FieldOverride
        sink: SetpointSink
        if self.field_client is not None:
            self.ingestor, sink, self.override = self._field_link(self.field_client)
        else:
            broker = config.broker
            assert broker is not None
            self.ingestor = MqttIngestor(
                broker.address("ingest", base),
                self.topics,
                self.historian,
                catalog=PointCatalog.for_site(self.site),
                client_id=f"twinloop-serve-ingest-{config.site}",
                stale_after_s=max(3.0 * 60.0 / config.time_scale, 1.0),
            )
            self.writer = SetpointWriter(
                broker.address("controller", base), self.topics, self.historian
            )
            self.override = OverrideMonitor(
                broker.address("override", base),
                self.topics,
                client_id=f"twinloop-override-{config.site}",
            )
            sink = MqttSetpointSink(self.writer)
        forecaster = ScenarioForecast(self.scenario()) if config.scenario else persistence_forecast
        hour_of_year = plant_hour_of_year if config.clock == "plant" else unix_hour_of_year
        self.controller = LiveController(
            reservoir=self.reservoir,
            snapshot=self.ingestor.snapshot,
            sink=sink,
            historian=self.historian,
            loader=self.load_policy,
            site=self.site,
            control_period_s=config.control_period_s,
            shield=config.shield_config(),
            watchdog=config.watchdog_config(),
            override=self.override,
            forecaster=forecaster,
            hour_of_year=hour_of_year,
            twin=self._twin(hour_of_year) if config.twin is not None else None,
            sensor_check=self._sensor_check(),
        )
        self.alarms = AlarmLoop(self.historian, config.alarm_config())

    def _bacnet_client(self) -> BacnetClient:
        """The client of the site's BACnet device; raises PointMapError for a bad map,
        BacnetClientError for a map without the device."""
        section = self.config.bacnet
        assert section is not None
        point_map = load_point_map(section.point_map, PointCatalog.for_site(self.site))
        calendar = self.plant_calendar()
        return self._bacnet_device_client(
            point_map, section.device, section, 0, with_clock=calendar is not None
        )

    def _bacnet_device_client(
        self,
        point_map: PointMap,
        device: str,
        section: _BacnetOptions,
        port_offset: int,
        *,
        with_clock: bool,
    ) -> BacnetClient:
        """The client of ``device``, bound ``port_offset`` above ``section.local``'s port."""
        name = "bacnet" if isinstance(section, BacnetSection) else "mixed"
        host, port = section.local_address()
        if port + port_offset > 65535:
            raise ServiceConfigError(
                f"{name}.local: port {port} leaves no port for BACnet device {device!r}"
            )
        poll_s = self.config.sensor_step_s / self.config.time_scale
        if section.reads != "poll" and section.cov_lifetime_s < 2.0 * poll_s:
            raise BacnetClientError(
                f"{name}: cov_lifetime_s {section.cov_lifetime_s} s is under two poll "
                f"intervals ({poll_s:g} s each): subscriptions would lapse between polls"
            )
        calendar = self.plant_calendar() if with_clock else None
        return BacnetClient(
            point_map,
            device=device,
            local_host=host,
            local_port=port + port_offset,
            timeout_s=section.timeout_s,
            reads=section.reads,
            cov_lifetime_s=section.cov_lifetime_s,
            cov_confirmed=section.cov_confirmed,
            device_clock=None if calendar is None else calendar.seconds,
        )

    def _mixed_link(self) -> MultiLink:
        """Every device of a mixed site's map, each through its own client; raises
        PointMapError for a bad map, ServiceConfigError for a clock device it lacks."""
        section = self.config.mixed
        assert section is not None
        point_map = load_point_map(section.point_map, PointCatalog.for_site(self.site))
        clock = section.clock_device
        if clock is not None:
            spec = point_map.devices.get(clock)
            if spec is None:
                raise ServiceConfigError(
                    f"mixed.clock_device: {clock[:40]!r} is not a device of "
                    f"{section.point_map} (devices: {', '.join(point_map.devices)})"
                )
            if spec.protocol != "bacnet":
                raise ServiceConfigError(
                    f"mixed.clock_device: {clock!r} is a {spec.protocol} device: only a "
                    "BACnet device has a clock (local-date/local-time)"
                )
        used = [d for d in point_map.devices if point_map.for_device(d)]
        links: dict[str, DeviceLink] = {}
        bacnet_n = 0
        for device in used:
            if point_map.devices[device].protocol == "bacnet":
                links[device] = self._bacnet_device_client(
                    point_map, device, section, bacnet_n, with_clock=device == clock
                )
                bacnet_n += 1
            else:
                links[device] = ModbusClient(point_map, device=device, timeout_s=section.timeout_s)
        return MultiLink(point_map, links, clock_device=clock)

    def _sensor_check(self) -> SensorCheckConfig:
        """The live sensor check, allowing for the resolution of sensors read by COV."""
        section: _BacnetOptions | None = (
            self.config.mixed if self.config.protocol == "mixed" else self.config.bacnet
        )
        if self.config.protocol not in ("bacnet", "mixed") or section is None:
            return SensorCheckConfig()
        if section.reads == "poll":
            return SensorCheckConfig()
        return SensorCheckConfig(reading_resolution_c=section.temperature_cov_increment_c)

    def _modbus_client(self) -> ModbusClient:
        """The client of the site's Modbus device; raises PointMapError for a bad map,
        ModbusClientError for a map without the device."""
        section = self.config.modbus
        assert section is not None
        point_map = load_point_map(section.point_map, PointCatalog.for_site(self.site))
        return ModbusClient(point_map, device=section.device, timeout_s=section.timeout_s)

    def _field_link(
        self, client: BacnetClient | ModbusClient | MultiLink
    ) -> tuple[FieldIngestor, FieldSetpointSink, FieldOverride]:
        """Ingestion, sink and override over the site's BACnet or Modbus device, or every
        device of a mixed site (module docstring)."""
        section = {
            "bacnet": self.config.bacnet,
            "modbus": self.config.modbus,
            "mixed": self.config.mixed,
        }[self.config.protocol]
        assert section is not None
        name = section.device if isinstance(section, BacnetSection | ModbusSection) else "site"
        poll_s = self.config.sensor_step_s / self.config.time_scale
        ingestor = FieldIngestor(
            client,
            self.historian,
            # Every point stale once no poll answered for three poll intervals.
            stale_after_s=max(3.0 * poll_s, 2.0 * section.timeout_s + 1.0),
            name=name,
            device_clock=self._device_clock_guard(),
        )
        self.field_sink = FieldSetpointSink(
            client,
            self.historian,
            protocol=self.config.protocol,
            labels=client.label if isinstance(client, MultiLink) else None,
        )
        override = FieldOverride(lambda: ingestor.last_poll, self.historian)
        return ingestor, self.field_sink, override

    def plant_calendar(self) -> PlantCalendar | None:
        """The calendar a BACnet device's clock is read on: the scenario's weather year,
        with ``clock: plant`` over BACnet (or a mixed site's clock device); else None
        (readings on the wall clock)."""
        if not (self.config.protocol in ("bacnet", "mixed") and self.config.clock == "plant"):
            return None
        start = self.scenario().weather().start
        if start is None:
            raise ValueError(f"scenario {self.config.scenario}: its weather has no start date")
        return PlantCalendar(int(start.year))

    def _device_clock_guard(self) -> DeviceClockGuard | None:
        """The check of the device's clock (plant clock over BACnet): within the scenario's
        span, at the emulator's pace (``time_scale``)."""
        if self.plant_calendar() is None:
            return None
        scenario = self.scenario()
        first_s = scenario.start_h * 3600.0
        last_s = first_s + scenario.duration_h * 3600.0 + scenario.step_s
        return DeviceClockGuard(speed=self.config.time_scale, window=(first_s, last_s))

    def _twin(self, hour_of_year: Callable[[float], float]) -> TwinTracker:
        """The tracker over the configured twin (raises TwinLoadError for a bad folder)."""
        assert self.config.twin is not None
        if str(self.config.twin) == "drawings":
            model = PhysicsTwin(TwinDesign.from_site(self.site), residual_hidden=0)
            assimilator = EnsembleKalmanAssimilator(model)
        else:
            ensemble = TwinEnsemble.load(self.config.twin)
            assimilator = EnsembleKalmanAssimilator.for_ensemble(ensemble)
        return TwinTracker(
            assimilator,
            self.historian,
            points=self.controller_points(),
            step_s=self.config.sensor_step_s,
            control_period_s=self.config.control_period_s,
            hour_of_year=hour_of_year,
        )

    def controller_points(self) -> tuple[str, ...]:
        return tuple(p.name for p in point_catalog(self.site))

    def scenario(self) -> Scenario:
        if self._scenario is None:
            self._scenario = load_scenario(self.config.scenario or DEFAULT_SCENARIO)
        return self._scenario

    def load_policy(self, record: PolicyRecord) -> Policy:
        make = policy_factory_of(self.reservoir, record)
        if record.kind != "mpc":  # rule and DRL factories do not look at the scenario
            return make(cast(Scenario, None))
        if self.config.scenario is None:
            raise PolicyNotFoundError(f"{record.ref}: an MPC needs 'scenario' for its forecasts")
        return make(self.scenario())

    def now_s(self) -> float:
        """Plant time now: the wall clock, or the plant clock estimated from the data: the
        median over the site's catalog points of each one's ``ts`` plus its age (scaled), so
        one bad sample, or a point the catalog does not list, cannot move it."""
        if self.config.clock == "unix":
            return time.time()
        return plant_clock(self.ingestor.snapshot(), self.controller.points, self.config.time_scale)

    def start(self) -> LiveService:
        if isinstance(self.ingestor, FieldIngestor):
            assert self.field_client is not None
            self.field_client.start()  # BacnetPortError for a taken local port
            self._field_started = True
            self.ingestor.start(self.config.sensor_step_s / self.config.time_scale)
        else:
            assert self.writer is not None and isinstance(self.override, OverrideMonitor)
            self.ingestor.start()
            self.writer.start()
            self.override.start()
        self.alarms.start()
        return self

    def wait_for_data(self, timeout_s: float) -> bool:
        """Wait until ingestion has seen every point of the site (a service just started
        must not judge the site stale before its first readings arrive)."""
        wanted = set(self.controller.points)
        deadline = time.monotonic() + timeout_s
        while not self._stop.is_set():
            if wanted <= set(self.ingestor.snapshot()):
                return True
            if time.monotonic() > deadline:
                missing = len(wanted - set(self.ingestor.snapshot()))
                logger.warning("service: %d point(s) never arrived; starting anyway", missing)
                return False
            self._stop.wait(0.05)
        return False

    def run(self, *, periods: int | None = None) -> int:
        """One controller step per control period (wall time scaled by ``time_scale``) until
        :meth:`stop` or ``periods`` steps; the number of steps run. The first waits (up to
        two control periods) for the site's first complete set of readings."""
        wall_period_s = self.config.control_period_s / self.config.time_scale
        plant = self.config.clock == "plant"
        schedule = PeriodSchedule(
            self.config.control_period_s if plant else wall_period_s,
            self.config.time_scale if plant else 1.0,
        )
        self.wait_for_data(2.0 * wall_period_s)
        done = 0
        tick = time.monotonic()
        while not self._stop.is_set() and (periods is None or done < periods):
            now = self.now_s()
            if not math.isfinite(now):
                logger.warning("no sensor data yet; waiting")
            elif (wait_s := schedule.wait_s(now)) > 0.0:
                # The clock has not moved on by a period since the last step (the plant ran
                # slow): a step now would let the per-period rate limits act twice in one.
                self._stop.wait(wait_s)
                continue
            else:
                report = self.controller.step(now)
                if self.field_sink is not None:  # no command this period: hand back
                    self.field_sink.period_done(now, report.written)
                schedule.stepped(now)
                done += 1
                logger.info("period at %.0f s: %s %s", now, report.mode, dict(report.written))
            tick = schedule.next_tick(tick, time.monotonic())
            self._stop.wait(max(0.0, tick - time.monotonic()))
        return done

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        """Stop the clients and close the stores (nothing written is lost). Over BACnet,
        TwinLoop's slot is relinquished first: the site's own control takes over."""
        if self.field_sink is not None and self._field_started:
            try:
                self.field_sink.hand_back(self.now_s(), "service stopping")
            except Exception:
                logger.exception("service: the hand-back on stopping failed")
        client = self.field_client if self._field_started else None
        parts: list[Any] = [self.alarms, self.override, self.writer, self.ingestor, client]
        for part in parts:
            if part is None or isinstance(part, FieldOverride):
                continue
            try:
                part.stop()
            except Exception:
                logger.exception("service: stopping %r failed", part)
        self.reservoir.close()
        self.historian.close()

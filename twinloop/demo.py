"""The one-command demo of the whole dual loop (``twinloop demo``), on embedded defaults.

What runs, all on this machine and on loopback:

- **outer loop:** Mosquitto (generated config, one identity per service, ACLs), the plant
  of ``tropical-typical-week`` behind the BMS emulator at ``speed`` × real time, the live
  service (MQTT ingestion into the SQLite historian, the live controller behind the shield
  and watchdog, the setpoint writer, the twin assimilating beside the loop) and the operator
  dashboard. With ``protocol="bacnet"`` the site is a BACnet/IP device instead (the same
  plant behind priority arrays, :class:`~connectors.bacnet_device.BacnetBmsDevice`, on a free
  loopback port; no broker) and the service polls it, writes in TwinLoop's slot with the
  heartbeat and hands back by relinquishing; the readings carry the device's clock, the
  plant's (:mod:`connectors.device_clock`), so everything else is the same as over MQTT;
- **inner loop:** the twin fitted from a commissioning recording of the same site (three
  days under exploration before the live week), a reservoir seeded with the baselines and
  the MPC, pre-evaluation of the MPC against the site's own control in the twin and gate 1;
  then the operator's approval (dashboard, or ``auto_approve``), a shadow window, and the
  operator's promotion to live (the dashboard's Shadow page; by the demo itself only with
  ``auto_approve``, recorded as such), then live control;
- **the score:** a second copy of the plant runs the same week under the site's built-in
  control in lock-step (possible only because the site is emulated), so the savings shown
  are measured against the true counterfactual, not predicted.

A rerun in the same folder reuses the twin and the reservoir (its history is the audit)
but starts a fresh historian: the plant's week starts again, so the earlier run's readings
(same times) are moved to ``runs/`` first, never mixed with the new ones. A candidate that an
earlier run rolled back (or that was rejected) is not put back by the demo: it says when, by
whom and why, and the site keeps its own control.

:class:`Demo` is a context manager: leaving it (Ctrl-C included) stops every thread and the
broker process; nothing is left running.
"""

from __future__ import annotations

import json
import logging
import math
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from connectors.bacnet_device import BacnetBmsDevice
from connectors.bms_emulator import BmsEmulator
from connectors.broker import MosquittoBroker
from connectors.catalog import PointCatalog
from connectors.device_clock import PlantCalendar
from connectors.historian import Event, Historian, Reading
from connectors.point_map import reference_point_map
from connectors.topics import Topics
from control import approval
from control.preevaluation import register_builtin
from control.reservoir import Reservoir
from control.service import BacnetSection, BrokerSection, LiveService, ServiceConfig
from physics.plant.plant import Plant
from physics.plant.scenario import Scenario, load_scenario
from physics.plant.simulation import build_plant
from twin.spaces import HallReadings
from twinloop.errors import TwinLoopError

logger = logging.getLogger(__name__)


class DemoError(TwinLoopError):
    """A demo that cannot start here: its dashboard's address is taken."""


SITE = "demo-hall"
SCENARIO = "tropical-typical-week"
CANDIDATE = "mpc"
INCUMBENT = "fixed-setpoints"
DEMO_SUITE = "demo"
OPERATOR = "operator"
VIEWER = "viewer"
AUTO = "demo-auto"
SHADOW_PAGE = "/shadow"
PROTOCOLS = ("mqtt", "bacnet")
"""How the demo's site talks to TwinLoop: its BMS gateway on MQTT, or a BACnet/IP device."""
BACNET_DEVICE_INSTANCE = 1001
Protocol = Literal["mqtt", "bacnet"]


@dataclass(frozen=True)
class DemoConfig:
    home: Path
    scenario: str = SCENARIO
    speed: float = 300.0
    """Plant seconds per wall second (300: a 5-min control period every second)."""
    host: str = "127.0.0.1"
    port: int = 8050
    auto_approve: bool = False
    live_hours: float | None = None
    """Stop after this many simulated hours of live control (None: at the end of the
    scenario, or Ctrl-C)."""
    shadow_periods: int = 12
    fit_iterations: int = 200
    twin_members: int = 2
    """Ensemble members of the site's twin: two, so gate 1 sees where they disagree and
    judges the savings in the least favourable one."""
    commissioning_days: float = 3.0
    candidate: str = CANDIDATE
    """The built-in policy put through the gate (the MPC; trim-and-respond is quicker)."""
    suite: str = DEMO_SUITE
    promotion_approvers: int = 1
    """Distinct operators who must approve going live (the reservoir's rule, set at start;
    the demo adds that many operator logins)."""
    protocol: Protocol = "mqtt"
    """The site's field protocol (:data:`PROTOCOLS`; module docstring)."""
    bacnet_reads: Literal["auto", "cov", "poll"] = "auto"
    """Over BACnet, how the service reads the sensors (the site file's ``bacnet: reads``)."""

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise DemoError(f"protocol {self.protocol!r}: the demo speaks {', '.join(PROTOCOLS)}")
        if self.auto_approve and self.promotion_approvers != 1:
            raise DemoError(
                f"auto-approve promotes without an operator; it cannot meet a rule of "
                f"{self.promotion_approvers} operators' approvals to go live"
            )


@dataclass
class DemoStatus:
    """What the console and the summary show."""

    phase: str = "starting"
    hours: float = 0.0
    live_hours: float = 0.0
    mode: str = "site"
    live: str | None = None
    cooling_kwh: float = 0.0
    reference_cooling_kwh: float = 0.0
    live_cooling_kwh: float = 0.0
    live_reference_kwh: float = 0.0
    violation_kh_above_27: float = 0.0
    max_inlet_c: float = -math.inf
    gate1: str = ""
    events: list[str] = field(default_factory=list)

    @property
    def savings_live_pct(self) -> float:
        """Cooling savings vs the site's own control over the hours a policy was live."""
        if self.live_reference_kwh <= 0:
            return math.nan
        return (1.0 - self.live_cooling_kwh / self.live_reference_kwh) * 100.0


def _commissioning_scenario(live: Scenario, days: float, out: Path) -> Path:
    """A scenario of the live site in the days just before the live week (exploration)."""
    start_h = live.start_h - days * 24.0
    start = time.strftime("%m-%d", time.gmtime(start_h * 3600.0))
    text = (
        f"name: {live.name}-commissioning\n"
        f"description: Commissioning recording of the demo site before the live week.\n"
        f"site: {{variant: {live.site.name}, seed: {live.site_seed}}}\n"
        f'weather: {{file: "pvlib:miami", start: "{start}"}}\n'
        "workload: {kind: diurnal, mean_frac: 0.6, amplitude_frac: 0.15}\n"
        f"duration: {days:g} d\nstep: {live.step_s:g} s\n"
        f"control_period: {live.control_period_s:g} s\nsensor_noise: 1.0\nseed: 5\n"
    )
    out.mkdir(parents=True, exist_ok=True)
    path = out / "commissioning.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def fit_site_twin(config: DemoConfig, scenario: Scenario, say: Callable[[str], None]) -> Path:
    """The twin of the demo site, fitted on a commissioning recording (reused if saved).

    The commissioning run is the site's exploration test before the live week (setpoint
    steps under the site's supervision, as :mod:`twin.recording` records it): live data under
    one fixed control would not excite the plant enough to identify it."""
    from twin.competence import CompetenceModel
    from twin.dataset import design_of, periods_from_recordings
    from twin.recording import load_recordings, record_run
    from twin.training import FitConfig, fit_twin

    twin_dir = config.home / "twin"
    data_dir = config.home / "commissioning"
    if (twin_dir / "twin.pt").exists():
        say(f"twin: reusing {twin_dir}")
        try:
            current = CompetenceModel.load(twin_dir) is not None
        except ValueError:  # saved by an older TwinLoop, with other features
            current = False
        if not current:  # saved before twins knew where they are blind, or outdated
            recordings = load_recordings(data_dir)
            periods = periods_from_recordings(recordings, design_of(recordings))
            CompetenceModel.fit(periods).save(twin_dir)
            say("twin: added its competence model (where it can be believed)")
        return twin_dir
    path = _commissioning_scenario(scenario, config.commissioning_days, data_dir)
    say(f"twin: recording {config.commissioning_days:g} commissioning days of the site")
    record_run(load_scenario(path), policy="explore", seed=5, out_dir=data_dir, overwrite=True)
    recordings = load_recordings(data_dir)
    periods = periods_from_recordings(recordings, design_of(recordings))
    say(
        f"twin: fitting {config.twin_members} members ({config.fit_iterations} iterations, "
        f"{len(periods)} periods)"
    )
    fit = FitConfig(ensemble_size=config.twin_members, iterations=config.fit_iterations)
    ensemble = fit_twin(design_of(recordings), periods, fit, progress=True)
    ensemble.save(twin_dir)
    return twin_dir


def _say(line: str) -> None:
    """A line on the console above the demo's progress bar (never through it)."""
    from tqdm import tqdm

    tqdm.write(line)


def _tail(path: Path, n_bytes: int = 2000) -> str:
    """The last ``n_bytes`` of a log file, decoded for an error message."""
    with open(path, "rb") as fh:
        fh.seek(max(path.stat().st_size - n_bytes, 0))
        return fh.read().decode(errors="replace")


def _free_udp_port() -> int:
    """A UDP port on loopback nobody holds now."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _terminate(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10.0)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class ReferenceSite:
    """The same plant under the site's built-in control, stepped to the live plant's time."""

    def __init__(self, scenario: Scenario) -> None:
        self.plant: Plant = build_plant(scenario)
        self.site = scenario.site

    def advance_to(self, time_s: float) -> tuple[float, float] | None:
        """Step to ``time_s``; the cooling power (kW) read at the end and the hours stepped,
        or None if already there."""
        steps = round((time_s - self.plant.time_s) / self.plant.step_s)
        steps = min(steps, self.plant.n_steps - self.plant.step_index)
        if steps < 1:
            return None
        self.plant.advance(steps)
        frame = self.plant.last_frame
        assert frame is not None
        hall = HallReadings.from_points(
            frame.names, frame.values, self.site.n_pods, self.site.racks_per_pod
        )
        return float(hall.cooling_power_kw[0]), steps * self.plant.step_s / 3600.0


class Demo:
    """Everything of the demo; see the module docstring."""

    def __init__(self, config: DemoConfig, *, say: Callable[[str], None] = _say) -> None:
        self.config = config
        self.say = say
        self.status = DemoStatus()
        self.scenario = load_scenario(config.scenario)
        self.home = config.home
        self.home.mkdir(parents=True, exist_ok=True)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._cleanup: list[Callable[[], None]] = []
        self.dashboard_url: str | None = None
        self.operator_password = ""
        self.operator_passwords: dict[str, str] = {}
        self.error: BaseException | None = None
        self.service: LiveService | None = None

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> Demo:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop every thread and process the demo started (in reverse order)."""
        self._stop.set()
        if self.service is not None:
            self.service.stop()
        for thread in self._threads:
            thread.join(timeout=30.0)
        while self._cleanup:
            step = self._cleanup.pop()
            try:
                step()
            except Exception:
                logger.exception("demo: clean-up step failed")

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        def guarded() -> None:
            try:
                target()
            except Exception as exc:
                logger.exception("demo: %s failed", name)
                self.error = exc
                self._stop.set()

        thread = threading.Thread(target=guarded, name=f"demo-{name}", daemon=True)
        thread.start()
        self._threads.append(thread)

    @property
    def live_service(self) -> LiveService:
        if self.service is None:
            raise RuntimeError("the live service is not running")
        return self.service

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    # ------------------------------------------------------------------ start-up
    def start(self) -> Demo:
        cfg = self.config
        # The twin is fitted before the live parts start: fitting beside them in one process
        # would fight the MQTT threads for the interpreter lock (about 30 s on 2 cores).
        self.status.phase = "fitting the twin"
        self.twin_dir = fit_site_twin(cfg, self.scenario, self.say)
        self.reservoir_root = self.home / "reservoir"
        with Reservoir(self.reservoir_root) as reservoir:
            names = {r.name for r in reservoir.list()}
            for name in dict.fromkeys((INCUMBENT, "trim-and-respond", CANDIDATE, cfg.candidate)):
                if name not in names:
                    register_builtin(reservoir, name, actor=AUTO)
            approval.set_promotion_approvers(reservoir, cfg.promotion_approvers, actor=AUTO)
        self.historian_path = self.home / "historian.sqlite"
        self._archive_earlier_run()
        Historian(self.historian_path).close()
        plant = build_plant(self.scenario)
        self._inlet_columns = np.array(
            [i for i, n in enumerate(plant.log_names) if n.startswith("rack_inlet_c.")]
        )
        link = self._mqtt_site(plant) if cfg.protocol == "mqtt" else self._bacnet_site(plant)
        service_config = ServiceConfig(
            site=SITE,
            **link,
            historian=self.historian_path,
            reservoir=self.reservoir_root,
            control_period_s=self.scenario.control_period_s,
            clock="plant",
            time_scale=cfg.speed,
            scenario=cfg.scenario,
            twin=self.twin_dir,
            sensor_step_s=self.scenario.step_s,
            # At hundreds of times real time one 60-s sample lasts a fraction of a wall
            # second; data older than three control periods (3 s of wall time at 300×) is
            # stale here, instead of three samples.
            watchdog={"stale_after_s": 3.0 * self.scenario.control_period_s},
            # Alarms as often as the dashboard polls (2 s: ten minutes of plant time at 300x).
            alarms={"period_s": 2.0},
        )
        if cfg.protocol == "bacnet":  # polled: the device answers before the service asks
            self._start_emulator()
        # The service's stores belong to the thread that runs it: made, run and closed there.
        ready = threading.Event()
        self._spawn("service", lambda: self._run_service(service_config, ready))
        if not ready.wait(60.0) or self.error is not None:
            raise RuntimeError(f"the live service did not start: {self.error}")
        if cfg.protocol == "mqtt":  # subscribed: the service listens before the site talks
            self._start_emulator()
        self._start_dashboard()
        self._spawn("inner-loop", self._inner_loop)
        self._spawn("score", self._score)
        return self

    def _mqtt_site(self, plant: Plant) -> dict[str, Any]:
        """Mosquitto and the BMS emulator on it; the service's ``broker`` section."""
        broker = MosquittoBroker(self.home / "broker", sites=(SITE,)).start()
        self._cleanup.append(broker.stop)
        self.say(f"broker: Mosquitto on {broker.host}:{broker.port} (TLS {broker.tls_port})")
        self.emulator: BmsEmulator | BacnetBmsDevice = BmsEmulator(
            plant,
            broker.address("bms"),
            Topics(SITE),
            speed=self.config.speed,
            epoch_s=self.scenario.start_h * 3600.0,
        )
        section = BrokerSection(
            host=broker.host, port=broker.port, credentials=broker.credentials_file
        )
        return {"protocol": "mqtt", "broker": section}

    def _bacnet_site(self, plant: Plant) -> dict[str, Any]:
        """The site as a BACnet/IP device on a free loopback port, serving the plant's clock,
        and its point map; the service's ``bacnet`` section."""
        start = self.scenario.weather().start
        if start is None:
            raise DemoError(f"{self.scenario.name}: its weather has no date for the device's clock")
        address = f"127.0.0.1:{_free_udp_port()}"
        point_map = reference_point_map(
            PointCatalog.for_site(plant.config),
            address=address,
            device_instance=BACNET_DEVICE_INSTANCE,
            site=SITE,
        )
        map_path = self.home / "bacnet" / "bms-map.yaml"
        map_path.parent.mkdir(parents=True, exist_ok=True)
        map_path.write_text(point_map.to_yaml(), encoding="utf-8")
        self.emulator = BacnetBmsDevice(
            plant,
            point_map,
            speed=self.config.speed,
            epoch_s=self.scenario.start_h * 3600.0,
            calendar=PlantCalendar(int(start.year)),
        )
        self.say(
            f"BACnet: the site is device {BACNET_DEVICE_INSTANCE} at {address} "
            f"(point map {map_path})"
        )
        section = BacnetSection(
            point_map=map_path,
            local=f"127.0.0.1:{_free_udp_port()}",
            reads=self.config.bacnet_reads,
        )
        return {"protocol": "bacnet", "bacnet": section}

    def _start_emulator(self) -> None:
        try:
            self.emulator.start()
        finally:  # a device that failed to bind still has its loop thread to stop
            self._cleanup.append(self.emulator.stop)

    def _archive_earlier_run(self) -> None:
        """Move an earlier run's historian (with its WAL) to ``runs/``: the plant's week
        starts again at the same times, and its readings would repeat or mix with these."""
        path = self.historian_path
        if not path.exists():
            return
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(path.stat().st_mtime))
        runs = self.home / "runs"
        runs.mkdir(exist_ok=True)
        target = runs / f"historian-{stamp}.sqlite"
        k = 1
        while target.exists():
            k += 1
            target = runs / f"historian-{stamp}-{k}.sqlite"
        for suffix in ("-wal", "-shm", ""):  # the main file last: never a WAL without it
            part = path.with_name(path.name + suffix)
            if part.exists():
                part.rename(target.with_name(target.name + suffix))
        self.say(f"historian: the earlier run's readings moved to {target}; this run starts afresh")

    def _run_service(self, config: ServiceConfig, ready: threading.Event) -> None:
        self.service = LiveService(config)
        try:
            self.service.start()
            ready.set()
            self.service.run()
        finally:
            self.service.close()

    def _start_dashboard(self) -> None:
        from dashboards.app import create_app
        from dashboards.auth import UserStore
        from dashboards.server import DashboardServer
        from dashboards.site_time import SiteClock, WallAnchor

        users_file = self.home / "dashboard" / "users.json"
        store = UserStore(users_file)
        self.operator_password = secrets.token_urlsafe(9)
        store.add(OPERATOR, self.operator_password, "operator", replace=True)
        self.operator_passwords = {OPERATOR: self.operator_password}
        for k in range(2, self.config.promotion_approvers + 1):
            name = f"{OPERATOR}-{k}"
            self.operator_passwords[name] = secrets.token_urlsafe(9)
            store.add(name, self.operator_passwords[name], "operator", replace=True)
        store.add(VIEWER, secrets.token_urlsafe(9), "viewer", replace=True)
        # Plant time on the calendar of the weather year, in the weather file's zone; the
        # reservoir's wall-clock decisions placed on it through the emulator's pace.
        anchor = WallAnchor(self._plant_time_s(), time.time(), self.config.speed)
        clock = SiteClock.for_weather_start(self.scenario.weather().start, anchor)
        app = create_app(
            self.historian_path, self.reservoir_root, users_file, refresh_s=2.0, clock=clock
        )
        try:
            server = DashboardServer(app, self.config.host, self.config.port).start()
        except OSError as exc:  # e.g. the port is taken
            raise DemoError(
                f"dashboard at {self.config.host}:{self.config.port}: {exc} (try --port)"
            ) from None
        self._cleanup.append(server.stop)
        self.dashboard_url = server.url
        self.say(
            f"dashboard: {server.url}  (log in as '{OPERATOR}' with password "
            f"'{self.operator_password}'; users in {users_file})"
        )
        for name, password in list(self.operator_passwords.items())[1:]:
            self.say(f"dashboard: a second operator to confirm going live: '{name}' / '{password}'")

    # ------------------------------------------------------------------ inner loop
    def _event(self, kind: str, message: str) -> None:
        self.status.events.append(message)
        self.say(message)
        self.live_service.historian.add_event(Event(self._plant_time_s(), "demo", kind, message))

    def _plant_time_s(self) -> float:
        return self.scenario.start_h * 3600.0 + self.emulator.plant.time_s

    def _pre_evaluate(self) -> dict[str, Any] | None:
        """Loop 1 as ``twinloop preevaluate`` in its own process (the suite in the twin is
        CPU work that would otherwise compete with the live loop's threads).

        The child writes to ``gate1/preevaluate.log``, never to a pipe: a pipe nobody reads
        until the child exits blocks the child once the pipe's 64 KiB buffer is full."""
        out = self.home / "gate1"
        out.mkdir(parents=True, exist_ok=True)
        log_path = out / "preevaluate.log"
        command = [
            sys.executable, "-m", "twinloop.cli", "preevaluate", self.config.candidate,
            "--incumbent", INCUMBENT, "--suite", self.config.suite, "--twin", str(self.twin_dir),
            "--root", str(self.reservoir_root), "--out", str(out), "--quiet",
        ]  # fmt: skip
        (out / "gate1.json").unlink(missing_ok=True)
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        self._cleanup.append(lambda: _terminate(proc))
        self.say(f"pre-evaluation: log in {log_path}")
        while proc.poll() is None:
            if self._stop.wait(0.5):
                return None
        # Exit 1 with a report is a gate that said no; no report at all is a failure.
        if not (out / "gate1.json").exists():
            raise RuntimeError(
                f"pre-evaluation failed (exit {proc.returncode}); the end of {log_path}:\n"
                + _tail(log_path)
            )
        report: dict[str, Any] = json.loads((out / "gate1.json").read_text(encoding="utf-8"))
        return report

    def _inner_loop(self) -> None:
        """The candidate from wherever it stands (a rerun may find it anywhere) to live."""
        with Reservoir(self.reservoir_root) as reservoir:
            ref = reservoir.get(self.config.candidate).ref
            state = reservoir.get(ref).state
            if state == "candidate" and not self._gate1(reservoir):
                return
            if reservoir.get(ref).state == "pre_evaluated" and not self._await_approval(
                reservoir, ref
            ):
                return
            if reservoir.get(ref).state == "approved":
                self._to_shadow(reservoir, ref)
            if reservoir.get(ref).state == "shadow" and not self._shadow_then_live(reservoir, ref):
                return
            self._report_final(reservoir, ref)

    def _gate1(self, reservoir: Reservoir) -> bool:
        """Loop 1; whether the candidate passed."""
        cfg = self.config
        self.status.phase = "pre-evaluation"
        self.say(f"pre-evaluation: {cfg.candidate} vs {INCUMBENT} in the twin ({cfg.suite})")
        report = self._pre_evaluate()
        if report is None:
            return False
        self.status.gate1 = (
            f"passed: {report['savings_percent']:.1f} % predicted savings"
            if report["passed"]
            else "failed: " + "; ".join(report["reasons"])
        )
        self._event("gate1", f"gate 1 {self.status.gate1}")
        if not report["passed"]:
            self.status.phase = "rejected by gate 1"
            self._nothing_goes_live()
            return False
        return True

    def _nothing_goes_live(self) -> None:
        if self.config.live_hours is not None:
            # Nothing can go live: an unattended run has nothing left to show.
            self._event("gate1", "nothing will go live; the demo stops")
            self._stop.set()

    def _await_approval(self, reservoir: Reservoir, ref: str) -> bool:
        """pre_evaluated → approved by the operator (or by the demo with auto-approve)."""
        cfg = self.config
        self.status.phase = "awaiting approval"
        if cfg.auto_approve:
            approval.approve(
                reservoir,
                ref,
                operator=AUTO,
                reason="auto-approve: nobody reviewed this (unattended demo, --auto-approve)",
            )
        else:
            self.say(f"waiting for an operator to approve {ref} at {self.dashboard_url}/approvals")
        while not self._stop.wait(0.5):
            if reservoir.get(ref).state != "pre_evaluated":
                break
        state = reservoir.get(ref).state
        if state != "approved":
            if not self.stopped:
                self._event(
                    "approval", f"{cfg.candidate} is {state}; the site keeps its own control"
                )
            return False
        self._event("approval", f"{cfg.candidate} approved; {cfg.shadow_periods} periods in shadow")
        return True

    def _to_shadow(self, reservoir: Reservoir, ref: str) -> None:
        """approved → shadow at once: the shadow computes, never writes."""
        approver = approval.approval_of(reservoir, ref)
        who = approver.actor if approver is not None else "nobody"
        approval.promote(
            reservoir,
            ref,
            operator=AUTO,
            reason=(
                "automatic: shadow window after the approval by "
                + ("nobody (auto-approve)" if who == AUTO else who)
            ),
        )

    def _shadow_then_live(self, reservoir: Reservoir, ref: str) -> bool:
        """The shadow window, then live: promoted by the operator(s) on the dashboard, or
        with auto-approve by the demo (recorded as auto-approve); whether it went live."""
        cfg = self.config
        self.status.phase = "shadow"
        shadow_s = cfg.shadow_periods * self.scenario.control_period_s
        started = self._plant_time_s()
        while not self._stop.wait(0.5):
            if reservoir.get(ref).state != "shadow":
                break
            if self._plant_time_s() - started >= shadow_s:
                break
        if self.stopped or reservoir.get(ref).state != "shadow":
            return not self.stopped
        if cfg.auto_approve:
            approval.promote(
                reservoir,
                ref,
                operator=AUTO,
                reason=(
                    f"auto-approve: shadow window of {cfg.shadow_periods} periods passed without "
                    "a trip; nobody reviewed it (unattended demo, --auto-approve)"
                ),
            )
            return True
        self.status.phase = "awaiting promotion"
        needed = approval.rules(reservoir).promotion_approvers
        who = "an operator" if needed == 1 else f"{needed} different operators"
        self.say(
            f"{ref} has run {cfg.shadow_periods} periods in shadow; waiting for {who} to "
            f"promote it to live at {self.dashboard_url}{SHADOW_PAGE}"
        )
        while not self._stop.wait(0.5):
            if reservoir.get(ref).state != "shadow":
                break
        return not self.stopped

    def _report_final(self, reservoir: Reservoir, ref: str) -> None:
        """Say where the candidate ended up: live, or out of service and why."""
        record = reservoir.get(ref)
        if record.state == "live":
            self.status.phase = "live"
            self._event("live", f"{self.config.candidate} is live")
            return
        last = reservoir.history(ref)[-1]
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.strptime(last.at[:16], "%Y-%m-%dT%H:%M"))
        self.status.phase = f"{record.state.replace('_', ' ')}"
        self._event(
            "approval",
            f"{ref} was {record.state.replace('_', ' ')} on {when} by {last.actor} "
            f"({last.reason}); the site keeps its own control. The demo does not put it back: "
            f"register a new version of {record.name}, or start with --home elsewhere",
        )
        self._nothing_goes_live()

    # ------------------------------------------------------------------ the score
    def _score(self) -> None:
        """Every control period: the live plant's and the reference plant's cooling power,
        violation degree-hours, and the savings while a policy was live."""
        reference = ReferenceSite(self.scenario)
        limit_h = self.config.live_hours
        historian = self.live_service.historian
        site = self.scenario.site
        with Reservoir(self.reservoir_root) as reservoir:
            while not self._stop.wait(0.2):
                plant = self.emulator.plant
                frame = plant.last_frame
                stepped = reference.advance_to(plant.time_s)
                if stepped is None or frame is None:
                    continue
                ref_kw, dt_h = stepped
                hall = HallReadings.from_points(
                    frame.names, frame.values, site.n_pods, site.racks_per_pod
                )
                cooling_kw = float(hall.cooling_power_kw[0])
                inlets = plant.last_log[0][self._inlet_columns]
                live = approval.in_control(reservoir)
                s = self.status
                s.hours = plant.time_s / 3600.0
                s.live = None if live is None else live.ref
                s.mode = "site" if live is None else "live"
                s.cooling_kwh += cooling_kw * dt_h
                s.reference_cooling_kwh += ref_kw * dt_h
                if live is not None:
                    s.live_cooling_kwh += cooling_kw * dt_h
                    s.live_reference_kwh += ref_kw * dt_h
                    s.live_hours += dt_h
                s.max_inlet_c = max(s.max_inlet_c, float(inlets.max()))
                s.violation_kh_above_27 += float(np.maximum(inlets - 27.0, 0.0).sum()) * dt_h
                values = {
                    "kpi.reference_cooling_power_kw": ref_kw,
                    "kpi.savings_live_pct": s.savings_live_pct,
                    "kpi.violation_kh_above_27": s.violation_kh_above_27,
                }
                now_s = self.scenario.start_h * 3600.0 + plant.time_s
                historian.write(
                    [Reading(k, now_s, v) for k, v in values.items() if math.isfinite(v)]
                )
                if (limit_h is not None and s.live_hours >= limit_h) or plant.done:
                    self.say(f"demo: {s.hours:.1f} simulated hours, {s.live_hours:.1f} live")
                    self._stop.set()
                    return

    # ------------------------------------------------------------------ console
    def wait(self, *, progress: bool = True) -> DemoStatus:
        """Block until the demo ends (hours reached, scenario over, error) or Ctrl-C."""
        from tqdm import tqdm
        from tqdm.contrib.logging import logging_redirect_tqdm

        total = self.scenario.duration_h
        bar = tqdm(total=round(total, 1), unit="h", disable=not progress, desc="demo")
        # Log records and the demo's own lines are written above the bar, not into it.
        with bar, logging_redirect_tqdm():
            while not self._stop.wait(1.0):
                s = self.status
                bar.n = round(min(s.hours, total), 1)
                saving = s.savings_live_pct
                bar.set_postfix_str(
                    f"{s.phase}; {s.mode}"
                    + (f" {s.live}" if s.live else "")
                    + (f"; saving {saving:.1f} %" if math.isfinite(saving) else "")
                    + f"; {s.violation_kh_above_27:.2f} K·h>27",
                    refresh=False,
                )
                bar.refresh()
        if self.error is not None:
            raise self.error
        return self.status

"""The live loop with the shipped MPC over BACnet/IP and over MQTT, 24 plant-hours each
(issue 18's target: the same savings within 0.5 points, 0 K·h above 27 °C).

    OMP_NUM_THREADS=1 python benchmarks/bacnet_loop.py [--hours 24] [--scenario NAME]

Both loops run the same scenario window (one lead-in period under the site's own control,
then ``--hours`` of TwinLoop) with :class:`~control.live.LiveController` and the reservoir's
``mpc`` policy, stepping the plant faster than real time; every reading and every command
crosses the protocol:

- BACnet: a bacpypes3 device on loopback (:class:`~connectors.bacnet_device.BacnetBmsDevice`)
  ↔ TwinLoop's client, polled into :class:`~connectors.field_ingestion.FieldIngestor`,
  commands through :class:`~connectors.field_sink.FieldSetpointSink`;
- MQTT: a Mosquitto broker ↔ the BMS emulator ↔ ingestion and the setpoint writer.

Savings are the plant's true cooling energy against the site's own control over the same
window (``run_scenario``); K·h are the plant's true rack inlets above 27 °C. Prints one
JSON line per protocol and a summary.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from connectors.bacnet_client import BacnetClient
from connectors.bacnet_device import BacnetBmsDevice
from connectors.bms_emulator import BmsEmulator
from connectors.broker import MosquittoBroker, mosquitto_available
from connectors.catalog import PointCatalog
from connectors.field_ingestion import FieldIngestor
from connectors.field_sink import FieldOverride, FieldSetpointSink
from connectors.historian import Historian
from connectors.ingestion import MqttIngestor
from connectors.point_map import reference_point_map
from connectors.setpoint_writer import SetpointWriter
from connectors.topics import Topics
from control import approval
from control.live import LiveController, SetpointSink, StepReport, plant_hour_of_year
from control.policy import Policy
from control.preevaluation import policy_factory_of, register_builtin
from control.reservoir import PolicyRecord, Reservoir
from control.service import ScenarioForecast
from control.site_link import MqttSetpointSink, OverrideMonitor
from physics.kpi import compute_kpis
from physics.plant.plant import Plant
from physics.plant.scenario import Scenario, load_scenario
from physics.plant.simulation import build_plant, run_scenario

SITE = "bench"


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def deploy(reservoir: Reservoir, name: str) -> None:
    ref = register_builtin(reservoir, name, actor="bench").ref
    reservoir.add_evaluation(ref, on="twin", scenario="w", kpis={"cooling_kwh": 1.0})
    reservoir.transition(ref, "pre_evaluated", actor="gate1", reason="bench")
    approval.approve(reservoir, ref, operator="bench", reason="bench")
    approval.promote(reservoir, ref, operator="bench", reason="shadow")
    approval.promote(reservoir, ref, operator="bench", reason="live")


def controller(
    scenario: Scenario,
    reservoir: Reservoir,
    historian: Historian,
    snapshot: Callable[[], Any],
    sink: SetpointSink,
    override: Callable[[], bool],
) -> LiveController:
    def loader(record: PolicyRecord) -> Policy:
        return policy_factory_of(reservoir, record)(scenario)

    return LiveController(
        reservoir=reservoir,
        snapshot=snapshot,
        sink=sink,
        historian=historian,
        loader=loader,
        site=scenario.site,
        control_period_s=scenario.control_period_s,
        override=override,
        forecaster=ScenarioForecast(scenario),
        hour_of_year=plant_hour_of_year,
    )


class PlantLog:
    """The plant's true log, one row per step, for the KPIs."""

    def __init__(self, plant: Plant) -> None:
        self.plant = plant
        self.rows: list[np.ndarray] = []

    def record(self) -> None:
        self.rows.append(np.array(self.plant.last_log[0], dtype=np.float64))

    def kpis(self) -> Any:
        frame = pd.DataFrame(np.array(self.rows), columns=list(self.plant.log_names))
        return compute_kpis(frame, self.plant.step_s)


def run_bacnet(scenario: Scenario, n_periods: int, policy: str, folder: Path) -> dict[str, Any]:
    plant = build_plant(scenario)
    point_map = reference_point_map(
        PointCatalog.for_site(plant.config),
        address=f"127.0.0.1:{free_udp_port()}",
        device_instance=1001,
    )
    log = PlantLog(plant)
    historian = Historian(folder / "bacnet-historian.sqlite")
    reservoir = Reservoir(folder / "bacnet-reservoir")
    deploy(reservoir, policy)
    clock = [scenario.start_h * 3600.0]
    modes: list[str] = []
    started = time.perf_counter()
    with (
        BacnetBmsDevice(plant, point_map) as device,
        BacnetClient(point_map, local_port=free_udp_port(), timeout_s=2.0) as client,
    ):
        ingestor = FieldIngestor(client, historian, clock=lambda: clock[0], stale_after_s=1e6)
        sink = FieldSetpointSink(client, historian, protocol="bacnet", clock=lambda: clock[0])
        override = FieldOverride(lambda: ingestor.last_poll, historian, clock=lambda: clock[0])
        ctl = controller(scenario, reservoir, historian, ingestor.snapshot, sink, override)

        def run_period() -> None:
            for _ in range(scenario.steps_per_period):
                device.step()
                log.record()
            clock[0] = scenario.start_h * 3600.0 + device.now_s

        run_period()  # the lead-in: the site's own control
        poll_s: list[float] = []
        for _ in range(n_periods - 1):
            poll_s.append(ingestor.poll_once().duration_s)
            report: StepReport = ctl.step(clock[0])
            sink.period_done(clock[0], report.written)
            modes.append(report.mode)
            run_period()
        counters = {**device.counters(), **{f"client.{k}": v for k, v in client.counters().items()}}
    wall_s = time.perf_counter() - started
    reservoir.close()
    flags = _sensor_flags(historian)
    historian.close()
    return {
        "kpis": log.kpis(),
        "modes": modes,
        "wall_s": wall_s,
        "poll_ms_p50": 1e3 * float(np.median(poll_s)),
        "poll_ms_max": 1e3 * float(np.max(poll_s)),
        "device_writes": counters["writes"],
        "refused": counters["refused_out_of_envelope"] + counters["refused_no_heartbeat"],
        "sensor_flags": flags,
        "released_heartbeat": counters["released_heartbeat"],
    }


def run_mqtt(scenario: Scenario, n_periods: int, policy: str, folder: Path) -> dict[str, Any]:
    topics = Topics(SITE)
    plant = build_plant(scenario)
    log = PlantLog(plant)
    modes: list[str] = []
    started = time.perf_counter()
    with MosquittoBroker(folder / "broker") as broker:
        emulator = BmsEmulator(
            plant, broker.address("bms"), topics, epoch_s=scenario.start_h * 3600.0
        ).start()
        historian = Historian(folder / "mqtt-historian.sqlite")
        ingestor = MqttIngestor(broker.address("ingest"), topics, historian, stale_after_s=1e6)
        ingestor.start()
        writer = SetpointWriter(broker.address("controller"), topics, historian).start()
        override = OverrideMonitor(broker.address("override"), topics).start()
        reservoir = Reservoir(folder / "mqtt-reservoir")
        deploy(reservoir, policy)
        ctl = controller(
            scenario, reservoir, historian, ingestor.snapshot, MqttSetpointSink(writer), override
        )

        def run_period() -> None:
            for _ in range(scenario.steps_per_period):
                emulator.step()
                log.record()

        def settle() -> None:
            now = emulator.now_s
            deadline = time.monotonic() + 30.0
            while time.monotonic() < deadline:
                snap = ingestor.snapshot()
                if len(snap) == len(plant.point_names) and all(s.ts >= now for s in snap.values()):
                    return
                time.sleep(0.002)
            raise RuntimeError("ingestion did not receive the latest step within 30 s")

        try:
            run_period()
            for _ in range(n_periods - 1):
                settle()
                report = ctl.step(emulator.now_s)
                modes.append(report.mode)
                if report.written:
                    deadline = time.monotonic() + 30.0
                    while time.monotonic() < deadline:
                        emulator.process_commands()
                        if set(emulator.active_commands()) == set(report.written):
                            break
                        time.sleep(0.002)
                run_period()
            counters = emulator.counters()
        finally:
            for part in (override, writer, ingestor, emulator):
                part.stop()
            reservoir.close()
            flags = _sensor_flags(historian)
            historian.close()
    return {
        "kpis": log.kpis(),
        "modes": modes,
        "wall_s": time.perf_counter() - started,
        "device_writes": counters["applied"],
        "refused": counters["rejected"],
        "sensor_flags": flags,
    }


def _sensor_flags(historian: Historian) -> list[str]:
    """The sensor check's flags over the run (a clean scenario should raise none)."""
    return [e.message for e in historian.events() if e.kind == "sensor_fault"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=24.0, help="plant hours under TwinLoop")
    parser.add_argument("--scenario", default="tropical-typical-week")
    parser.add_argument("--policy", default="mpc")
    parser.add_argument("--protocols", default="bacnet,mqtt")
    args = parser.parse_args(argv)
    base = load_scenario(args.scenario)
    window = dataclasses.replace(base, duration_h=args.hours + base.control_period_s / 3600.0)
    n_periods = window.n_steps // window.steps_per_period
    baseline = run_scenario(window).kpis
    print(
        f"{args.scenario}: {args.hours:g} h under {args.policy} after one lead-in period; "
        f"site's own control: {baseline.cooling_kwh:.1f} kWh cooling, "
        f"{baseline.violation_kh_above_27:.2f} K·h",
        flush=True,
    )
    results: dict[str, dict[str, Any]] = {}
    runners = {"bacnet": run_bacnet, "mqtt": run_mqtt}
    for protocol in args.protocols.split(","):
        if protocol == "mqtt" and not mosquitto_available():
            print("mqtt: Mosquitto is not installed; skipped", file=sys.stderr)
            continue
        with tempfile.TemporaryDirectory(prefix=f"twinloop-{protocol}-") as folder:
            out = runners[protocol](window, n_periods, args.policy, Path(folder))
        kpis = out.pop("kpis")
        modes = out.pop("modes")
        result = {
            "protocol": protocol,
            "cooling_kwh": round(kpis.cooling_kwh, 2),
            "saving_pct": round(100.0 * (1.0 - kpis.cooling_kwh / baseline.cooling_kwh), 2),
            "kh_above_27": round(kpis.violation_kh_above_27, 3),
            "max_inlet_c": round(kpis.max_inlet_c, 2),
            "live_periods": modes.count("live"),
            "periods": len(modes),
            **{k: round(v, 1) if isinstance(v, float) else v for k, v in out.items()},
        }
        results[protocol] = result
        print(json.dumps(result), flush=True)
    if {"bacnet", "mqtt"} <= set(results):
        gap = abs(results["bacnet"]["saving_pct"] - results["mqtt"]["saving_pct"])
        kh = max(results["bacnet"]["kh_above_27"], results["mqtt"]["kh_above_27"])
        print(
            f"savings gap {gap:.2f} points (target <= 0.5), worst K·h above 27 °C {kh:.3f} "
            f"(target 0): {'met' if gap <= 0.5 and kh == 0 else 'not met'}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

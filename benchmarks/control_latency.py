"""Sensor → setpoint latency of the live loop through Mosquitto on loopback.

Per control period the BMS emulator publishes one plant step (every sensor point, ~150
messages); ingestion decodes them into the historian; as soon as the snapshot holds the whole
step, the live controller runs (policy, shield, watchdog) and writes the command through the
setpoint writer (QoS 1, one message per field, each PUBACK and its reason code checked, each
audited in the historian); the emulator then receives it. Three latencies per period:

* ``snapshot_to_published``: snapshot complete → every field's PUBACK checked and audited
  (the controller's part; taken when the setpoint sink returns);
* ``sensor_to_published``: the BMS starts publishing the step → every PUBACK (the target);
* ``sensor_to_received``: the BMS starts publishing → the BMS holds the whole command (the
  emulator is polled only after the controller's period is over, so this also holds the
  work the controller does after writing: shadow, KPIs, twin);
* ``sensor_to_applied``: the BMS starts publishing → the writer holds the BMS's echo of
  every field ("applied", issue 17: the end-to-end acknowledgement);
* ``controller_period``: the whole ``LiveController.step``, write and after-write work.

The broker runs with the product's persistence (a save every 5 s); ``--save-on-change``
measures it saving on every change (before issue 17). Sensors go at QoS 1.

Usage: ``python benchmarks/control_latency.py [--periods 300] [--policy trim-and-respond]
[--json OUT]``. Target: the 99th percentile of sensor → setpoint (``sensor_to_published``)
at most 100 ms, so the live loop answers well within one control period.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from connectors.bms_emulator import BmsEmulator  # noqa: E402
from connectors.broker import MosquittoBroker  # noqa: E402
from connectors.catalog import PointCatalog  # noqa: E402
from connectors.historian import Historian  # noqa: E402
from connectors.ingestion import MqttIngestor  # noqa: E402
from connectors.setpoint_writer import SetpointWriter  # noqa: E402
from connectors.topics import Topics  # noqa: E402
from control import approval  # noqa: E402
from control.catalog import RULE_POLICIES  # noqa: E402
from control.live import LiveController, plant_hour_of_year  # noqa: E402
from control.policy import Policy  # noqa: E402
from control.preevaluation import register_builtin  # noqa: E402
from control.reservoir import PolicyRecord, Reservoir  # noqa: E402
from control.service import ScenarioForecast  # noqa: E402
from control.site_link import MqttSetpointSink, OverrideMonitor  # noqa: E402
from physics.plant.scenario import load_scenario  # noqa: E402
from physics.plant.simulation import build_plant  # noqa: E402

logger = logging.getLogger(__name__)


def _wait(condition: object, timeout_s: float = 10.0) -> None:
    assert callable(condition)
    deadline = time.perf_counter() + timeout_s
    while not condition():
        if time.perf_counter() > deadline:
            raise TimeoutError("the loop did not answer within 10 s")
        time.sleep(0.0002)


class TimedSink:
    """The controller's setpoint sink, noting when each write returned (PUBACKs checked)."""

    def __init__(self, inner: MqttSetpointSink) -> None:
        self.inner = inner
        self.returned_at = 0.0
        self.ids: list[str] = []

    def write(self, *args: Any, **kwargs: Any) -> Any:
        self.ids = [f"{kwargs['command_id']}.{name}" for name in args[0]]
        try:
            return self.inner.write(*args, **kwargs)
        finally:
            self.returned_at = time.perf_counter()


def measure(periods: int, policy: str, *, save_on_change: bool = False) -> dict[str, object]:
    scenario = load_scenario("tropical-typical-week")
    window = replace(scenario, duration_h=(periods + 2) * scenario.step_s / 3600.0)
    with (
        tempfile.TemporaryDirectory() as tmp,
        MosquittoBroker(Path(tmp) / "broker", autosave_on_changes=save_on_change) as broker,
    ):
        topics = Topics("bench")
        plant = build_plant(window)
        emulator = BmsEmulator(
            plant, broker.address("bms"), topics, epoch_s=window.start_h * 3600.0
        ).start()
        historian = Historian(Path(tmp) / "historian.sqlite")
        ingestor = MqttIngestor(
            broker.address("ingest"),
            topics,
            historian,
            catalog=PointCatalog.for_site(window.site),
            stale_after_s=1e6,
            batch_wait_s=0.001,
        ).start()
        writer = SetpointWriter(broker.address("controller"), topics, historian).start()
        override = OverrideMonitor(broker.address("override"), topics).start()
        reservoir = Reservoir(Path(tmp) / "reservoir")
        ref = register_builtin(reservoir, policy, actor="bench").ref
        reservoir.add_evaluation(ref, on="twin", scenario="bench", kpis={"cooling_kwh": 1.0})
        reservoir.transition(ref, "pre_evaluated", actor="gate1", reason="benchmark")
        approval.approve(reservoir, ref, operator="bench", reason="benchmark")
        approval.promote(reservoir, ref, operator="bench", reason="benchmark")
        approval.promote(reservoir, ref, operator="bench", reason="benchmark")

        def loader(record: PolicyRecord) -> Policy:
            return RULE_POLICIES[str(record.hyperparameters["builtin"])]()

        sink = TimedSink(MqttSetpointSink(writer))
        controller = LiveController(
            reservoir=reservoir,
            snapshot=ingestor.snapshot,
            sink=sink,
            historian=historian,
            loader=loader,
            site=window.site,
            control_period_s=window.step_s,  # a command every plant step: many samples
            override=override,
            forecaster=ScenarioForecast(window),
            hour_of_year=plant_hour_of_year,
        )
        n_points = len(plant.point_names)
        rows: list[tuple[float, float, float, float, float]] = []
        try:
            for _ in range(periods):
                t0 = time.perf_counter()
                emulator.step()
                now = emulator.now_s

                def complete(now: float = now) -> bool:
                    snap = ingestor.snapshot()
                    return len(snap) == n_points and all(s.ts >= now for s in snap.values())

                _wait(complete)
                t1 = time.perf_counter()
                report = controller.step(now)
                t2 = time.perf_counter()
                if report.mode != "live" or not report.written:
                    raise RuntimeError(f"controller did not write: {report.mode}")
                wanted = set(report.written)

                def received(wanted: set[str] = wanted) -> bool:
                    emulator.process_commands()
                    return set(emulator.active_commands()) == wanted

                _wait(received)
                t3 = time.perf_counter()
                _wait(lambda: all(writer.echo(cid) is not None for cid in sink.ids))
                t4 = time.perf_counter()
                if any(e is None or e.outcome != "applied" for e in map(writer.echo, sink.ids)):
                    raise RuntimeError("the BMS refused a command")
                published = sink.returned_at
                rows.append((published - t1, published - t0, t3 - t0, t4 - t0, t2 - t1))
        finally:
            for part in (override, writer, ingestor, emulator):
                part.stop()
            reservoir.close()
            historian.close()
    ms = np.asarray(rows) * 1000.0
    result: dict[str, object] = {
        "periods": periods,
        "policy": policy,
        "broker_persistence": "save on every change"
        if save_on_change
        else "saved every 5 s (autosave_on_changes false, autosave_interval 5)",
        "sensor_qos": emulator.sensor_qos,
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, "
        f"{len(__import__('os').sched_getaffinity(0))} cores",
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }
    for i, name in enumerate(
        (
            "snapshot_to_published",
            "sensor_to_published",
            "sensor_to_received",
            "sensor_to_applied",
            "controller_period",
        )
    ):
        result[name] = {
            "p50_ms": round(float(np.percentile(ms[:, i], 50)), 2),
            "p99_ms": round(float(np.percentile(ms[:, i], 99)), 2),
            "max_ms": round(float(ms[:, i].max()), 2),
        }
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--periods", type=int, default=300)
    parser.add_argument("--policy", default="trim-and-respond", choices=sorted(RULE_POLICIES))
    parser.add_argument("--json", type=Path, default=None, help="write the result here")
    parser.add_argument(
        "--save-on-change",
        action="store_true",
        help="the broker saves its database on every change (before issue 17)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    result = measure(args.periods, args.policy, save_on_change=args.save_on_change)
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    s2p = result["sensor_to_published"]
    s2r = result["sensor_to_received"]
    s2a = result["sensor_to_applied"]
    c2p = result["snapshot_to_published"]
    period = result["controller_period"]
    assert isinstance(s2p, dict) and isinstance(s2r, dict) and isinstance(c2p, dict)
    assert isinstance(s2a, dict)
    assert isinstance(period, dict)
    verdict = "meets" if s2p["p99_ms"] <= 100.0 else "misses"
    print(
        f"control latency over {args.periods} periods ({args.policy}, broker "
        f"{result['broker_persistence']}): sensor -> setpoint "
        f"published p50 {s2p['p50_ms']:.1f} ms, p99 {s2p['p99_ms']:.1f} ms ({verdict} the "
        f"100 ms target); snapshot -> published p50 {c2p['p50_ms']:.1f} / p99 "
        f"{c2p['p99_ms']:.1f} ms; sensor -> received by the BMS p50 {s2r['p50_ms']:.1f} / p99 "
        f"{s2r['p99_ms']:.1f} ms; sensor -> applied (BMS echo heard) p50 {s2a['p50_ms']:.1f} / "
        f"p99 {s2a['p99_ms']:.1f} ms; whole controller period p50 {period['p50_ms']:.1f} / p99 "
        f"{period['p99_ms']:.1f} ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

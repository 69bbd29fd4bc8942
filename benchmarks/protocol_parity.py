"""The whole demo's closed loop over MQTT and over BACnet/IP, the same plant-hours each
(issue 18's target: the same savings within 0.5 points, 0 K·h above 27 °C).

    OMP_NUM_THREADS=1 python benchmarks/protocol_parity.py [--hours 24] [--speed 150]
        [--protocols mqtt bacnet] [--out out/protocol-parity]

Unlike ``benchmarks/bacnet_loop.py``, which steps the plant and the controller in lock-step,
this runs what ``twinloop demo --protocol mqtt|bacnet`` runs (:class:`twinloop.demo.Demo`):
the emulated site paced at ``--speed`` plant seconds per wall second, ``twinloop serve``'s
live service on the plant clock (over BACnet, the device's clock read in every poll), the
twin assimilating beside the loop, the dashboard, and the score against the same plant under
the site's own control in lock-step (the demo's true counterfactual).

Both runs start from one prepared folder (``OUT/prepared``, kept for reruns): the demo's
twin (fitted once), gate 1 run once as the demo runs it, and the MPC then approved and
promoted to live by this benchmark (actor ``protocol-parity``, no shadow window), so each
run controls from its first period and both score the same ``--hours`` of the scenario.
Prints one JSON line per protocol and a summary, and writes them to ``OUT/results.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from connectors.historian import Historian
from control import approval
from control.preevaluation import register_builtin
from control.reservoir import Reservoir
from physics.plant.scenario import load_scenario
from twinloop.demo import PROTOCOLS, Demo, DemoConfig, fit_site_twin

ACTOR = "protocol-parity"
CANDIDATE = "mpc"
TARGET_GAP_POINTS = 0.5


def prepare(base: Path, config: DemoConfig) -> None:
    """The twin and a reservoir with the MPC live, in ``base`` (kept between runs)."""
    fit_site_twin(config, load_scenario(config.scenario), print)
    with Reservoir(base / "reservoir") as reservoir:
        names = {r.name for r in reservoir.list()}
        for name in ("fixed-setpoints", CANDIDATE):
            if name not in names:
                register_builtin(reservoir, name, actor=ACTOR)
        ref = reservoir.get(CANDIDATE).ref
        state = reservoir.get(ref).state
    if state == "candidate":  # gate 1 as the demo runs it (its own process)
        command = [
            sys.executable, "-m", "twinloop.cli", "preevaluate", CANDIDATE,
            "--incumbent", "fixed-setpoints", "--suite", config.suite,
            "--twin", str(base / "twin"), "--root", str(base / "reservoir"),
            "--out", str(base / "gate1"), "--quiet",
        ]  # fmt: skip
        print("gate 1: pre-evaluating the MPC in the twin (once; kept in", base, ")", flush=True)
        subprocess.run(command, check=False, stdout=subprocess.DEVNULL)
    with Reservoir(base / "reservoir") as reservoir:
        why = "protocol parity benchmark: the closed loop over each protocol is measured"
        if reservoir.get(ref).state == "pre_evaluated":
            approval.approve(reservoir, ref, operator=ACTOR, reason=why)
        while reservoir.get(ref).state in ("approved", "shadow"):
            approval.promote(reservoir, ref, operator=ACTOR, reason=why)
        state = reservoir.get(ref).state
        if state != "live":
            raise SystemExit(f"the prepared reservoir's {CANDIDATE} is {state}, not live")


def run(protocol: str, base: Path, out: Path, args: argparse.Namespace) -> dict[str, Any]:
    """One protocol's run in a copy of the prepared folder; its figures."""
    home = out / protocol
    if home.exists():
        shutil.rmtree(home)
    shutil.copytree(base, home)
    config = DemoConfig(
        home=home,
        speed=args.speed,
        port=0,
        live_hours=args.hours,
        candidate=CANDIDATE,
        protocol=protocol,  # type: ignore[arg-type]
        bacnet_reads=args.bacnet_reads,
    )
    lines: list[str] = []
    started = time.monotonic()
    with Demo(config, say=lines.append) as demo:
        demo.start()
        status = demo.wait(progress=False)
        service = demo.live_service
        ingestion = service.ingestor.stats()
        sink = service.field_sink.counters() if service.field_sink is not None else {}
    wall_s = time.monotonic() - started
    with Historian(home / "historian.sqlite", readonly=True) as historian:
        periods = len(historian.series(["kpi.cooling_power_kw"]))
    keep = ("polls", "answered_polls", "failed_polls", "repeated_samples", "accepted")
    return {
        "protocol": protocol,
        "plant_hours": round(status.hours, 2),
        "live_hours": round(status.live_hours, 2),
        "cooling_kwh_live": round(status.live_cooling_kwh, 2),
        "reference_kwh_live": round(status.live_reference_kwh, 2),
        "savings_pct": round(status.savings_live_pct, 3),
        "kh_above_27": round(status.violation_kh_above_27, 4),
        "max_inlet_c": round(status.max_inlet_c, 2),
        "control_periods": periods,
        "expected_periods": round(status.hours * 3600.0 / demo.scenario.control_period_s),
        "ingestion": {k: v for k, v in ingestion.items() if k in keep or k.startswith("clock")},
        "sink": sink,
        "wall_s": round(wall_s, 1),
        "speed": args.speed,
        "bacnet_reads": args.bacnet_reads if protocol == "bacnet" else None,
        "events": status.events,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hours", type=float, default=24.0, help="live plant-hours (24)")
    parser.add_argument("--speed", type=float, default=150.0, help="plant s per wall s (150)")
    parser.add_argument("--protocols", nargs="+", choices=PROTOCOLS, default=list(PROTOCOLS))
    parser.add_argument("--out", type=Path, default=Path("out/protocol-parity"))
    parser.add_argument(
        "--bacnet-reads",
        choices=("auto", "cov", "poll"),
        default="auto",
        help="how the service reads the BACnet sensors (auto: COV where taken, the default)",
    )
    parser.add_argument(
        "--fit-iterations", type=int, default=200, help="the demo twin's fit (200, the demo's)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    base = args.out / "prepared"
    base.mkdir(parents=True, exist_ok=True)
    prepare(base, DemoConfig(home=base, fit_iterations=args.fit_iterations))
    results = []
    for protocol in args.protocols:
        result = run(protocol, base, args.out, args)
        print(json.dumps(result), flush=True)
        results.append(result)
    summary: dict[str, Any] = {"runs": results}
    by = {r["protocol"]: r for r in results}
    if "mqtt" in by and "bacnet" in by:
        gap = by["bacnet"]["savings_pct"] - by["mqtt"]["savings_pct"]
        kh = max(r["kh_above_27"] for r in results)
        summary.update(
            gap_points=round(gap, 3),
            parity_met=abs(gap) <= TARGET_GAP_POINTS,
            zero_kh_met=kh == 0.0,
        )
        print(
            f"savings: MQTT {by['mqtt']['savings_pct']:.2f} %, BACnet "
            f"{by['bacnet']['savings_pct']:.2f} % (gap {gap:+.2f} points, target ±"
            f"{TARGET_GAP_POINTS}); K·h above 27 °C: MQTT {by['mqtt']['kh_above_27']:.3f}, "
            f"BACnet {by['bacnet']['kh_above_27']:.3f}"
        )
    (args.out / "results.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""How long a DRL agent trains before it beats trim-and-respond on the plant.

Takes a training run made with ``twinloop train --checkpoint-every STEPS`` (its
``checkpoints.csv`` gives the steps and the wall-clock of each snapshot), runs every snapshot,
the final agent, fixed setpoints and trim-and-respond over ``--scenario`` on the plant
(ground truth) and, for the agent, in the twin it trained in (what pre-evaluation would have
predicted), and reports the first snapshot whose plant cooling energy is below
trim-and-respond's with 0 K·h above 27 °C, or says that none is. Writes ``OUT/curve.csv`` and
``OUT/curve.png`` (cooling energy against training wall-clock).

    twinloop train --algo ppo --out out/agents/ppo-2cpu --checkpoint-every 100000
    python benchmarks/agent_wallclock.py out/agents/ppo-2cpu --scenario holdout-typical-week
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
from tqdm import tqdm

from control.catalog import policy_factory
from control.evaluation import evaluate
from control.training import CHECKPOINT_INDEX, METADATA_FILE
from physics.plant.scenario import load_scenario


def _kpis(spec: str, scenario: Any, on: str, twin: str | None = None) -> dict[str, float]:
    policy = policy_factory(spec)(scenario)
    result = evaluate(policy, scenario, on=on, twin=twin)  # type: ignore[arg-type]
    k = result.kpis
    return {
        "cooling_kwh": float(k["cooling_kwh"]),
        "kh_above_27": float(k["violation_kh_above_27"]),
        "max_inlet_c": float(k["max_inlet_c"]),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a training output folder with checkpoints.csv")
    parser.add_argument("--scenario", default="holdout-typical-week")
    parser.add_argument("--out", type=Path, default=None, help="default: RUN/wallclock")
    parser.add_argument("--no-twin", action="store_true", help="skip the twin's predictions")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    index_path = args.run / CHECKPOINT_INDEX
    if not index_path.is_file():
        parser.error(f"{index_path} not found: train with --checkpoint-every")
    out = args.out or args.run / "wallclock"
    out.mkdir(parents=True, exist_ok=True)
    scenario = load_scenario(args.scenario)
    meta = json.loads((args.run / METADATA_FILE).read_text(encoding="utf-8"))
    twin = meta["config"].get("twin")
    baselines = {
        name: _kpis(name, scenario, "plant") for name in ("fixed-setpoints", "trim-and-respond")
    }
    reference = baselines["trim-and-respond"]["cooling_kwh"]
    index = pd.read_csv(index_path)
    snapshots = [
        (int(steps), float(wall), args.run / str(path))
        for steps, wall, path in zip(
            index["timesteps"], index["wall_s"], index["path"], strict=True
        )
    ]
    snapshots.append((int(meta["timesteps"]), float(meta["wall_s"]), args.run))
    rows = []
    for steps, wall_s, folder in tqdm(snapshots, desc="snapshots", unit="agent"):
        plant = _kpis(str(folder), scenario, "plant")
        row: dict[str, Any] = {
            "timesteps": steps,
            "wall_s": wall_s,
            **{f"plant_{k}": v for k, v in plant.items()},
        }
        if not args.no_twin:
            twin_kpis = _kpis(str(folder), scenario, "twin", twin)
            row.update({f"twin_{k}": v for k, v in twin_kpis.items()})
        row["vs_trim_and_respond_pct"] = 100.0 * (plant["cooling_kwh"] / reference - 1.0)
        row["beats_trim_and_respond"] = (
            plant["cooling_kwh"] < reference and plant["kh_above_27"] == 0.0
        )
        rows.append(row)
    curve = pd.DataFrame(rows)
    curve.to_csv(out / "curve.csv", index=False)
    fig, ax = plt.subplots(figsize=(8.0, 4.5))
    ax.plot(curve["wall_s"], curve["plant_cooling_kwh"], "o-", label="agent on the plant")
    if "twin_cooling_kwh" in curve:
        ax.plot(curve["wall_s"], curve["twin_cooling_kwh"], "s--", label="agent in the twin")
    for (name, kpis), colour in zip(baselines.items(), ("grey", "black"), strict=True):
        ax.axhline(kpis["cooling_kwh"], ls=":", color=colour, label=f"{name} (plant)")
    ax.set_xlabel("training wall-clock (s)")
    ax.set_ylabel(f"cooling energy, {args.scenario} (kWh)")
    ax.set_title(f"{meta['algo'].upper()} vs training time ({os.cpu_count()} CPUs)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "curve.png", dpi=120)
    plt.close(fig)
    print(curve.to_string(index=False, float_format=lambda v: f"{v:,.2f}"))
    print(f"baselines on the plant: {json.dumps(baselines)}")
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs; "
        f"agent trained on {meta['config']['device']}"
    )
    winners = curve[curve["beats_trim_and_respond"]]
    if winners.empty:
        best = curve.sort_values("plant_cooling_kwh").iloc[0]
        print(
            f"RESULT {meta['algo']}: no snapshot beats trim-and-respond on the plant within "
            f"{curve['wall_s'].max():.0f} s ({curve['timesteps'].max():,} steps); best "
            f"{best['vs_trim_and_respond_pct']:+.2f} % at {best['wall_s']:.0f} s"
        )
        return 1
    first = winners.iloc[0]
    print(
        f"RESULT {meta['algo']}: beats trim-and-respond on the plant after "
        f"{first['wall_s']:.0f} s of training ({int(first['timesteps']):,} steps): "
        f"{first['vs_trim_and_respond_pct']:+.2f} %"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

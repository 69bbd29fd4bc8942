"""Wall-clock from start to a policy that beats trim-and-respond on the plant's typical week.

Trains ``control/hyperparams.yaml``'s PPO (its training scenarios, pessimism, drawn members
and randomisation; rollouts of ``--n-steps`` and ``--minibatches`` minibatches per epoch to
suit ``--n-envs``) through :func:`control.training.train_agent` on ``--device`` (PPO on
CUDA trains with the torch PPO over the device-resident twin), then runs the saved agent
and trim-and-respond on the plant over ``tropical-typical-week`` and prints both, with the
training wall-clock. ``--rounds`` repeats training in rounds of ``--timesteps`` (continuing
from nothing: each round is a fresh run of that many steps) until one beats trim-and-respond
on cooling energy without more rack-inlet violation.

    python benchmarks/gpu_time_to_policy.py --device cpu --n-envs 64 --timesteps 20000
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from control.agents import Sb3Policy
from control.baselines import TrimAndRespond
from control.evaluation import evaluate
from control.training import TrainConfig, train_agent

PLANT_SCENARIO = "tropical-typical-week"


def _kpis(result: Any) -> dict[str, float]:
    k = result.kpis
    return {
        "cooling_kwh": round(float(k["cooling_kwh"]), 1),
        "violation_kh_above_27": round(float(k["violation_kh_above_27"]), 3),
        "pue": round(float(k["pue"]), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--n-envs", type=int, default=4096)
    parser.add_argument("--timesteps", type=int, nargs="+", default=[2_000_000])
    parser.add_argument("--n-steps", type=int, default=64)
    parser.add_argument("--minibatches", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=None, help="JSON file of the results")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    baseline = _kpis(evaluate(TrimAndRespond(), PLANT_SCENARIO, on="plant"))
    print(json.dumps({"trim-and-respond": baseline}), flush=True)
    rows = []
    for budget in args.timesteps:
        config = TrainConfig.from_yaml(
            "ppo",
            overrides={
                "n_envs": args.n_envs,
                "total_timesteps": budget,
                "n_steps": args.n_steps,
                "batch_size": max(1, args.n_envs * args.n_steps // args.minibatches),
                "device": args.device,
            },
        )
        with tempfile.TemporaryDirectory() as folder:
            agent = train_agent(config, Path(folder), progress=False)
            policy = Sb3Policy.load(Path(folder))
            plant = _kpis(evaluate(policy, PLANT_SCENARIO, on="plant"))
        beats = (
            plant["cooling_kwh"] < baseline["cooling_kwh"]
            and plant["violation_kh_above_27"] <= baseline["violation_kh_above_27"] + 0.01
        )
        row = {
            "device": args.device,
            "n_envs": args.n_envs,
            "timesteps": agent.timesteps,
            "train_wall_s": round(agent.wall_s, 1),
            "train_steps_per_s": round(agent.timesteps / agent.wall_s),
            "final_mean_return": agent.final_mean_return,
            "plant": plant,
            "beats_trim_and_respond": beats,
            "since_start_s": round(time.perf_counter() - started, 1),
        }
        print(json.dumps(row), flush=True)
        rows.append(row)
        if args.out:
            payload = {"trim-and-respond": baseline, "rows": rows}
            Path(args.out).write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()

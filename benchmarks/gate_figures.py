"""Gate 1 on two candidates: a PPO agent trained without a thermal penalty (must be rejected)
and the MPC (the best policy on the plant; must pass), both against trim-and-respond as the
incumbent, on the pre-evaluation suite in the fitted twin.

    python benchmarks/gate_figures.py --twin out/bench/twin/twin

Trains the ablation agent once (``benchmarks/hyperparams/ppo-no-thermal-penalty.yaml``) into
``OUT/ppo-no-thermal-penalty`` and reuses it afterwards; the reservoir is made fresh under
``OUT/reservoir`` on every run. Prints both gate verdicts with their reasons, and evaluates
the ablation agent on the plant too, so the twin's verdict can be checked against the truth.
"""

from __future__ import annotations

import argparse
import logging
import shutil
from pathlib import Path

from control.catalog import agent_policy
from control.evaluation import evaluate
from control.preevaluation import pre_evaluate, register_builtin
from control.reservoir import Reservoir
from control.training import TrainConfig, train_agent
from twin.ensemble import TwinEnsemble

HERE = Path(__file__).resolve().parent
ABLATION_YAML = HERE / "hyperparams" / "ppo-no-thermal-penalty.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--twin", default="out/bench/twin/twin")
    parser.add_argument("--out", default="out/bench/gate")
    parser.add_argument("--timesteps", type=int, default=None, help="ablation agent's budget")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    out = Path(args.out)
    twin = TwinEnsemble.load(Path(args.twin))
    agent_dir = out / "ppo-no-thermal-penalty"
    if not (agent_dir / "model.zip").exists():
        overrides: dict[str, object] = {"twin": args.twin, "seed": 7}
        if args.timesteps:
            overrides["total_timesteps"] = args.timesteps
        config = TrainConfig.from_yaml("ppo", overrides=overrides, path=ABLATION_YAML)
        trained = train_agent(config, agent_dir)
        print(f"ablation agent: {trained.timesteps:,} steps in {trained.wall_s:.0f} s")
    shutil.rmtree(out / "reservoir", ignore_errors=True)
    with Reservoir(out / "reservoir") as reservoir:
        for name in ("trim-and-respond", "mpc"):
            register_builtin(reservoir, name, actor="benchmark")
        reservoir.register(
            "ppo-no-thermal-penalty",
            "drl",
            agent_dir,
            hyperparameters={"reward": {"violation_kwh_per_kh": 0.0}},
            training_scenarios=("tropical-typical-week", "twin-train-mild", "twin-fault-fouling"),
            description="PPO trained on cooling energy alone (ablation)",
            actor="benchmark",
        )
        for candidate in ("ppo-no-thermal-penalty", "mpc"):
            report = pre_evaluate(
                reservoir,
                candidate,
                "trim-and-respond",
                twin=twin,
                out_dir=out / f"gate-{candidate}",
                progress=True,
            )
            verdict = "PASSED" if report.passed else "REJECTED"
            print(
                f"gate 1 {candidate} vs trim-and-respond: {verdict}, "
                f"savings {report.savings_percent:.2f} %"
            )
            for reason in report.reasons:
                print(f"  - {reason}")
            print(f"  state now: {reservoir.get(candidate).state}")
    plant = evaluate(agent_policy(agent_dir), "holdout-typical-week", on="plant", progress=True)
    print(
        "ablation agent on the plant (holdout-typical-week): "
        f"{plant.kpis['violation_kh_above_27']:.1f} K·h above 27 °C, "
        f"max inlet {plant.kpis['max_inlet_c']:.1f} °C, cooling {plant.kpis['cooling_kwh']:.0f} kWh"
    )


if __name__ == "__main__":
    main()

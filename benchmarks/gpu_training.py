"""Throughput of the device-resident twin and of PPO on it: engine vs env vs learner.

For each number of environments, on CPU and on CUDA when a GPU is present (or on the
devices named), it times in env-steps per second:

* ``engine``: the twin's step alone (``DeviceTwin.step``, episodes reset as they end), one
  twin member, as ``benchmarks/twin_speed.py`` measures the engine;
* ``device_env``: ``TorchTwinVectorEnv.step`` (engine + observations with forecasts +
  reward + autoreset), one member;
* ``penalised_env``: the same with the training setup of ``control/hyperparams.yaml``'s PPO:
  an ensemble of ``--members`` twins, a member drawn per episode, the ensemble's spread and
  the travel penalty priced in the reward (the competence penalty needs a fitted twin:
  ``--twin``);
* ``learner``: the torch PPO on the penalised env (rollouts of ``--n-steps`` steps plus the
  yaml's epochs of minibatch updates, ``--minibatches`` per epoch), end to end; also its
  rollout part alone.

Twin: the drawings' physics with residual networks of the default size left untrained (same
compute as a fitted twin), or the saved twin ``--twin``. One JSON row per size and device is
printed and, with ``--out``, written as soon as it is measured.

    python benchmarks/gpu_training.py --devices cpu --sizes 64 1024 4096
    python benchmarks/gpu_training.py --devices cuda --sizes 4096 65536 262144 1048576 --out r.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from control.torch_ppo import PpoSettings, ScenarioMix, TorchPpo
from control.training import TrainConfig
from twin.design import TwinDesign
from twin.ensemble import TwinEnsemble
from twin.surrogate import PhysicsTwin
from twin.torch_vec_env import TorchTwinVectorEnv
from twin.vec_env import Randomisation

SCENARIO = "tropical-typical-week"


def _twin(path: str | None, members: int) -> TwinEnsemble:
    if path:
        return TwinEnsemble.load(Path(path))
    design = TwinDesign.for_variant("reference")
    return TwinEnsemble([PhysicsTwin(design) for _ in range(members)])


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _rate(fn: Callable[[], None], n_envs: int, seconds: float, device: torch.device) -> float:
    fn()  # warm up
    _sync(device)
    calls, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        fn()
        calls += 1
    _sync(device)
    return n_envs * calls / (time.perf_counter() - started)


def _env(n: int, device: str, twin: TwinEnsemble, config: TrainConfig | None) -> TorchTwinVectorEnv:
    extra: dict[str, Any] = {}
    if config is not None:
        extra = {
            "pessimism": config.pessimism_function(),
            "member_per_episode": config.member_per_episode,
            "reward": config.reward_function(),
        }
    env = TorchTwinVectorEnv(
        n,
        scenario=SCENARIO,
        twin=twin,
        episode_hours=24.0,
        randomisation=Randomisation(),
        device=device,
        seed=0,
        **extra,
    )
    env.reset(seed=0)
    return env


def measure(
    device: str,
    n: int,
    *,
    single: TwinEnsemble,
    ensemble: TwinEnsemble,
    seconds: float,
    n_steps: int,
    minibatches: int,
    updates: int,
) -> dict[str, Any]:
    dev = torch.device(device)
    row: dict[str, Any] = {"device": device, "num_envs": n}
    env = _env(n, device, single, None)
    sim = env.sim
    gen = torch.Generator(device=dev).manual_seed(0)
    actions = torch.rand(n, 5, generator=gen, device=dev) * 2.0 - 1.0

    def engine() -> None:
        sim.step(actions)
        ended = sim.ending()
        if ended is not None:
            sim.reset_envs(ended)
        _sync(dev)

    row["engine_steps_per_s"] = round(_rate(engine, n, seconds, dev))
    env.reset(seed=0)

    def env_step(e: TorchTwinVectorEnv = env) -> None:
        e.step(actions)
        _sync(dev)

    row["device_env_steps_per_s"] = round(_rate(env_step, n, seconds, dev))
    config = TrainConfig.from_yaml(
        "ppo",
        overrides={
            "n_envs": n,
            "n_steps": n_steps,
            "batch_size": max(1, n * n_steps // minibatches),
            "scenarios": [SCENARIO],
        },
    )
    penalised = _env(n, device, ensemble, config)

    def penalised_step(e: TorchTwinVectorEnv = penalised) -> None:
        e.step(actions)
        _sync(dev)

    row["penalised_env_steps_per_s"] = round(_rate(penalised_step, n, seconds, dev))
    settings = PpoSettings.from_config(config)
    ppo = TorchPpo(ScenarioMix([penalised]), settings, dev, seed=0)
    ppo.update(ppo.collect())  # warm up
    _sync(dev)
    rollout_s = update_s = 0.0
    for _ in range(updates):
        started = time.perf_counter()
        rollout = ppo.collect()
        _sync(dev)
        mid = time.perf_counter()
        ppo.update(rollout)
        _sync(dev)
        rollout_s += mid - started
        update_s += time.perf_counter() - mid
    steps = n * n_steps * updates
    row["learner_steps_per_s"] = round(steps / (rollout_s + update_s))
    row["learner_rollout_steps_per_s"] = round(steps / rollout_s)
    row["ppo"] = {
        "n_steps": n_steps,
        "batch_size": settings.batch_size,
        "n_epochs": settings.n_epochs,
        "members": len(ensemble),
        "pessimism": config.pessimism,
    }
    if dev.type == "cuda":
        row["max_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        torch.cuda.reset_peak_memory_stats()
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--twin", default=None, help="a saved twin's folder (penalised env)")
    parser.add_argument("--members", type=int, default=3, help="ensemble size without --twin")
    parser.add_argument("--devices", nargs="+", default=None, help="default: cpu, and cuda")
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 1024, 4096])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--n-steps", type=int, default=32, help="PPO rollout length")
    parser.add_argument("--minibatches", type=int, default=8, help="PPO minibatches per epoch")
    parser.add_argument("--updates", type=int, default=2, help="timed PPO iterations")
    parser.add_argument("--out", default=None, help="JSON file, rewritten after each row")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    devices = args.devices or ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]
    single = _twin(None, 1)
    ensemble = _twin(args.twin, args.members)
    result: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {platform.processor()}, torch {torch.__version__}, "
        f"{args.threads} threads",
        "gpu_name": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "twin": args.twin or f"drawings + untrained residuals ({args.members} members)",
        "rows": [],
    }
    for device in devices:
        for n in args.sizes:
            row = measure(
                device,
                n,
                single=single,
                ensemble=ensemble,
                seconds=args.seconds,
                n_steps=args.n_steps,
                minibatches=args.minibatches,
                updates=args.updates,
            )
            print(json.dumps(row), flush=True)
            result["rows"].append(row)
            if args.out:
                Path(args.out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

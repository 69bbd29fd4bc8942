"""Speed of the twin environments: batched env-steps per second and single-step latency.

For each batch size it times (a) the engine alone (``BatchedTwin.step``: the twin's physics
and residual networks), (b) the Gymnasium ``TwinVectorEnv.step`` (engine + observations +
reward + infos), (c) the SB3 ``TwinSB3VecEnv`` step (plus per-environment info dicts) and
(d) the device-resident ``TorchTwinVectorEnv.step`` (everything stays in torch tensors;
``benchmarks/gpu_training.py`` adds the PPO learner);
then the latency of one ``TwinEnv.step`` (p50 / p99 over many calls). CPU always, and CUDA
when a GPU is present. The twin is a fitted one when ``--twin`` names a saved twin (same
compute as the drawings' twin plus the residual networks), else the drawings' physics with
residual networks of the default size left untrained.

    python benchmarks/twin_speed.py [--threads 2] [--twin out/bench/twin/twin]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from datetime import UTC, datetime
from typing import Any

import numpy as np
import torch

from control.sb3_env import TwinSB3VecEnv
from twin.design import TwinDesign
from twin.ensemble import TwinEnsemble
from twin.surrogate import PhysicsTwin
from twin.torch_vec_env import TorchTwinVectorEnv
from twin.twin_env import TwinEnv
from twin.vec_env import Randomisation, TwinVectorEnv

SCENARIO = "tropical-typical-week"


def _twin(path: str | None) -> TwinEnsemble:
    if path:
        return TwinEnsemble.load(__import__("pathlib").Path(path))
    design = TwinDesign.for_variant("reference")
    return TwinEnsemble([PhysicsTwin(design)])


def _rate(fn: Any, n_envs: int, seconds: float) -> float:
    fn()  # warm up
    calls, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        fn()
        calls += 1
    return n_envs * calls / (time.perf_counter() - started)


def batched(
    device: str, sizes: list[int], twin: TwinEnsemble, seconds: float
) -> list[dict[str, Any]]:
    rows = []
    for n in sizes:
        vec = TwinVectorEnv(
            n,
            scenario=SCENARIO,
            twin=twin,
            episode_hours=24.0,
            randomisation=Randomisation(),
            device=device,
            seed=0,
        )
        vec.reset(seed=0)
        actions = np.random.default_rng(0).uniform(-1, 1, (n, 5)).astype(np.float32)
        engine_actions = torch.as_tensor(actions, device=vec.sim.device)

        def engine(v: TwinVectorEnv = vec, a: torch.Tensor = engine_actions) -> None:
            if bool(v.sim.truncated.any()):
                v.sim.reset_envs(torch.nonzero(v.sim.truncated).flatten())
            v.sim.step(a)
            if v.sim.device.type == "cuda":
                torch.cuda.synchronize()

        engine_rate = _rate(engine, n, seconds)
        vec.reset(seed=0)
        vector_rate = _rate(lambda v=vec, a=actions: v.step(a), n, seconds)
        sb3 = TwinSB3VecEnv(n, scenario=SCENARIO, twin=twin, episode_hours=24.0, device=device)
        sb3.reset()

        def sb3_step(env: TwinSB3VecEnv = sb3, a: np.ndarray = actions) -> None:
            env.step_async(a)
            env.step_wait()

        sb3_rate = _rate(sb3_step, n, seconds)
        device_env = TorchTwinVectorEnv(
            n,
            scenario=SCENARIO,
            twin=twin,
            episode_hours=24.0,
            randomisation=Randomisation(),
            device=device,
            seed=0,
        )
        device_env.reset(seed=0)

        def device_step(
            env: TorchTwinVectorEnv = device_env, a: torch.Tensor = engine_actions
        ) -> None:
            env.step(a)
            if env.device.type == "cuda":
                torch.cuda.synchronize()

        device_rate = _rate(device_step, n, seconds)
        row = {
            "device": device,
            "num_envs": n,
            "engine_steps_per_s": round(engine_rate),
            "vector_env_steps_per_s": round(vector_rate),
            "sb3_vec_env_steps_per_s": round(sb3_rate),
            "device_env_steps_per_s": round(device_rate),
        }
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def latency(twin: TwinEnsemble, calls: int, *, compile: bool) -> dict[str, float]:
    env = TwinEnv(SCENARIO, twin=twin, episode_hours=24.0 * 6, compile=compile)
    env.reset(seed=0)
    action = np.zeros(5, dtype=np.float32)
    for _ in range(50):
        env.step(action)
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        _, _, _, truncated, _ = env.step(action)
        times.append(time.perf_counter() - started)
        if truncated:
            env.reset()
    ms = np.asarray(times) * 1e3
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--twin", default=None, help="a saved twin's folder")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 64, 1024, 4096, 16384])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--latency-calls", type=int, default=2000)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    twin = _twin(args.twin)
    result: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {platform.processor()}, torch {torch.__version__}, "
        f"{args.threads} threads",
        "twin": args.twin or "drawings + untrained residuals",
        "cpu": batched("cpu", args.sizes, twin, args.seconds),
        "single_env_latency": latency(twin, args.latency_calls, compile=False),
        "single_env_latency_compiled": latency(twin, args.latency_calls, compile=True),
    }
    if torch.cuda.is_available():
        result["gpu_name"] = torch.cuda.get_device_name(0)
        result["cuda"] = batched("cuda", [*args.sizes, 65536, 262144], twin, args.seconds)
    else:
        result["cuda"] = "no GPU on this machine"
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

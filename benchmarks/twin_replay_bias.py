"""Why a twin's predicted savings miss the plant's: model error or the candidate's own
exploitation of the twin.

A candidate runs behind the site's shield on the plant, its actions are recorded, and then:
(a) the same candidate runs closed-loop in the twin (what gate 1 sees), (b) the recorded
plant actions are replayed open-loop in the twin (every member, same start). Plant minus
replay is the twin's error on the operation the candidate really chose; replay minus
closed-loop is what the candidate gains by operating differently in the twin than on the
plant (for an MPC planning with the same twin: the optimiser's curse).

    python benchmarks/twin_replay_bias.py --site-dir out/bench/gate-trust-i15/site-41 \\
        --scenario summer-2d --candidate mpc

``--site-dir`` is a site folder of ``benchmarks/gate_trust.py`` (its ``twin/`` and
``scenarios/``). Prints a JSON line: cooling kWh on the plant, in the twin closed-loop and
replayed, each relative gap, and the mean setpoints on the plant and in the twin.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from numpy.typing import NDArray

from control.catalog import builtin_factory
from control.evaluation import evaluate
from control.policy import Obs, Policy
from control.shielded import ShieldedPolicy
from physics.plant.scenario import Scenario, load_scenario
from physics.plant.site_control import SETPOINT_FIELDS
from twin.dataset import METER_NAMES, periods_from_frame
from twin.ensemble import TwinEnsemble
from twin.plant_env import PlantEnv
from twin.rollout import rollout, targets_along


class Recorder:
    """``inner``'s actions, kept in order (one environment)."""

    def __init__(self, inner: Policy) -> None:
        self.inner, self.name, self.kind = inner, inner.name, inner.kind
        self.actions: list[NDArray[np.float32]] = []

    def reset(self, n_envs: int = 1) -> None:
        self.inner.reset(n_envs)

    def act(self, observation: Obs) -> Obs:
        action = np.asarray(self.inner.act(observation), dtype=np.float32)
        self.actions.append(action[0].copy())
        return action


class Replay:
    """Recorded actions, the same for every environment, whatever it observes."""

    name, kind = "replay", "rule"

    def __init__(self, actions: list[NDArray[np.float32]]) -> None:
        self.actions, self.k = actions, 0

    def reset(self, n_envs: int = 1) -> None:
        self.k = 0

    def act(self, observation: Obs) -> Obs:
        action = self.actions[min(self.k, len(self.actions) - 1)]
        self.k += 1
        return np.tile(action, (np.atleast_2d(observation).shape[0], 1))


class ReadingsEnv(PlantEnv):
    """A plant environment that keeps its raw sensor readings (before the sensor check)."""

    def __init__(self, scenario: Scenario) -> None:
        super().__init__(scenario, record_log=True)
        self.readings: list[NDArray[np.float64]] = []

    def _checked(self, readings: NDArray[np.float64]) -> NDArray[np.float64]:
        self.readings.append(np.array(readings, copy=True))
        return super()._checked(readings)


def plant_recording(policy: Policy, sc: Scenario) -> pd.DataFrame:
    """``policy`` on the plant, as a recording frame: readings per plant step, ``time_h``
    and the commanded setpoints (``cmd.*``; the lead-in period under the site's control)."""
    env = ReadingsEnv(sc)
    obs, _ = env.reset(seed=0)
    policy.reset(1)
    commands: list[list[float]] = []
    truncated = False
    while not truncated:
        action = np.asarray(policy.act(obs[None, :]), dtype=np.float32)[0]
        obs, _, _, truncated, info = env.step(action)
        commands.append([float(info["setpoints"][n]) for n in SETPOINT_FIELDS])
    assert env.plant is not None
    per = env.steps_per_period
    frame = pd.DataFrame(np.concatenate(env.readings), columns=list(env.plant.point_names))
    frame.insert(0, "time_h", env.log_frame()["time_h"].to_numpy())
    cmd = np.full((len(frame), len(SETPOINT_FIELDS)), np.nan)
    cmd[per:] = np.repeat(np.asarray(commands), per, axis=0)[: len(frame) - per]
    for i, name in enumerate(SETPOINT_FIELDS):
        frame[f"cmd.{name}"] = cmd[:, i]
    return frame


@torch.no_grad()
def component_bias(twin: TwinEnsemble, frame: pd.DataFrame, sc: Scenario) -> dict[str, Any]:
    """One-step (period-mean) twin minus plant for every meter, on the plant's own
    operation, and how each chiller ran: where the twin's error on cooling comes from."""
    data = periods_from_frame(
        frame, twin.design, step_s=sc.step_s, control_period_s=sc.control_period_s
    )
    one = data.windows(1)
    predicted = rollout(twin, data, one, 1).meters[0].numpy()
    measured = targets_along(data, one, 1)[3][0].numpy()
    bias = {
        name: {
            "plant_kw": round(float(measured[:, i].mean()), 2),
            "twin_minus_plant_kw": round(float((predicted[:, i] - measured[:, i]).mean()), 2),
        }
        for i, name in enumerate(METER_NAMES)
    }
    units = sorted(c for c in frame.columns if c.startswith("chiller_power_kw."))
    running = {c: float((frame[c] > 1.0).mean()) for c in units}
    on = frame["chillers_on"].to_numpy(dtype=np.float64) if "chillers_on" in frame else None
    return {
        "one_step_bias": bias,
        "chiller_running_share": running,
        "chiller_mean_kw_when_running": {
            c: float(frame.loc[frame[c] > 1.0, c].mean()) if running[c] > 0 else 0.0 for c in units
        },
        "chillers_on_hist": (
            {str(k): float(np.mean(on == k)) for k in range(len(units) + 1)}
            if on is not None
            else {}
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--site-dir", type=Path, required=True)
    parser.add_argument("--scenario", default="summer-2d")
    parser.add_argument("--candidate", default="mpc", help="a built-in policy (default mpc)")
    parser.add_argument(
        "--components",
        action="store_true",
        help="also the twin's one-step error per meter on the plant run, and how the chillers ran",
    )
    args = parser.parse_args()
    twin = TwinEnsemble.load(args.site_dir / "twin", competence=False)
    matches = sorted((args.site_dir / "scenarios").glob(f"*-{args.scenario}.yaml"))
    if not matches:
        raise SystemExit(f"no scenario *-{args.scenario}.yaml in {args.site_dir / 'scenarios'}")
    sc = load_scenario(matches[0])
    make = builtin_factory(args.candidate, twin=twin)
    recorder = Recorder(ShieldedPolicy(make(sc), sc))
    plant = evaluate(recorder, sc, on="plant")
    closed = evaluate(ShieldedPolicy(make(sc), sc), sc, on="twin", twin=twin)
    replay = evaluate(Replay(recorder.actions), sc, on="twin", twin=twin)
    kwh = {r: float(x.kpis["cooling_kwh"]) for r, x in
           (("plant", plant), ("twin_closed", closed), ("twin_replay", replay))}  # fmt: skip
    sp = [c for c in plant.series.columns if c.startswith("sp.")]
    out: dict[str, Any] = {
        "site_dir": str(args.site_dir),
        "scenario": sc.name,
        "candidate": args.candidate,
        "cooling_kwh": kwh,
        "twin_error_pct": 100.0 * (kwh["twin_replay"] - kwh["plant"]) / kwh["plant"],
        "exploitation_pct": 100.0 * (kwh["twin_closed"] - kwh["twin_replay"]) / kwh["plant"],
        "mean_setpoints_plant": {c: float(plant.series[c].mean()) for c in sp},
        "mean_setpoints_twin": {
            c: float(closed.series[c].mean()) for c in sp if c in closed.series
        },
    }
    if args.components:
        frame = plant_recording(ShieldedPolicy(make(sc), sc), sc)
        out["components"] = component_bias(twin, frame, sc)
        commissioning = sorted((args.site_dir / "commissioning").glob("*.parquet"))
        if commissioning:
            out["commissioning_components"] = component_bias(
                twin, pd.read_parquet(commissioning[0]), sc
            )
    print(json.dumps(out))


if __name__ == "__main__":
    main()

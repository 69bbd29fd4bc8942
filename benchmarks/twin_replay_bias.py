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
from numpy.typing import NDArray

from control.catalog import builtin_factory
from control.evaluation import evaluate
from control.policy import Obs, Policy
from control.shielded import ShieldedPolicy
from physics.plant.scenario import load_scenario
from twin.ensemble import TwinEnsemble


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--site-dir", type=Path, required=True)
    parser.add_argument("--scenario", default="summer-2d")
    parser.add_argument("--candidate", default="mpc", help="a built-in policy (default mpc)")
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
    print(json.dumps(out))


if __name__ == "__main__":
    main()

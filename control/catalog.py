"""Policies by name: the built-in baselines and controllers, and trained agents on disk.

``policy_factory`` turns what a user types after ``--policy`` into a factory that makes the
policy for a scenario (an MPC needs the scenario's forecasts; the others ignore it): a
built-in name (``fixed-setpoints``, ``trim-and-respond``, ``mpc``, ``oracle-mpc``) or the
folder of a trained agent (``model.zip`` + ``training.json``, see ``control/training.py``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path

from control.baselines import FixedSetpoints, TrimAndRespond
from control.policy import Policy
from physics.plant.scenario import Scenario
from twin.ensemble import TwinEnsemble
from twinloop.errors import TwinLoopError

PolicyFactory = Callable[[Scenario], Policy]
"""Makes a policy for one scenario."""


class PolicyNotFoundError(TwinLoopError, ValueError):
    """A policy name or path that names no policy."""


BUILTIN_POLICIES: tuple[str, ...] = ("fixed-setpoints", "trim-and-respond", "mpc", "oracle-mpc")
RULE_POLICIES: dict[str, Callable[[], Policy]] = {
    "fixed-setpoints": FixedSetpoints,
    "trim-and-respond": TrimAndRespond,
}


def builtin_factory(name: str, *, twin: TwinEnsemble | None = None) -> PolicyFactory:
    """The factory of a built-in policy; the MPC runs on ``twin`` (None: the drawings)."""
    if name in RULE_POLICIES:
        make = RULE_POLICIES[name]
        return lambda scenario: make()
    if name in ("mpc", "oracle-mpc"):
        from control.mpc import MpcPolicy, OracleMpcPolicy

        if name == "mpc":
            return lambda scenario: MpcPolicy(twin=twin, scenario=scenario)
        return lambda scenario: OracleMpcPolicy(scenario)
    raise PolicyNotFoundError(
        f"unknown built-in policy {name!r} (known: {', '.join(BUILTIN_POLICIES)})"
    )


def agent_policy(folder: Path, name: str | None = None) -> Policy:
    """A trained agent's folder as a policy (SB3 is imported only when one is used)."""
    agents = importlib.import_module("control.agents")
    policy = agents.Sb3Policy.load(folder, name=name)
    if not isinstance(policy, Policy):
        raise PolicyNotFoundError(f"{folder}: the agent there is not a TwinLoop policy")
    return policy


def policy_factory(spec: str, *, twin: TwinEnsemble | None = None) -> PolicyFactory:
    """The factory ``spec`` names (see the module docstring)."""
    if spec in BUILTIN_POLICIES:
        return builtin_factory(spec, twin=twin)
    path = Path(spec)
    if (path / "model.zip").is_file():
        policy = agent_policy(path)
        return lambda scenario: policy
    raise PolicyNotFoundError(
        f"unknown policy {spec!r}: not a built-in ({', '.join(BUILTIN_POLICIES)}) nor a "
        "trained agent's folder (one with model.zip)"
    )

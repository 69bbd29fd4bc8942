"""Policies by name: the built-in baselines, controllers, and trained agents on disk.

``resolve_policy`` turns what a user types after ``--policy`` into a :class:`Policy`:
a built-in name (``fixed-setpoints``, ``trim-and-respond``), or the folder of a trained
agent (``model.zip`` + ``training.json``, see ``control/training.py``).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from pathlib import Path

from control.baselines import FixedSetpoints, TrimAndRespond
from control.policy import Policy

logger = logging.getLogger(__name__)


class PolicyNotFoundError(ValueError):
    """A policy name or path that names no policy."""


BUILTIN_POLICIES: dict[str, Callable[[], Policy]] = {
    "fixed-setpoints": FixedSetpoints,
    "trim-and-respond": TrimAndRespond,
}


def resolve_policy(spec: str) -> Policy:
    """The policy ``spec`` names (see the module docstring)."""
    if spec in BUILTIN_POLICIES:
        return BUILTIN_POLICIES[spec]()
    path = Path(spec)
    if (path / "model.zip").is_file():
        # Resolved at run time, so SB3 is imported only when an agent is evaluated.
        agents = importlib.import_module("control.agents")
        policy = agents.Sb3Policy.load(path)
        if not isinstance(policy, Policy):
            raise PolicyNotFoundError(f"{path}: the agent there is not a TwinLoop policy")
        return policy
    known = ", ".join(BUILTIN_POLICIES)
    raise PolicyNotFoundError(
        f"unknown policy {spec!r}: not a built-in ({known}) nor a trained agent's folder "
        "(one with model.zip)"
    )

"""Trained Stable-Baselines3 agents as reservoir policies.

:class:`Sb3Policy` wraps a PPO, SAC or TD3 model that :func:`control.training.train_agent`
wrote (``model.zip`` beside ``training.json``, which names the algorithm) and acts
deterministically: the mean of a stochastic policy, the actor's output of a deterministic one.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm

from control.policy import Obs
from control.training import ALGORITHMS, METADATA_FILE, MODEL_FILE

logger = logging.getLogger(__name__)


@dataclass
class Sb3Policy:
    """A trained SB3 model as a :class:`~control.policy.Policy` (``kind = "drl"``)."""

    model: BaseAlgorithm
    name: str
    algo: str
    metadata: dict[str, Any] = field(default_factory=dict)
    """``training.json`` of the run that trained the model (config, budget, versions)."""
    kind: str = "drl"

    @classmethod
    def load(cls, path: Path, name: str | None = None, *, device: str = "cpu") -> Sb3Policy:
        """The agent in ``path``: a training output directory or its ``model.zip``.

        The name defaults to ``<algo>-<directory name>``.
        """
        path = Path(path)
        directory = path if path.is_dir() else path.parent
        model_path = directory / MODEL_FILE if path.is_dir() else path
        metadata_path = directory / METADATA_FILE
        if not model_path.is_file():
            raise FileNotFoundError(f"no SB3 model at {model_path}")
        if not metadata_path.is_file():
            raise FileNotFoundError(
                f"no {METADATA_FILE} beside {model_path}: it names the model's algorithm"
            )
        metadata = json.loads(metadata_path.read_text(encoding="utf-8"))
        algo = str(metadata.get("algo", "")).lower()
        if algo not in ALGORITHMS:
            raise ValueError(
                f"{metadata_path}: algorithm {algo!r} is not one of {', '.join(ALGORITHMS)}"
            )
        model = ALGORITHMS[algo].load(model_path, device=device)
        logger.debug("loaded %s agent from %s", algo, model_path)
        return cls(
            model=model, name=name or f"{algo}-{directory.name}", algo=algo, metadata=metadata
        )

    def reset(self, n_envs: int = 1) -> None:
        return None  # feed-forward policies keep no state between periods

    def act(self, observation: Obs) -> Obs:
        obs = np.atleast_2d(np.asarray(observation, dtype=np.float32))
        expected = self.model.observation_space.shape
        if obs.shape[1:] != expected:
            raise ValueError(
                f"{self.name}: observations of shape {obs.shape[1:]}, the model takes {expected}"
            )
        actions, _ = self.model.predict(obs, deterministic=True)
        return np.asarray(actions, dtype=np.float32).reshape(obs.shape[0], -1)

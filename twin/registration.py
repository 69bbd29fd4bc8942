"""Registers TwinLoop's environments with Gymnasium under versioned ids.

Entry points are ``"module:Class"`` strings, so registering imports nothing heavy: the
environment's module is imported by :func:`gymnasium.make`. ``import twin`` registers them.
"""

from __future__ import annotations

import logging
from typing import Any

import gymnasium

logger = logging.getLogger(__name__)

ENV_SPECS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("TwinLoop/DataCenter-v0", "twin.twin_env:TwinEnv", {}),
    ("TwinLoop/DataCenterPlant-v0", "twin.plant_env:PlantEnv", {}),
)

VECTOR_ENTRY_POINTS: dict[str, str] = {"TwinLoop/DataCenter-v0": "twin.vec_env:TwinVectorEnv"}
"""Ids with a native batched implementation for ``gymnasium.make_vec``."""
"""(id, entry point, default constructor kwargs) of every environment TwinLoop provides."""


def register_envs() -> None:
    """Register every environment of :data:`ENV_SPECS` not yet in Gymnasium's registry.

    The environments end their episodes themselves (truncation), so no ``TimeLimit`` wrapper
    is added.
    """
    for env_id, entry_point, kwargs in ENV_SPECS:
        if env_id in gymnasium.registry:
            continue
        gymnasium.register(
            id=env_id,
            entry_point=entry_point,
            vector_entry_point=VECTOR_ENTRY_POINTS.get(env_id),
            max_episode_steps=None,
            kwargs=dict(kwargs),
        )
        logger.debug("registered %s -> %s", env_id, entry_point)

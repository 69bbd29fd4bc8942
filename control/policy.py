"""What every policy in the reservoir is: a map from observations to scaled actions.

Policies see the observation every TwinLoop environment gives (``twin/spaces.py``) and
answer with actions in [-1, 1] (the setpoints, scaled), one row per environment, so the same
policy runs in the twin, in the batched twin, on the plant and live (``control/live.py``).
Rule baselines read physical values back out of the observation with
:func:`decode_observation`.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from twin.spaces import ObservationSpec

FloatArray = NDArray[np.float64]
Obs = NDArray[np.float32]


@runtime_checkable
class Policy(Protocol):
    """A control policy: ``act`` maps observations (N, obs) to actions (N, 5) in [-1, 1]."""

    name: str
    kind: str
    """"rule", "drl", "mpc" or "oracle" (the reservoir's kinds)."""

    def reset(self, n_envs: int = 1) -> None:
        """Forget any internal state; the next ``act`` starts an episode in ``n_envs`` envs."""
        ...

    def act(self, observation: Obs) -> Obs:
        """Actions for a batch of observations."""
        ...


def decode_observation(spec: ObservationSpec, observation: Obs) -> dict[str, FloatArray]:
    """Physical values (°C, kW, fractions …) of each named observation component, (N,) each.

    Inverse of the scaling in :func:`twin.spaces.build_observation`; components that were
    missing (observation 0) decode to their centre value.
    """
    obs = np.atleast_2d(np.asarray(observation, dtype=np.float64))
    if obs.shape[1] != spec.size:
        raise ValueError(f"observation has {obs.shape[1]} components, the spec {spec.size}")
    centre, scale = spec.centre_scale()
    values = obs * scale + centre
    return {name: values[:, i] for i, name in enumerate(spec.names)}


def pods_of(decoded: dict[str, FloatArray], prefix: str) -> FloatArray:
    """The per-pod components ``<prefix>.<pod>`` stacked as (N, pods)."""
    keys = sorted(
        (k for k in decoded if k.startswith(prefix + ".")), key=lambda k: int(k.split(".")[1])
    )
    if not keys:
        raise KeyError(f"no observation component starts with {prefix!r}")
    return np.stack([decoded[k] for k in keys], axis=1)

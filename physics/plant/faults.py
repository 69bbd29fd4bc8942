"""Scheduled equipment, sensor and workload faults, and what they do to the plant.

A :class:`FaultEvent` is active on ``[start_h, start_h + duration_h)`` (forever when
``duration_h`` is None). :class:`FaultSchedule` turns the events active at a time into
:class:`FaultEffects`, the multipliers and flags the plant applies, recomputed only when the
set of active events changes.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
from numpy.typing import NDArray

logger = logging.getLogger(__name__)

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]

FaultKind = Literal[
    "coil_fouling",
    "chiller_trip",
    "condenser_fouling",
    "tower_fan_failure",
    "crah_fan_trip",
    "stuck_valve",
    "containment_door_open",
    "pump_wear",
    "sensor_bias",
    "sensor_stuck",
    "workload_surge",
]
FAULT_KINDS: tuple[str, ...] = get_args(FaultKind)

DEFAULT_MAGNITUDE: dict[str, float] = {
    "coil_fouling": 0.3,  # fraction of coil UA lost
    "chiller_trip": 1.0,  # unused
    "condenser_fouling": 3.0,  # K of extra condensing lift
    "tower_fan_failure": 1.0,  # fraction of tower fan capacity lost
    "crah_fan_trip": 1.0,  # unused
    "stuck_valve": 0.3,  # valve position it sticks at
    "containment_door_open": 0.15,  # extra hot-aisle recirculation fraction in the pod
    "pump_wear": 0.2,  # fraction of pump efficiency lost
    "sensor_bias": 1.0,  # bias in the point's unit
    "sensor_stuck": 0.0,  # unused: the value freezes at onset
    "workload_surge": 0.3,  # utilisation added
}

_NEEDS_POINT = frozenset({"sensor_bias", "sensor_stuck"})
ALL_UNITS = "all"
"""The target that names every unit or pod, as an omitted target does, for the kinds in
:data:`ALL_BY_DEFAULT`."""
ALL_BY_DEFAULT = frozenset(
    {"coil_fouling", "condenser_fouling", "containment_door_open", "workload_surge"}
)
"""Kinds that act on every unit or pod when no target is given (the other unit faults act
on unit 0 alone, or have no target)."""


@dataclass(frozen=True)
class FaultEvent:
    """One fault: what, when, how strong, and on which unit/pod/point. A target of
    ``"all"`` is stored as None (every unit or pod) for the kinds that allow it."""

    kind: str
    start_h: float
    duration_h: float | None = None
    magnitude: float | None = None
    target: int | str | None = None

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r} (known: {', '.join(FAULT_KINDS)})")
        if self.start_h < 0:
            raise ValueError(f"fault {self.kind}: start_h must not be negative")
        if self.duration_h is not None and self.duration_h <= 0:
            raise ValueError(f"fault {self.kind}: duration_h must be positive")
        if self.kind in ALL_BY_DEFAULT and self.target == ALL_UNITS:
            object.__setattr__(self, "target", None)
        if self.kind in _NEEDS_POINT and not isinstance(self.target, str):
            raise ValueError(f"fault {self.kind}: target must name a sensor point")
        if self.kind not in _NEEDS_POINT and isinstance(self.target, str):
            also = f" or {ALL_UNITS!r}" if self.kind in ALL_BY_DEFAULT else ""
            raise ValueError(f"fault {self.kind}: target must be a unit/pod index{also}")

    @property
    def strength(self) -> float:
        return DEFAULT_MAGNITUDE[self.kind] if self.magnitude is None else self.magnitude

    def active(self, time_h: float) -> bool:
        if time_h < self.start_h:
            return False
        return self.duration_h is None or time_h < self.start_h + self.duration_h


@dataclass(frozen=True)
class FaultEffects:
    """What the active faults do, as arrays that broadcast over sites."""

    crah_ua_mult: FloatArray
    crah_running: BoolArray
    crah_stuck_valve: FloatArray  # NaN where the valve is free
    chiller_tripped: BoolArray
    condenser_lift_k: FloatArray
    tower_fan_max_frac: float
    pod_extra_recirc: FloatArray
    pump_efficiency_mult: float
    util_delta: FloatArray
    sensor_bias: dict[str, float]
    sensor_stuck: frozenset[str]


def _units(target: int | str | None, n: int, kind: str) -> list[int]:
    if target is None:
        return list(range(n))
    index = int(target)
    if not 0 <= index < n:
        raise ValueError(f"fault {kind}: target {index} out of range 0..{n - 1}")
    return [index]


class FaultSchedule:
    """The scenario's faults for a site with the given equipment counts."""

    def __init__(
        self, events: Sequence[FaultEvent], *, n_crah: int, n_chillers: int, n_pods: int
    ) -> None:
        self.events = tuple(sorted(events, key=lambda e: e.start_h))
        self._n_crah, self._n_chillers, self._n_pods = n_crah, n_chillers, n_pods
        self._cache: dict[tuple[bool, ...], FaultEffects] = {}
        default_targets = {"chiller_trip": 0, "crah_fan_trip": 0, "stuck_valve": 0}
        for event in self.events:  # validate targets up front: a bad index fails at load
            target = event.target
            if target is None:
                target = default_targets.get(event.kind)
            counts = {
                "coil_fouling": n_crah,
                "crah_fan_trip": n_crah,
                "stuck_valve": n_crah,
                "chiller_trip": n_chillers,
                "condenser_fouling": n_chillers,
                "containment_door_open": n_pods,
                "workload_surge": n_pods,
            }
            if event.kind in counts and target is not None:
                _units(target, counts[event.kind], event.kind)

    def effects_at(self, time_h: float) -> FaultEffects:
        key = tuple(e.active(time_h) for e in self.events)
        cached = self._cache.get(key)
        if cached is None:
            cached = self._build([e for e, on in zip(self.events, key, strict=True) if on])
            self._cache[key] = cached
            if any(key):
                logger.debug("active faults at %.2f h: %s", time_h, [e.kind for e in self.events])
        return cached

    def _build(self, active: Sequence[FaultEvent]) -> FaultEffects:
        ua = np.ones(self._n_crah)
        running = np.ones(self._n_crah, dtype=bool)
        stuck = np.full(self._n_crah, np.nan)
        tripped = np.zeros(self._n_chillers, dtype=bool)
        lift = np.zeros(self._n_chillers)
        tower_max, pump_eff = 1.0, 1.0
        door = np.zeros(self._n_pods)
        surge = np.zeros(self._n_pods)
        bias: dict[str, float] = {}
        stuck_points: set[str] = set()
        for e in active:
            k, m = e.kind, e.strength
            if k == "coil_fouling":
                ua[_units(e.target, self._n_crah, k)] *= 1.0 - m
            elif k == "crah_fan_trip":
                running[_units(e.target if e.target is not None else 0, self._n_crah, k)] = False
            elif k == "stuck_valve":
                stuck[_units(e.target if e.target is not None else 0, self._n_crah, k)] = m
            elif k == "chiller_trip":
                tripped[_units(e.target if e.target is not None else 0, self._n_chillers, k)] = True
            elif k == "condenser_fouling":
                lift[_units(e.target, self._n_chillers, k)] += m
            elif k == "tower_fan_failure":
                tower_max = min(tower_max, max(1.0 - m, 0.0))
            elif k == "containment_door_open":
                door[_units(e.target, self._n_pods, k)] += m
            elif k == "pump_wear":
                pump_eff *= max(1.0 - m, 0.05)
            elif k == "workload_surge":
                surge[_units(e.target, self._n_pods, k)] += m
            elif k == "sensor_bias":
                bias[str(e.target)] = bias.get(str(e.target), 0.0) + m
            elif k == "sensor_stuck":
                stuck_points.add(str(e.target))
        return FaultEffects(
            crah_ua_mult=np.clip(ua, 0.05, None),
            crah_running=running,
            crah_stuck_valve=np.clip(stuck, 0.0, 1.0),
            chiller_tripped=tripped,
            condenser_lift_k=lift,
            tower_fan_max_frac=tower_max,
            pod_extra_recirc=np.clip(door, 0.0, 0.6),
            pump_efficiency_mult=pump_eff,
            util_delta=surge,
            sensor_bias=bias,
            sensor_stuck=frozenset(stuck_points),
        )

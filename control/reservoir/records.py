"""What the reservoir stores and how its input is checked: the policy kinds and states, the
records a reader gets back (a policy version, an evaluation, a history row), the error every
refused request raises, and the checks that turn a caller's values into stored ones."""

from __future__ import annotations

import json
import math
import numbers
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from twinloop.errors import TwinLoopError

PolicyKind = Literal["rule", "drl", "mpc", "oracle"]
PolicyState = Literal[
    "candidate",
    "pre_evaluated",
    "approved",
    "shadow",
    "live",
    "standby",
    "retired",
    "rejected",
    "rolled_back",
]
EvaluatedOn = Literal["twin", "plant"]

KINDS: tuple[PolicyKind, ...] = get_args(PolicyKind)
STATES: tuple[PolicyState, ...] = get_args(PolicyState)
EVALUATED_ON: tuple[EvaluatedOn, ...] = get_args(EvaluatedOn)

KEY_KPIS: tuple[str, ...] = ("cooling_kwh", "pue", "violation_kh_above_27", "max_inlet_c")
"""KPIs that lead a comparison table, in this order; any others follow alphabetically."""

_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}")
_REF = re.compile(r"(?P<name>[^@]+)@(?P<version>[0-9]+)")


class ReservoirError(TwinLoopError, ValueError):
    """A request the reservoir refuses; the message names the policy and the problem."""


@dataclass(frozen=True)
class PolicyRecord:
    """One registered version of a policy, as stored."""

    name: str
    version: int
    kind: PolicyKind
    state: PolicyState
    artifact_hash: str
    """SHA-256 (hex) of the artifact, or of the canonical JSON hyper-parameters if none."""
    artifact: str | None
    """Path of the stored artifact relative to the reservoir's root; None for none."""
    hyperparameters: Mapping[str, Any]
    training_scenarios: tuple[str, ...]
    parent: str | None
    """``name@version`` of the policy this one was derived from."""
    description: str
    created_at: str

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ReservoirError(f"policy {self.ref}: unknown kind {self.kind!r}")
        if self.state not in STATES:
            raise ReservoirError(f"policy {self.ref}: unknown state {self.state!r}")

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"


@dataclass(frozen=True)
class EvaluationRecord:
    """KPIs of one policy version on one scenario, in the twin or on the plant."""

    id: int
    policy: str
    on: EvaluatedOn
    scenario: str
    kpis: Mapping[str, float]
    report_dir: Path | None
    """The reservoir's copy of the report folder, if one was given."""
    created_at: str

    def __post_init__(self) -> None:
        if self.on not in EVALUATED_ON:
            raise ReservoirError(f"evaluation {self.id}: 'on' is {self.on!r}, not twin or plant")


@dataclass(frozen=True)
class HistoryRecord:
    """One row of the append-only history: a registration or a change of state."""

    id: int
    policy: str
    event: Literal["registered", "transition"]
    from_state: PolicyState | None
    to_state: PolicyState
    actor: str
    reason: str
    at: str
    """UTC, ISO 8601."""
    artifact_hash: str | None
    """The artifact's hash recomputed at that moment; None if the artifact was missing."""
    row_hash: str | None = field(default=None, compare=False)
    """This row's link in the history's hash chain (see :mod:`control.reservoir.chain`)."""


@dataclass(frozen=True)
class AccessRecord:
    """One attempt to act at the gate: who (as authenticated, or the name given when the
    attempt was refused), what, how they proved it, and whether they were let in."""

    id: int
    at: str
    user: str
    action: str
    policy: str | None
    method: str
    """``password`` or ``token``."""
    outcome: Literal["granted", "refused"]
    detail: str


def canonical_json(value: Any) -> str:
    """Sorted keys, no spaces, strict JSON (no NaN): the form that is stored and hashed."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


def ordered_kpis(names: Iterable[str]) -> list[str]:
    """KPI names for a table: :data:`KEY_KPIS` first, in their order, then the rest sorted."""
    present = set(names)
    return [k for k in KEY_KPIS if k in present] + sorted(present - set(KEY_KPIS))


# --------------------------------------------------------------------------- input checks
def check_name(name: str) -> None:
    """Refuse a policy name that is not 1-100 letters, digits, '-', '_' or '.'."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ReservoirError(
            f"bad policy name {name!r}: use 1-100 letters, digits, '-', '_' or '.', "
            "starting with a letter, digit or '_'"
        )


def check_kind(kind: str) -> PolicyKind:
    """``kind`` as a :data:`PolicyKind`, or :class:`ReservoirError`."""
    if kind not in KINDS:
        raise ReservoirError(f"unknown policy kind {kind!r} (known: {', '.join(KINDS)})")
    return kind


def check_state(state: str) -> PolicyState:
    """``state`` as a :data:`PolicyState`, or :class:`ReservoirError`."""
    if state not in STATES:
        raise ReservoirError(f"unknown policy state {state!r} (known: {', '.join(STATES)})")
    return state


def check_on(on: str) -> EvaluatedOn:
    """``on`` as an :data:`EvaluatedOn` (twin or plant), or :class:`ReservoirError`."""
    if on not in EVALUATED_ON:
        raise ReservoirError(f"unknown evaluation target {on!r} (known: twin, plant)")
    return on


def check_text(what: str, value: str) -> str:
    """``value`` stripped; :class:`ReservoirError` naming ``what`` if it is empty."""
    if not isinstance(value, str) or not value.strip():
        raise ReservoirError(f"{what} must be a non-empty text")
    return value.strip()


def parse_ref(ref: str) -> tuple[str, int | None]:
    """``name`` → (name, None); ``name@3`` → (name, 3)."""
    match = _REF.fullmatch(ref) if isinstance(ref, str) else None
    name, version = (match["name"], int(match["version"])) if match else (ref, None)
    if isinstance(ref, str) and "@" in ref and match is None:
        raise ReservoirError(f"bad policy reference {ref!r}: use NAME or NAME@VERSION")
    check_name(name)
    if version is not None and not 1 <= version < 2**63:
        raise ReservoirError(
            f"bad policy reference {ref[:80]!r}: versions start at 1 and are below 2^63"
        )
    return name, version


def check_kpis(kpis: Mapping[str, float]) -> dict[str, float]:
    """The KPIs as floats: named by non-empty texts, finite numbers, at least one."""
    out: dict[str, float] = {}
    for key, value in kpis.items():
        if not isinstance(key, str) or not key:
            raise ReservoirError(f"KPI names must be non-empty texts, got {key!r}")
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ReservoirError(f"KPI {key!r}: {value!r} is not a number")
        if not math.isfinite(value):
            raise ReservoirError(f"KPI {key!r}: {value!r} is not finite; leave it out")
        out[key] = float(value)
    if not out:
        raise ReservoirError("an evaluation needs at least one KPI")
    return out

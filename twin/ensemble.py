"""An ensemble of surrogates: the twin's prediction and its per-prediction spread.

Members are trained from different seeds and bootstrap resamples of the windows
(``twin/training.py``); their disagreement is the epistemic uncertainty the gate and the
shield read. Saved as one ``.pt`` file (state dicts) plus a JSON card (model kind, design,
step, training summary) so a saved twin can be inspected without torch.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

import torch
from torch import Tensor, nn

from twin.competence import CompetenceModel
from twin.dataset import METER_NAMES
from twin.design import TwinDesign
from twin.model import MODEL_KINDS, ModelKind, TwinModel, make_twin, model_kind
from twin.surrogate import TwinInputs, TwinState, TwinStep
from twinloop.errors import TwinLoopError

MODEL_FILE = "twin.pt"
CARD_FILE = "twin.json"


class TwinLoadError(TwinLoopError, ValueError):
    """A saved twin that cannot be loaded; the message names the file and the problem."""


def meters_of(step: TwinStep) -> Tensor:
    """Predicted mean meter readings (N, len(METER_NAMES)) in METER_NAMES order."""
    return torch.stack(
        [
            step.crah_fan_kw,
            step.chiller_kw,
            step.chw_pump_kw,
            step.cw_pump_kw,
            step.tower_fan_kw,
            step.cooling_kw,
            step.facility_kw,
            step.chw_flow_kg_s,
            step.valve_frac,
        ],
        dim=-1,
    )


@dataclass(frozen=True)
class EnsembleStep:
    """Ensemble mean of the members' steps plus the spread of key outputs (std over members)."""

    mean: TwinStep
    members: tuple[TwinStep, ...]
    rack_inlet_std_c: Tensor  # (N, P, R)
    cooling_std_kw: Tensor  # (N,)


class TwinEnsemble(nn.Module):
    """Several twin members (:class:`~twin.model.TwinModel`, all of one kind) of one design
    and step."""

    def __init__(self, members: Sequence[TwinModel]):
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        steps = {m.step_s for m in members}
        if len(steps) != 1:
            raise ValueError(f"members step at different periods: {sorted(steps)}")
        kinds = {model_kind(m) for m in members}
        if len(kinds) != 1:
            raise ValueError(f"members of different kinds: {sorted(kinds)}")
        modules = [m for m in members if isinstance(m, nn.Module)]  # every known kind is one
        self.kind: ModelKind = kinds.pop()
        self.members = nn.ModuleList(modules)
        self.summary: dict[str, Any] = {}
        self.competence: CompetenceModel | None = None
        """Where the twin can be believed (:mod:`twin.competence`), saved beside it."""

    @property
    def first(self) -> TwinModel:
        return self.member(0)

    @property
    def design(self) -> TwinDesign:
        return self.first.design

    @property
    def step_s(self) -> float:
        return self.first.step_s

    def __len__(self) -> int:
        return len(self.members)

    def member(self, i: int) -> TwinModel:
        return cast(TwinModel, self.members[i])  # checked by model_kind on construction

    def step(self, state: TwinState, inputs: TwinInputs, theta: Tensor) -> EnsembleStep:
        """Every member from the same state; the mean step and the spread."""
        steps = tuple(self.member(i)(state, inputs, theta) for i in range(len(self)))
        if len(steps) == 1:
            zero_inlet = torch.zeros_like(steps[0].state.rack_inlet_c)
            return EnsembleStep(steps[0], steps, zero_inlet, torch.zeros_like(steps[0].cooling_kw))
        mean = _mean_step(steps)
        inlets = torch.stack([s.state.rack_inlet_c for s in steps])
        cooling = torch.stack([s.cooling_kw for s in steps])
        return EnsembleStep(mean, steps, inlets.std(dim=0), cooling.std(dim=0))

    # ------------------------------------------------------------------ persistence
    def save(self, out_dir: Path) -> list[Path]:
        out_dir.mkdir(parents=True, exist_ok=True)
        model_path, card_path = out_dir / MODEL_FILE, out_dir / CARD_FILE
        torch.save([m.state_dict() for m in self.members], model_path)
        card = {
            "kind": "twinloop.physics_twin_ensemble",
            "version": 1,
            "site": self.design.site_name,
            "step_s": self.step_s,
            "model": self.kind,
            "members": len(self),
            "residual_hidden": self.first.residual_hidden,
            "meters": list(METER_NAMES),
            "summary": self.summary,
            "design": _jsonable(asdict(self.design)),
        }
        card_path.write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
        paths = [model_path, card_path]
        if self.competence is not None:
            paths.append(self.competence.save(out_dir))
        return paths

    @classmethod
    def load(cls, twin_dir: Path, *, competence: bool = True) -> TwinEnsemble:
        """The twin saved in ``twin_dir`` with its competence model (``competence=False``
        leaves it out: what rebuilding one needs, when the saved one is outdated)."""
        card_path, model_path = twin_dir / CARD_FILE, twin_dir / MODEL_FILE
        if not card_path.is_file() or not model_path.is_file():
            raise TwinLoadError(
                f"{twin_dir}: no saved twin here (expected {CARD_FILE} and {MODEL_FILE}; "
                "make one with `twinloop twin fit`)"
            )
        try:
            card = json.loads(card_path.read_text(encoding="utf-8"))
            design = TwinDesign.for_variant(str(card["site"]))
            kind = card.get("model", "physics")  # cards before the neural twin: physics
            if kind not in MODEL_KINDS:
                raise ValueError(f"unknown model {kind!r} (known: {', '.join(MODEL_KINDS)})")
            states = torch.load(model_path, map_location="cpu", weights_only=True)
            members = []
            for state in states:
                twin = make_twin(
                    kind,
                    design,
                    step_s=float(card["step_s"]),
                    hidden=int(card["residual_hidden"]),
                )
                twin.load_state_dict(state)
                members.append(twin)
        except (KeyError, ValueError, RuntimeError, json.JSONDecodeError) as exc:
            raise TwinLoadError(f"{twin_dir}: cannot load the saved twin: {exc}") from exc
        ensemble = cls(members)
        ensemble.summary = dict(card.get("summary", {}))
        if not competence:
            return ensemble
        try:
            ensemble.competence = CompetenceModel.load(twin_dir)
        except ValueError as exc:
            raise TwinLoadError(str(exc)) from exc
        return ensemble


def _mean_step(steps: Sequence[TwinStep]) -> TwinStep:
    def avg(get: Any) -> Tensor:
        return torch.stack([get(s) for s in steps]).mean(dim=0)

    state_fields = TwinState.__dataclass_fields__
    state = TwinState(**{name: avg(lambda s, n=name: getattr(s.state, n)) for name in state_fields})
    others = {
        name: avg(lambda s, n=name: getattr(s, n))
        for name in TwinStep.__dataclass_fields__
        if name != "state"
    }
    return TwinStep(state=state, **others)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value

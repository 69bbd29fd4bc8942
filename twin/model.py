"""What fitting, rollouts and the ensemble need of a twin model, and the kinds there are.

Two kinds speak this interface: :class:`~twin.surrogate.PhysicsTwin` (reduced physics plus
small bounded residual networks) and :class:`~twin.neural.NeuralTwin` (a plain network of
about the same size, the baseline the physics has to beat). Both advance a batch of twins by
one control period from readings, inputs and ``theta``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal, Protocol, get_args

import torch
from torch import Tensor, nn

from twin.design import TwinDesign
from twin.neural import NeuralTwin
from twin.surrogate import PhysicsTwin, TwinInputs, TwinState, TwinStep

ModelKind = Literal["physics", "neural"]
MODEL_KINDS: tuple[ModelKind, ...] = get_args(ModelKind)


class TwinModel(Protocol):
    """A twin that :func:`twin.training.fit_member`, :func:`twin.rollout.rollout` and
    :class:`twin.ensemble.TwinEnsemble` can work with (an ``nn.Module`` in practice)."""

    @property
    def design(self) -> TwinDesign: ...

    @property
    def step_s(self) -> float: ...

    @property
    def residual_hidden(self) -> int: ...

    def __call__(self, state: TwinState, inputs: TwinInputs, theta: Tensor) -> TwinStep: ...

    def state_from_readings(
        self,
        rack_inlet_c: Tensor,
        hot_aisle_c: Tensor,
        supply_air_c: Tensor,
        return_air_c: Tensor,
        chw_supply_c: Tensor,
        chw_return_c: Tensor,
        cw_supply_c: Tensor,
    ) -> TwinState: ...

    def nominal_theta(self, n: int, device: torch.device | None = None) -> Tensor: ...

    def named_parameters(self) -> Iterator[tuple[str, nn.Parameter]]: ...

    def parameters(self) -> Iterator[nn.Parameter]: ...


def make_twin(
    kind: ModelKind, design: TwinDesign, *, step_s: float = 300.0, hidden: int = 64
) -> PhysicsTwin | NeuralTwin:
    """A fresh twin of ``kind``; ``hidden`` is the residual width (physics) or the hidden
    width (neural)."""
    if kind == "physics":
        return PhysicsTwin(design, step_s=step_s, residual_hidden=hidden)
    if kind == "neural":
        return NeuralTwin(design, step_s=step_s, hidden=hidden)
    raise ValueError(f"unknown twin model kind {kind!r} (known: {', '.join(MODEL_KINDS)})")


def model_kind(model: TwinModel) -> ModelKind:
    """Which kind ``model`` is."""
    if isinstance(model, PhysicsTwin):
        return "physics"
    if isinstance(model, NeuralTwin):
        return "neural"
    raise TypeError(f"not a twin model kind TwinLoop knows: {type(model).__name__}")


def parameter_count(model: TwinModel) -> int:
    return sum(p.numel() for p in model.parameters())

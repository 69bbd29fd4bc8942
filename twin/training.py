"""Fitting the twin from recorded sensor data (how good it is: ``twin/accuracy.py``).

Each member is trained on windows of consecutive control periods: the window's first reading
sets the state, then the member rolls out open loop for ``horizon`` periods under the
recorded setpoints, IT power and weather, and every predicted reading and meter is compared
with what was measured (a Huber loss on errors scaled by each point's noise). Two physics
terms join the loss: the residual corrections are penalised, so the reduced physics explains
all it can and the twin extrapolates on physics, and the room's energy balance (coil heat =
heat released into the air minus what the room stored) must close. The same loop fits the
pure-network baseline (``fit_twin(..., kind="neural")``, :class:`~twin.neural.NeuralTwin`),
for which both physics terms are zero.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn
from tqdm import tqdm

from twin.assimilation import observation_std_from
from twin.competence import CompetenceModel
from twin.dataset import PeriodData
from twin.design import TwinDesign
from twin.ensemble import TwinEnsemble
from twin.model import ModelKind, TwinModel, make_twin, parameter_count
from twin.neural import NeuralTwin, matched_hidden
from twin.rollout import rollout, targets_along
from twin.surrogate import PhysicsTwin

logger = logging.getLogger(__name__)

HALL_SCALE_C = (0.2, 0.3, 0.2, 0.3, 0.3)
"""Error scales of supply air, return air, CHW supply/return and CW supply, K."""
METER_SCALE = (1.0, 6.0, 0.5, 1.0, 0.5, 6.0, 10.0, 1.0, 0.02)
"""Error scales of the meters in METER_NAMES order (kW, kg/s)."""


@dataclass(frozen=True)
class FitConfig:
    """Training budget and loss weights."""

    ensemble_size: int = 3
    iterations: int = 500
    horizon: int = 12
    batch_windows: int = 96
    lr_physics: float = 0.02
    lr_residual: float = 2e-3
    lr_network: float = 3e-3
    """Learning rate of every parameter of a :class:`~twin.neural.NeuralTwin`."""
    residual_hidden: int = 64
    network_hidden: int = 0
    """Hidden width of a NeuralTwin; 0: the width matching a PhysicsTwin's parameter count
    at ``residual_hidden``."""
    residual_weight: float = 0.02
    balance_weight: float = 0.02
    bootstrap: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("ensemble_size", "iterations", "horizon", "batch_windows"):
            if getattr(self, name) < 1:
                raise ValueError(f"FitConfig.{name} must be at least 1")
        if self.network_hidden < 0:
            raise ValueError("FitConfig.network_hidden must not be negative")


def rollout_loss(
    model: TwinModel, data: PeriodData, starts: Tensor, cfg: FitConfig
) -> tuple[Tensor, dict[str, float]]:
    pred = rollout(model, data, starts, cfg.horizon)
    inlet, hot, hall, meters, it_kw = targets_along(data, starts, cfg.horizon)
    huber = nn.functional.huber_loss
    hall_scale = torch.tensor(HALL_SCALE_C)
    meter_scale = torch.tensor(METER_SCALE)
    terms = {
        "inlet": huber(pred.rack_inlet_c / 0.15, inlet / 0.15),
        "hot_aisle": huber(pred.hot_aisle_c / 0.3, hot / 0.3),
        "hall": huber(pred.hall / hall_scale, hall / hall_scale),
        "meters": huber(pred.meters / meter_scale, meters / meter_scale),
        "residual": cfg.residual_weight * pred.residual_sq.mean(),
        "balance": cfg.balance_weight * ((pred.imbalance / (0.02 * it_kw)) ** 2).mean(),
    }
    total = sum(terms.values(), torch.zeros(()))
    return total, {k: float(v.detach()) for k, v in terms.items()}


def fit_member(
    model: TwinModel,
    data: PeriodData,
    cfg: FitConfig,
    *,
    seed: int,
    on_iteration: Callable[[int, float], None] | None = None,
) -> list[float]:
    """Train one member in place; the loss per iteration."""
    gen = torch.Generator().manual_seed(seed)
    starts_all = data.windows(cfg.horizon)
    if starts_all.numel() == 0:
        raise ValueError(
            f"no window of {cfg.horizon + 1} consecutive periods in the data: record longer runs"
        )
    if cfg.bootstrap:
        pick = torch.randint(0, starts_all.numel(), (starts_all.numel(),), generator=gen)
        starts_all = starts_all[pick]
    groups: list[dict[str, Any]]
    if isinstance(model, PhysicsTwin):
        named = list(model.named_parameters())
        residual_params = [p for n, p in named if n.startswith("residual.")]
        physics_params = [p for n, p in named if not n.startswith("residual.")]
        groups = [{"params": physics_params, "lr": cfg.lr_physics}]
        if residual_params:
            groups.append({"params": residual_params, "lr": cfg.lr_residual})
    else:
        groups = [{"params": list(model.parameters()), "lr": cfg.lr_network}]
    opt = torch.optim.Adam(groups)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.iterations)
    history = []
    for it in range(cfg.iterations):
        batch = starts_all[
            torch.randint(
                0, starts_all.numel(), (min(cfg.batch_windows, starts_all.numel()),), generator=gen
            )
        ]
        loss, _ = rollout_loss(model, data, batch, cfg)
        opt.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        opt.step()
        sched.step()
        history.append(float(loss.detach()))
        if on_iteration is not None:
            on_iteration(it, history[-1])
    return history


def fit_twin(
    design: TwinDesign,
    data: PeriodData,
    cfg: FitConfig | None = None,
    *,
    step_s: float = 300.0,
    progress: bool = False,
    kind: ModelKind = "physics",
) -> TwinEnsemble:
    """Fit an ensemble of ``cfg.ensemble_size`` members of ``kind`` on ``data``: physics-
    informed twins, or plain networks (:class:`~twin.neural.NeuralTwin`, normalised on
    ``data``) as the baseline."""
    cfg = cfg or FitConfig()
    if kind == "neural":
        hidden = cfg.network_hidden or matched_hidden(design, cfg.residual_hidden)
    else:
        hidden = cfg.residual_hidden
    started = time.perf_counter()
    members = []
    histories = []
    total = cfg.ensemble_size * cfg.iterations
    with tqdm(total=total, disable=not progress, desc="twin fit", unit="it") as bar:
        for m in range(cfg.ensemble_size):
            torch.manual_seed(cfg.seed * 1000 + m)
            model = make_twin(kind, design, step_s=step_s, hidden=hidden)
            if isinstance(model, NeuralTwin):
                model.fit_normalisation(data)

            def tick(it: int, loss: float, m: int = m) -> None:
                bar.update(1)
                if it % 20 == 0:
                    bar.set_postfix(member=m, loss=f"{loss:.3f}")

            histories.append(
                fit_member(model, data, cfg, seed=cfg.seed * 1000 + m, on_iteration=tick)
            )
            members.append(model.eval())
    ensemble = TwinEnsemble(members)
    first = ensemble.first
    ensemble.summary = {
        "model": kind,
        "config": asdict(cfg),
        "periods": len(data),
        "fit_wall_s": round(time.perf_counter() - started, 1),
        "final_loss": [h[-1] for h in histories],
        "loss_history": [h[:: max(1, len(h) // 100)] for h in histories],
        "parameter_count": parameter_count(first),
        "parameters": first.physical_parameters() if isinstance(first, PhysicsTwin) else {},
    }
    if isinstance(first, PhysicsTwin):
        # The twin's forecast errors on its own data: the assimilation filter's R.
        ensemble.summary["observation_std"] = list(observation_std_from(first, data))
    # Where the twin can be believed: the data it was fitted on, over what a policy controls.
    ensemble.competence = CompetenceModel.fit(data)
    logger.info(
        "fitted %d %s member(s) on %d periods in %.1f s",
        cfg.ensemble_size,
        kind,
        len(data),
        ensemble.summary["fit_wall_s"],
    )
    return ensemble

"""Fitting the twin from recorded sensor data, and measuring how good it is.

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

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from physics import kpi
from twin.competence import CompetenceModel
from twin.dataset import METER_NAMES, PeriodData
from twin.design import TwinDesign
from twin.ensemble import TwinEnsemble, meters_of
from twin.model import ModelKind, TwinModel, make_twin, parameter_count
from twin.neural import NeuralTwin, matched_hidden
from twin.surrogate import PhysicsTwin, TwinInputs, TwinState

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


@dataclass(frozen=True)
class Rollout:
    """Predictions along windows: states (H, W, …) and meters (H, W, M)."""

    rack_inlet_c: Tensor
    hot_aisle_c: Tensor
    hall: Tensor
    meters: Tensor
    residual_sq: Tensor
    imbalance: Tensor
    inlet_std_c: Tensor | None = None


def initial_state(model: TwinModel, data: PeriodData, idx: Tensor) -> TwinState:
    hall = data.hall[idx]
    return model.state_from_readings(
        data.rack_inlet_c[idx],
        data.hot_aisle_c[idx],
        hall[:, 0],
        hall[:, 1],
        hall[:, 2],
        hall[:, 3],
        hall[:, 4],
    )


def period_inputs(data: PeriodData, idx: Tensor) -> TwinInputs:
    return TwinInputs(
        setpoints=data.setpoints[idx],
        it_power_kw=data.it_power_kw[idx],
        outdoor_dry_bulb_c=data.outdoor_dry_bulb_c[idx],
        outdoor_wet_bulb_c=data.outdoor_wet_bulb_c[idx],
    )


def _hall(state: TwinState) -> Tensor:
    return torch.stack(
        [
            state.supply_air_c,
            state.return_air_c,
            state.chw_supply_c,
            state.chw_return_c,
            state.cw_supply_c,
        ],
        dim=-1,
    )


def rollout(
    model: TwinModel | TwinEnsemble,
    data: PeriodData,
    starts: Tensor,
    horizon: int,
    theta: Tensor | None = None,
) -> Rollout:
    """Open-loop predictions from each start over ``horizon`` periods."""
    first = model.first if isinstance(model, TwinEnsemble) else model
    th = first.nominal_theta(starts.shape[0]) if theta is None else theta
    state = initial_state(first, data, starts)
    inlets, hots, halls, meters, res, imb, stds = [], [], [], [], [], [], []
    for h in range(horizon):
        inputs = period_inputs(data, starts + h)
        if isinstance(model, TwinEnsemble):
            ens = model.step(state, inputs, th)
            step = ens.mean
            stds.append(ens.rack_inlet_std_c)
        else:
            step = model(state, inputs, th)
        state = step.state
        inlets.append(state.rack_inlet_c)
        hots.append(state.hot_aisle_c)
        halls.append(_hall(state))
        meters.append(meters_of(step))
        res.append(step.residual_sq)
        imb.append(step.coil_heat_kw - step.heat_in_kw)
    return Rollout(
        rack_inlet_c=torch.stack(inlets),
        hot_aisle_c=torch.stack(hots),
        hall=torch.stack(halls),
        meters=torch.stack(meters),
        residual_sq=torch.stack(res),
        imbalance=torch.stack(imb),
        inlet_std_c=torch.stack(stds) if stds else None,
    )


def targets_along(data: PeriodData, starts: Tensor, horizon: int) -> tuple[Tensor, ...]:
    """What was measured along windows from ``starts``: rack inlets, hot aisles and hall
    readings at each period's end, the period's meters and total IT power (H, W, ...)."""
    steps = torch.arange(horizon)
    nxt = starts[None, :] + steps[:, None] + 1  # (H, W) readings at each period's end
    cur = starts[None, :] + steps[:, None]
    return (
        data.rack_inlet_c[nxt],
        data.hot_aisle_c[nxt],
        data.hall[nxt],
        data.meters[cur],
        data.it_power_kw[cur].sum(dim=-1),
    )


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
        from twin.assimilation import observation_std_from  # assimilation builds on training

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


HEADLINE_ACCURACY: tuple[str, ...] = (
    "inlet_median_abs_error_1step_c",
    "inlet_p95_abs_error_1h_c",
    "facility_mape_percent",
    "cooling_mape_percent",
    "facility_cv_rmse_percent",
    "facility_nmbe_percent",
    "cooling_cv_rmse_percent",
    "cooling_nmbe_percent",
    "inlet_cv_rmse_percent",
    "inlet_nmbe_percent",
)
"""The :class:`Accuracy` fields tables of the twin's accuracy show."""


@dataclass(frozen=True)
class Accuracy:
    """Twin accuracy on a data set, as DESIGN.md's KPIs define it."""

    inlet_median_abs_error_1step_c: float
    inlet_p95_abs_error_1h_c: float
    inlet_median_abs_error_1h_c: float
    facility_mape_percent: float
    cooling_mape_percent: float
    facility_cv_rmse_percent: float
    facility_nmbe_percent: float
    cooling_cv_rmse_percent: float
    cooling_nmbe_percent: float
    inlet_cv_rmse_percent: float
    inlet_nmbe_percent: float
    periods: int
    error_by_horizon_c: tuple[float, ...]
    """Median |inlet error| at each step of the 1-hour rollouts."""

    def to_dict(self) -> dict[str, float | int | list[float]]:
        out: dict[str, float | int | list[float]] = {}
        for k, v in asdict(self).items():
            out[k] = list(v) if isinstance(v, tuple) else v
        return out


@torch.no_grad()
def measure_accuracy(
    model: TwinModel | TwinEnsemble,
    data: PeriodData,
    *,
    horizon_periods: int = 12,
    theta: Tensor | None = None,
) -> Accuracy:
    """One-step errors over every period and open-loop errors over every window of
    ``horizon_periods`` (1 h at 5-min periods). Power errors are one-step (period means)."""
    one = data.windows(1)
    if one.numel() == 0:
        raise ValueError("the data has no pair of consecutive periods")
    th = None if theta is None else theta.expand(one.shape[0], -1)
    pred1 = rollout(model, data, one, 1, th)
    inlet1, _, _, meters1, _ = targets_along(data, one, 1)
    cooling_i, facility_i = METER_NAMES.index("cooling_kw"), METER_NAMES.index("facility_kw")
    y_cool, p_cool = meters1[0, :, cooling_i].numpy(), pred1.meters[0, :, cooling_i].numpy()
    y_fac, p_fac = meters1[0, :, facility_i].numpy(), pred1.meters[0, :, facility_i].numpy()
    y_in, p_in = inlet1.numpy(), pred1.rack_inlet_c.numpy()

    starts = data.windows(horizon_periods)
    if starts.numel() == 0:
        raise ValueError(f"the data has no window of {horizon_periods + 1} consecutive periods")
    th_h = None if theta is None else theta.expand(starts.shape[0], -1)
    pred_h = rollout(model, data, starts, horizon_periods, th_h)
    inlet_h = targets_along(data, starts, horizon_periods)[0]
    err_h = (pred_h.rack_inlet_c - inlet_h).abs().numpy()
    by_h = tuple(float(np.median(err_h[h])) for h in range(horizon_periods))
    return Accuracy(
        inlet_median_abs_error_1step_c=kpi.median_abs_error(y_in, p_in),
        inlet_p95_abs_error_1h_c=float(np.percentile(err_h, 95.0)),
        inlet_median_abs_error_1h_c=float(np.median(err_h)),
        facility_mape_percent=kpi.mape_percent(y_fac, p_fac),
        cooling_mape_percent=kpi.mape_percent(y_cool, p_cool),
        facility_cv_rmse_percent=kpi.cv_rmse_percent(y_fac, p_fac),
        facility_nmbe_percent=kpi.nmbe_percent(y_fac, p_fac),
        cooling_cv_rmse_percent=kpi.cv_rmse_percent(y_cool, p_cool),
        cooling_nmbe_percent=kpi.nmbe_percent(y_cool, p_cool),
        inlet_cv_rmse_percent=kpi.cv_rmse_percent(y_in, p_in),
        inlet_nmbe_percent=kpi.nmbe_percent(y_in, p_in),
        periods=len(data),
        error_by_horizon_c=by_h,
    )

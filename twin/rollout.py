"""Open-loop predictions of a twin along recorded windows, and what was measured there.

A window starts at a recorded period: its reading sets the twin's state, then the twin steps
``horizon`` periods under the recorded setpoints, IT power and weather. :func:`rollout`
returns every predicted reading and meter; :func:`targets_along` the matching measurements.
Fitting (``twin/training.py``), accuracy (``twin/accuracy.py``), calibration and data
assimilation all build on these two.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from twin.dataset import PeriodData
from twin.ensemble import TwinEnsemble, meters_of
from twin.model import TwinModel
from twin.surrogate import TwinInputs, TwinState


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
    """The state the readings of periods ``idx`` imply (one row per index)."""
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
    """The recorded setpoints, IT power, weather and unit status of periods ``idx``."""
    return TwinInputs(
        setpoints=data.setpoints[idx],
        it_power_kw=data.it_power_kw[idx],
        outdoor_dry_bulb_c=data.outdoor_dry_bulb_c[idx],
        outdoor_wet_bulb_c=data.outdoor_wet_bulb_c[idx],
        status=None if data.unit_status is None else data.unit_status.index(idx),
        chiller_on_frac=None if data.chiller_on_frac is None else data.chiller_on_frac[idx],
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

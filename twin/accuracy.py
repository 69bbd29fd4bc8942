"""How good a twin is on held-out data: the accuracy metrics and the targets they are judged by.

:func:`measure_accuracy` rolls the twin out one period from every period and an hour open loop
from every window and returns an :class:`Accuracy`: rack-inlet, facility and cooling power
errors (median, p95, MAPE, CV(RMSE), NMBE). :func:`accuracy_summary` checks it against the
project's :data:`TARGETS` and, for reference, ASHRAE Guideline 14's :data:`GUIDELINE_14`;
``twin/report.py`` renders the result.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from physics import kpi
from twin.dataset import METER_NAMES, PeriodData
from twin.ensemble import TwinEnsemble
from twin.model import TwinModel
from twin.rollout import rollout, targets_along

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
    """Twin accuracy on a data set: rack-inlet errors one period ahead and over the open-loop
    horizon (°C), and the one-period errors of facility and cooling power (period means) as
    MAPE, CV(RMSE) and NMBE in percent (definitions in :mod:`physics.kpi`)."""

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


# --------------------------------------------------------------------------- criteria
@dataclass(frozen=True)
class Criterion:
    """An acceptance bound on one :class:`Accuracy` field: ``value ≤ limit``,
    or ``|value| ≤ limit`` where ``absolute``. ``{horizon}`` in the label is filled in."""

    metric: str
    limit: float
    label: str
    unit: str
    absolute: bool = False

    def check(self, accuracy: Accuracy, horizon_text: str) -> dict[str, Any]:
        value = float(getattr(accuracy, self.metric))
        finite = math.isfinite(value)
        passed = finite and (abs(value) if self.absolute else value) <= self.limit
        return {
            "label": self.label.format(horizon=horizon_text),
            "value": value if finite else None,
            "limit": self.limit,
            "unit": self.unit,
            "absolute": self.absolute,
            "pass": passed,
        }


TARGETS: tuple[Criterion, ...] = (
    Criterion(
        "inlet_median_abs_error_1step_c", 0.15, "rack-inlet median abs. error, one step", "°C"
    ),
    Criterion(
        "inlet_p95_abs_error_1h_c", 0.5, "rack-inlet p95 abs. error, {horizon} open loop", "°C"
    ),
    Criterion("facility_mape_percent", 2.0, "facility power MAPE", "%"),
    Criterion("cooling_mape_percent", 5.0, "cooling power MAPE", "%"),
)
"""The project's twin-accuracy targets, on held-out data: rack-inlet median abs. error one
period ahead ≤ 0.15 °C, rack-inlet p95 abs. error over the open-loop horizon (1 h) ≤ 0.5 °C,
facility power MAPE ≤ 2 % and cooling power MAPE ≤ 5 %."""

GUIDELINE_14: tuple[Criterion, ...] = (
    Criterion("facility_cv_rmse_percent", 30.0, "facility power CV(RMSE)", "%"),
    Criterion("facility_nmbe_percent", 10.0, "facility power NMBE", "%", absolute=True),
    Criterion("cooling_cv_rmse_percent", 30.0, "cooling power CV(RMSE)", "%"),
    Criterion("cooling_nmbe_percent", 10.0, "cooling power NMBE", "%", absolute=True),
)
"""ASHRAE Guideline 14 calibration criteria for hourly data, a reference: the twin's
errors are taken over control-period means, finer than hourly."""


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def accuracy_summary(
    accuracy: Accuracy, *, horizon: int, period_s: float, members: int
) -> dict[str, Any]:
    """What ``accuracy.json`` holds: every :class:`Accuracy` field (non-finite → null), the
    horizon, and each criterion of :data:`TARGETS` and :data:`GUIDELINE_14` with pass/fail."""
    horizon_text = duration_text(horizon * period_s)
    targets = {c.metric: c.check(accuracy, horizon_text) for c in TARGETS}
    reference = {c.metric: c.check(accuracy, horizon_text) for c in GUIDELINE_14}
    return {
        **{k: _finite(v) for k, v in accuracy.to_dict().items()},
        "members": members,
        "period_s": period_s,
        "horizon_periods": horizon,
        "horizon_min": horizon * period_s / 60.0,
        "targets": targets,
        "targets_met": all(t["pass"] for t in targets.values()),
        "ashrae_guideline_14": reference,
        "ashrae_guideline_14_met": all(t["pass"] for t in reference.values()),
    }


def duration_text(seconds: float) -> str:
    """``1 h``, ``90 min``: a duration in whole hours where it is one, else in minutes."""
    return f"{seconds / 3600.0:g} h" if seconds % 3600.0 == 0 else f"{seconds / 60.0:g} min"

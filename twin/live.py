"""The twin following the live site: one assimilation update per completed control period.

:class:`LiveTwin` takes the site's recent readings as a frame (rows at the plant step, the
point names of :func:`physics.plant.sensors.point_catalog`, ``time_h`` = hour of the year,
and ``cmd.<field>`` for a commanded setpoint, NaN where the site's own control was in force:
the layout of :mod:`twin.recording`). For every control period completed since the last call
it

1. forecasts the period with every filter member from the readings at its start (an honest,
   causal one-period-ahead prediction with the parameters estimated so far), and
2. assimilates what was measured at its end (:class:`~twin.assimilation.EnsembleKalmanAssimilator`).

Each update carries the predictions (member mean and spread) next to what was measured, the
parameter estimate and the filter's consistency flag; the live loop writes them to the
historian as ``twin.<name>``, ``twin.std.<name>`` and ``twin.param.<theta>`` for the
operator's twin page.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from twin.assimilation import EnsembleKalmanAssimilator, FilterConfig
from twin.dataset import DatasetError, PeriodData, periods_from_frame
from twin.ensemble import TwinEnsemble
from twin.surrogate import THETA_NAMES, TwinStep

logger = logging.getLogger(__name__)

PREDICTED: tuple[str, ...] = (
    "rack_inlet_max_c",
    "supply_air_c",
    "return_air_c",
    "cooling_power_kw",
    "facility_power_kw",
)
"""What the live twin predicts each period (at its end, or its mean power)."""


@dataclass(frozen=True)
class LiveTwinUpdate:
    """One assimilated control period."""

    time_h: float
    """Hour of the year at the end of the period (when the prediction is compared)."""
    predicted: dict[str, float]
    predicted_std: dict[str, float]
    measured: dict[str, float]
    theta: dict[str, float]
    theta_std: dict[str, float]
    nis_window_mean: float
    diverged: bool


def _predictions(step: TwinStep) -> dict[str, torch.Tensor]:
    s = step.state
    return {
        "rack_inlet_max_c": s.rack_inlet_c.flatten(1).max(dim=1).values,
        "supply_air_c": s.supply_air_c,
        "return_air_c": s.return_air_c,
        "cooling_power_kw": step.cooling_kw,
        "facility_power_kw": step.facility_kw,
    }


def _measured(data: PeriodData, k: int) -> dict[str, float]:
    from twin.dataset import METER_NAMES

    meters = data.meters[k]
    return {
        "rack_inlet_max_c": float(data.rack_inlet_c[k + 1].max()),
        "supply_air_c": float(data.hall[k + 1][0]),
        "return_air_c": float(data.hall[k + 1][1]),
        "cooling_power_kw": float(meters[METER_NAMES.index("cooling_kw")]),
        "facility_power_kw": float(meters[METER_NAMES.index("facility_kw")]),
    }


class LiveTwin:
    """A fitted twin kept calibrated on live data (module docstring)."""

    def __init__(
        self,
        ensemble: TwinEnsemble,
        *,
        step_s: float,
        control_period_s: float,
        config: FilterConfig | None = None,
    ) -> None:
        per = round(control_period_s / step_s) if step_s > 0 else 0
        if per < 1 or abs(per * step_s - control_period_s) > 1e-6:
            raise ValueError(
                f"control period {control_period_s} s is not a whole number of steps of {step_s} s"
            )
        self.assimilator = EnsembleKalmanAssimilator.for_ensemble(ensemble, config)
        self.design = ensemble.design
        self.step_s = float(step_s)
        self.control_period_s = float(control_period_s)
        self._last_end_h = -math.inf

    @property
    def theta(self) -> dict[str, float]:
        return {n: float(v) for n, v in zip(THETA_NAMES, self.assimilator.estimate, strict=True)}

    @torch.no_grad()
    def update(self, frame: pd.DataFrame) -> list[LiveTwinUpdate]:
        """Assimilate every period of ``frame`` that ended after the last one assimilated.

        ``frame`` should reach back at least two control periods; periods with missing
        readings are skipped (they break the chain, as in training data)."""
        try:
            data = periods_from_frame(
                frame,
                self.design,
                step_s=self.step_s,
                control_period_s=self.control_period_s,
            )
        except DatasetError as exc:
            logger.debug("live twin: nothing to assimilate yet (%s)", exc)
            return []
        period_h = self.control_period_s / 3600.0
        updates: list[LiveTwinUpdate] = []
        for k in data.windows(1).tolist():
            end_h = float(data.time_h[k]) + period_h
            if end_h <= self._last_end_h + 1e-6:
                continue
            _, step = self.assimilator.forecast(data, k)
            predicted = _predictions(step)
            result = self.assimilator.update(data, k)
            self._last_end_h = end_h
            updates.append(
                LiveTwinUpdate(
                    time_h=end_h,
                    predicted={n: float(v.mean()) for n, v in predicted.items()},
                    predicted_std={n: float(v.std()) for n, v in predicted.items()},
                    measured=_measured(data, k),
                    theta={
                        n: float(v) for n, v in zip(THETA_NAMES, result.theta_mean, strict=True)
                    },
                    theta_std={
                        n: float(v) for n, v in zip(THETA_NAMES, result.theta_std, strict=True)
                    },
                    nis_window_mean=result.nis_window_mean,
                    diverged=result.diverged,
                )
            )
        return updates


def prediction_error(updates: list[LiveTwinUpdate], name: str) -> np.ndarray:
    """Predicted minus measured ``name`` over ``updates``."""
    return np.array([u.predicted[name] - u.measured[name] for u in updates], dtype=np.float64)

"""The twin beside the live loop: kept calibrated from the historian, predicting each period.

Every control period, from the historian's last three control periods of sensor readings
(and the ``ctl.*`` commands that were in force), :class:`TwinTracker`

1. assimilates the period that just ended with the
   :class:`~twin.assimilation.EnsembleKalmanAssimilator` (its parameters ``twin.param.*``
   and their spread ``twin.std.*`` go to the historian);
2. predicts the coming period from the state now under the command about to be applied
   (the live command, or the site's own setpoints) — ``twin.rack_inlet_max_c``,
   ``twin.cooling_power_kw`` and the ensemble's spread ``twin.std.rack_inlet_max_c`` — and,
   when a shadow policy runs, under the shadow's command too (``twin.shadow.*``); with a
   live command, also under the site's own setpoints (``twin.site.cooling_power_kw``), which
   gives the live controller's ``kpi.savings_pct`` (the twin's estimate of the cooling power
   the command saves this period; as good as the twin is calibrated).

The exogenous inputs of the coming period (IT power, outdoor air) are held at their current
readings (persistence): the last reading is repeated as the coming period's rows, which is
also how the period that just ended gets its end state. The prediction made one period ago
is what the watchdog compares with the measured hottest inlet (twin–plant divergence).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from connectors.historian import HistorianStore
from physics.plant.site_control import SETPOINT_FIELDS
from twin.assimilation import AssimilationStep, EnsembleKalmanAssimilator
from twin.dataset import DatasetError, PeriodData, applied_setpoints, periods_from_frame
from twin.design import TwinDesign
from twin.surrogate import THETA_NAMES, TwinStep

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TwinPrediction:
    """The twin's forecast of the end of the coming period (ensemble mean and spread)."""

    time_s: float
    """When the forecast comes due (the end of the period)."""
    rack_inlet_max_c: float
    rack_inlet_max_std_c: float
    cooling_power_kw: float


def _summary(step: TwinStep, due_s: float) -> TwinPrediction:
    hottest = step.state.rack_inlet_c.flatten(start_dim=1).max(dim=1).values.double()
    return TwinPrediction(
        time_s=due_s,
        rack_inlet_max_c=float(hottest.mean()),
        rack_inlet_max_std_c=float(hottest.std()) if hottest.numel() > 1 else 0.0,
        cooling_power_kw=float(step.cooling_kw.double().mean()),
    )


class TwinTracker:
    """Assimilation and one-period forecasts on live data (module docstring)."""

    def __init__(
        self,
        assimilator: EnsembleKalmanAssimilator,
        historian: HistorianStore,
        *,
        points: tuple[str, ...],
        step_s: float,
        control_period_s: float,
        hour_of_year: Callable[[float], float],
    ) -> None:
        self.assimilator = assimilator
        self.design: TwinDesign = assimilator.model.design
        self.historian = historian
        self.points = points
        self.step_s = float(step_s)
        self.period_s = float(control_period_s)
        self.per = round(self.period_s / self.step_s)
        if self.per < 1 or abs(self.per * self.step_s - self.period_s) > 1e-6:
            raise ValueError(
                f"control period {control_period_s} s is not a whole number of steps of {step_s} s"
            )
        self._hour_of_year = hour_of_year
        self.pending: TwinPrediction | None = None
        """The forecast made last period for now (what the watchdog checks)."""
        self.last_step: AssimilationStep | None = None

    def _frame(self, now_s: float, command: Mapping[str, float] | None) -> pd.DataFrame | None:
        """The last three periods of readings, plus the coming period's rows (the last
        reading repeated) with ``command`` in force; None if readings are missing."""
        since = now_s - 3 * self.period_s - 2 * self.step_s
        frame = self.historian.series(list(self.points), since_s=since, until_s=now_s)
        while len(frame) and frame.iloc[-1].isna().any():  # a step still arriving
            frame = frame.iloc[:-1]
        frame = frame.iloc[-3 * self.per :]
        if len(frame) != 3 * self.per:
            return None
        times = np.asarray(frame.index, dtype=np.float64)
        anchor = float(times[-1])  # the newest complete step: the period ends here
        spacing_ok = abs(times[-1] - times[0] - (3 * self.per - 1) * self.step_s) < 1e-3
        if now_s - anchor > self.step_s + 1e-6 or not spacing_ok:
            return None  # stale or gapped: nothing trustworthy to assimilate
        ctl_names = [f"ctl.{f}" for f in SETPOINT_FIELDS]
        ctl = self.historian.series(ctl_names, since_s=since - self.period_s, until_s=now_s)
        # A command written at t is in force over (t, t + period].
        for name, col in zip(SETPOINT_FIELDS, ctl_names, strict=True):
            values = np.full(len(times), np.nan)
            if col in ctl:
                issued = ctl[col].dropna()
                at = np.asarray(issued.index, dtype=np.float64)
                for t, v in zip(at, issued.to_numpy(dtype=np.float64), strict=True):
                    values[(times > t) & (times <= t + self.period_s + 1e-6)] = v
            frame[f"cmd.{name}"] = values
        coming = pd.DataFrame(
            np.repeat(frame.iloc[[-1]].to_numpy(), self.per, axis=0), columns=frame.columns
        )
        coming.index = anchor + self.step_s * np.arange(1, self.per + 1)
        for name in SETPOINT_FIELDS:
            value = None if command is None else command.get(name)
            coming[f"cmd.{name}"] = np.nan if value is None else float(value)
        out = pd.concat([frame, coming])
        out["time_h"] = [self._hour_of_year(float(t)) for t in out.index]
        out["time_s"] = np.asarray(out.index, dtype=np.float64)
        return out.reset_index(drop=True)

    def _periods(self, frame: pd.DataFrame) -> PeriodData | None:
        try:
            data = periods_from_frame(
                frame, self.design, step_s=self.step_s, control_period_s=self.period_s
            )
        except DatasetError as exc:
            logger.info("twin: no complete periods to use (%s)", exc)
            return None
        if len(data) != 3 or int(data.sequence[0]) != int(data.sequence[-1]):
            return None  # a gap in the readings: nothing to assimilate or forecast from
        return data

    @torch.no_grad()
    def update(
        self,
        now_s: float,
        command: Mapping[str, float] | None,
        shadow_command: Mapping[str, float] | None = None,
    ) -> dict[str, float]:
        """Assimilate the period that ended at ``now_s`` and forecast the next one under
        ``command`` (None: the site's own setpoints); the ``twin.*`` values to log."""
        frame = self._frame(now_s, command)
        data = None if frame is None else self._periods(frame)
        if frame is None or data is None:
            self.pending = None
            return {}
        step = self.assimilator.update(data, 1)
        self.last_step = step
        values: dict[str, float] = {"nis": step.nis_window_mean, "diverged": float(step.diverged)}
        for i, name in enumerate(THETA_NAMES):
            values[f"param.{name}"] = float(step.theta_mean[i])
            values[f"std.{name}"] = float(step.theta_std[i])
        _, forecast = self.assimilator.forecast(data, 2)
        due_s = float(frame["time_s"].iloc[3 * self.per - 1]) + self.period_s
        prediction = _summary(forecast, due_s)
        self.pending = prediction
        values["rack_inlet_max_c"] = prediction.rack_inlet_max_c
        values["std.rack_inlet_max_c"] = prediction.rack_inlet_max_std_c
        values["cooling_power_kw"] = prediction.cooling_power_kw
        if shadow_command:
            shadow = _summary(self._forecast_under(data, frame, shadow_command), due_s)
            values["shadow.rack_inlet_max_c"] = shadow.rack_inlet_max_c
            values["shadow.cooling_power_kw"] = shadow.cooling_power_kw
        if command:
            # The same period under the site's own setpoints: the saving the command buys.
            site = _summary(self._forecast_under(data, frame, None), due_s)
            values["site.cooling_power_kw"] = site.cooling_power_kw
            if site.cooling_power_kw > 0:
                saved = site.cooling_power_kw - prediction.cooling_power_kw
                values["savings_pct"] = 100.0 * saved / site.cooling_power_kw
        return values

    def _forecast_under(
        self, data: PeriodData, frame: pd.DataFrame, command: Mapping[str, float] | None
    ) -> TwinStep:
        """The coming period's forecast with ``command`` (None: the site's setpoints)."""
        coming = frame.iloc[3 * self.per :].copy()
        for name in SETPOINT_FIELDS:
            value = None if command is None else command.get(name)
            ok = value is not None and math.isfinite(value)
            coming[f"cmd.{name}"] = float(value) if ok and value is not None else np.nan
        wet = coming["outdoor_wet_bulb_c"].to_numpy(dtype=np.float64)
        setpoints = applied_setpoints(coming, self.design.defaults, wet)[0]
        sp = data.setpoints.clone()
        sp[2] = torch.as_tensor(setpoints, dtype=sp.dtype)
        fields = {f: getattr(data, f) for f in data.__dataclass_fields__}
        # How the chillers will run under the command is the twin's to predict, not the past's.
        forecast = PeriodData(**{**fields, "setpoints": sp, "chiller_on_frac": None})
        _, step = self.assimilator.forecast(forecast, 2)
        return step

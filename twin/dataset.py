"""Recorded plant runs (sensor readings + commands) as control-period tensors for the twin.

A recording holds readings at the plant step (60 s) and the command in force at each step.
Period ``j`` covers rows ``[j·n, (j+1)·n)`` for ``n`` steps per control period: its starting
state is the reading at the end of period ``j−1``, its inputs are the setpoints applied
during it (the command, or where none was in force the site's own control, which the owner
knows), the mean IT power per pod and the mean outdoor air; its targets are the readings at
its end and the mean meter readings over it. Periods with a missing reading are dropped
and split the run into separate sequences.

Where the recording has the plant's equipment status points (``crah_running.NN``,
``chiller_alarm.k``, ``tower_fan_alarm``), each period also carries the units available
during it (:class:`~twin.surrogate.UnitStatus`, period means); recordings without them
(older ones) carry none, and the twin takes every unit as running.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np
import pandas as pd
import torch
from numpy.typing import NDArray
from torch import Tensor

from physics.plant.site import SiteDefaults
from physics.plant.site_control import SETPOINT_FIELDS, site_control_matrix, site_setpoints
from twin.design import TwinDesign
from twin.recording import Recording
from twin.spaces import COOLING_POWER_POINTS
from twin.surrogate import UnitStatus
from twinloop.errors import TwinLoopError

FloatArray = NDArray[np.float64]

STATE_POINTS: tuple[str, ...] = (
    "supply_air_c",
    "return_air_c",
    "chw_supply_c",
    "chw_return_c",
    "cw_supply_c",
)
METER_NAMES: tuple[str, ...] = (
    "crah_fan_kw",
    "chiller_kw",
    "chw_pump_kw",
    "cw_pump_kw",
    "tower_fan_kw",
    "cooling_kw",
    "facility_kw",
    "chw_flow_kg_s",
    "valve_frac",
)
"""Mean meter readings over a period, in the order of :attr:`PeriodData.meters`."""


class DatasetError(TwinLoopError, ValueError):
    """Recorded data that cannot be turned into training periods."""


@dataclass(frozen=True)
class PeriodData:
    """Control periods of one or more runs, as float32 tensors with leading axis = periods.

    ``sequence`` numbers the unbroken runs; period ``j+1`` continues period ``j`` only when
    both have the same sequence number.
    """

    rack_inlet_c: Tensor  # (T, P, R) at the period's start
    hot_aisle_c: Tensor  # (T, P)
    hall: Tensor  # (T, 5) STATE_POINTS at the start
    setpoints: Tensor  # (T, 5) applied during the period
    it_power_kw: Tensor  # (T, P) mean over the period
    outdoor_dry_bulb_c: Tensor  # (T,)
    outdoor_wet_bulb_c: Tensor  # (T,)
    meters: Tensor  # (T, len(METER_NAMES)) means over the period
    time_h: Tensor  # (T,) hour of the year at the period's start
    sequence: Tensor  # (T,) int64
    unit_status: UnitStatus | None = None
    """Units available per period (None: the recording has no status points)."""
    chiller_on_frac: Tensor | None = None
    """Each chiller's running share of the period (T, n_chillers); NaN rows or None where
    the recording has no ``chiller_running.<k>`` points."""

    def __len__(self) -> int:
        return int(self.hall.shape[0])

    def _tensors(self) -> dict[str, Tensor]:
        return {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if f.name != "unit_status" and getattr(self, f.name) is not None
        }

    def index(self, idx: Tensor) -> PeriodData:
        status = None if self.unit_status is None else self.unit_status.index(idx)
        return PeriodData(
            **{name: value[idx] for name, value in self._tensors().items()}, unit_status=status
        )

    def to(self, device: torch.device | str) -> PeriodData:
        status = None if self.unit_status is None else self.unit_status.to(device)
        return PeriodData(
            **{name: value.to(device) for name, value in self._tensors().items()},
            unit_status=status,
        )

    @staticmethod
    def concat(parts: Sequence[PeriodData]) -> PeriodData:
        if not parts:
            raise DatasetError("no periods to concatenate")
        offset = 0
        seqs = []
        for part in parts:
            seqs.append(part.sequence + offset)
            offset = int(seqs[-1].max()) + 1 if len(part) else offset
        merged = {
            f.name: torch.cat([getattr(p, f.name) for p in parts])
            for f in fields(PeriodData)
            if f.name not in ("sequence", "unit_status", "chiller_on_frac")
        }
        widths = {p.chiller_on_frac.shape[1] for p in parts if p.chiller_on_frac is not None}
        if len(widths) > 1:
            raise DatasetError(f"runs with different numbers of chillers: {sorted(widths)}")
        if widths:  # runs without the running points stage their chillers in the twin
            width = widths.pop()
            merged["chiller_on_frac"] = torch.cat(
                [
                    p.chiller_on_frac
                    if p.chiller_on_frac is not None
                    else torch.full((len(p), width), float("nan"))
                    for p in parts
                ]
            )
        status = None
        if any(p.unit_status is not None for p in parts):
            # Parts without status points ran with every unit (every chiller: the twin caps
            # the infinite count at the site's chillers).
            status = UnitStatus.concat(
                [
                    p.unit_status
                    if p.unit_status is not None
                    else UnitStatus(
                        torch.ones(len(p)),
                        torch.full((len(p),), float("inf")),
                        torch.ones(len(p)),
                    )
                    for p in parts
                ]
            )
        return PeriodData(sequence=torch.cat(seqs), unit_status=status, **merged)

    def windows(self, horizon: int) -> Tensor:
        """Start indices of every run of ``horizon + 1`` consecutive periods in one sequence
        (a start state and ``horizon`` targets)."""
        seq = self.sequence
        n = len(self)
        if n <= horizon:
            return torch.zeros(0, dtype=torch.int64)
        same = seq[horizon:] == seq[: n - horizon]
        return torch.nonzero(same).flatten()


def applied_setpoints(
    frame: pd.DataFrame, defaults: SiteDefaults, wet_bulb_c: FloatArray
) -> FloatArray:
    """Setpoints in force per row (rows, 5): the command where one was, else the site's
    built-in control. Its economiser enable is the recorded status point where the recording
    has it; otherwise it is predicted from the measured wet bulb and chilled-water return
    (the enable without the sequence's timers, which such readings do not show)."""
    chw_return = (
        frame["chw_return_c"].to_numpy(dtype=np.float64) if "chw_return_c" in frame else None
    )
    if chw_return is not None:
        chw_return = np.where(np.isfinite(chw_return), chw_return, defaults.chw_supply_c + 5.0)
    site = site_setpoints(defaults, wet_bulb_c, chw_return).as_matrix()
    if "economiser_enabled" in frame:
        status = frame["economiser_enabled"].to_numpy(dtype=np.float64)
        known = np.isfinite(status)
        if known.any():
            site[known] = site_control_matrix(defaults, status[known])
    out = site.copy()
    for i, name in enumerate(SETPOINT_FIELDS):
        col = f"cmd.{name}"
        if col in frame:
            given = frame[col].to_numpy(dtype=np.float64)
            out[:, i] = np.where(np.isfinite(given), given, site[:, i])
    return out


def periods_from_frame(
    frame: pd.DataFrame, design: TwinDesign, *, step_s: float, control_period_s: float
) -> PeriodData:
    """Cut one recording (rows at the plant step) into control periods."""
    per = round(control_period_s / step_s)
    if per < 1 or abs(per * step_s - control_period_s) > 1e-6:
        raise DatasetError(
            f"control period {control_period_s} s is not a whole number of steps of {step_s} s"
        )
    p, r = design.n_pods, design.racks_per_pod
    inlet_cols = [f"rack_inlet_c.{i}.{j:02d}" for i in range(p) for j in range(r)]
    hot_cols = [f"hot_aisle_c.{i}" for i in range(p)]
    it_cols = [f"it_power_kw.{i}" for i in range(p)]
    chiller_cols = sorted(c for c in frame.columns if c.startswith("chiller_power_kw."))
    valve_cols = [f"crah_valve_frac.{i:02d}" for i in range(design.n_crah)]
    needed = [
        *inlet_cols,
        *hot_cols,
        *valve_cols,
        *it_cols,
        *STATE_POINTS,
        *COOLING_POWER_POINTS,
        "facility_power_kw",
        "chw_flow_kg_s",
        "outdoor_dry_bulb_c",
        "outdoor_wet_bulb_c",
        "time_h",
    ]
    missing = [c for c in needed if c not in frame.columns]
    if missing or not chiller_cols:
        shown = ", ".join((missing or ["chiller_power_kw.<k>"])[:5])
        raise DatasetError(f"recording lacks column(s) {shown}")

    def col(names: Sequence[str]) -> FloatArray:
        return frame[list(names)].to_numpy(dtype=np.float64)

    wet = frame["outdoor_wet_bulb_c"].to_numpy(dtype=np.float64)
    sp = applied_setpoints(frame, design.defaults, np.nan_to_num(wet, nan=20.0))
    n_periods = len(frame) // per - 1
    if n_periods < 1:
        raise DatasetError(f"recording too short: {len(frame)} rows, {per} per period")
    start_rows = np.arange(1, n_periods + 1) * per - 1  # end of the previous period
    body = slice(per, (n_periods + 1) * per)

    def period_mean(values: FloatArray) -> FloatArray:
        v = values[body]
        return np.asarray(v.reshape(n_periods, per, *v.shape[1:]).mean(axis=1))

    chillers = col(chiller_cols).sum(axis=1)
    cooling = col(COOLING_POWER_POINTS).sum(axis=1) + chillers
    meters = np.stack(
        [
            col(["crah_fan_power_kw"])[:, 0],
            chillers,
            col(["chw_pump_power_kw"])[:, 0],
            col(["cw_pump_power_kw"])[:, 0],
            col(["tower_fan_power_kw"])[:, 0],
            cooling,
            col(["facility_power_kw"])[:, 0],
            col(["chw_flow_kg_s"])[:, 0],
            col(valve_cols).mean(axis=1),
        ],
        axis=1,
    )
    first_rows = start_rows + 1  # the command of a period is in force from its first step
    arrays: dict[str, FloatArray] = {
        "rack_inlet_c": col(inlet_cols)[start_rows].reshape(n_periods, p, r),
        "hot_aisle_c": col(hot_cols)[start_rows],
        "hall": col(STATE_POINTS)[start_rows],
        "setpoints": sp[first_rows],
        "it_power_kw": period_mean(col(it_cols)),
        "outdoor_dry_bulb_c": period_mean(col(["outdoor_dry_bulb_c"]))[:, 0],
        "outdoor_wet_bulb_c": period_mean(col(["outdoor_wet_bulb_c"]))[:, 0],
        "meters": period_mean(meters),
        "time_h": frame["time_h"].to_numpy(dtype=np.float64)[start_rows],
    }
    ok = np.ones(n_periods, dtype=bool)
    for value in arrays.values():
        ok &= np.isfinite(value.reshape(n_periods, -1)).all(axis=1)
    # A dropped period breaks the chain: later periods start a new sequence.
    sequence = np.cumsum(~ok)
    keep = np.nonzero(ok)[0]
    if keep.size == 0:
        raise DatasetError("no complete control period in the recording")
    tensors = {k: torch.as_tensor(v[keep], dtype=torch.float32) for k, v in arrays.items()}
    status = unit_status_of(frame, design)
    running_cols = [f"chiller_running.{k}" for k in range(design.n_chillers)]
    on_frac = None
    if all(c in frame.columns for c in running_cols):
        # A missing reading leaves the period's share unknown (NaN): the twin stages it.
        running = np.clip(col(running_cols), 0.0, 1.0)
        on_frac = torch.as_tensor(period_mean(running)[keep], dtype=torch.float32)
    return PeriodData(
        sequence=torch.as_tensor(sequence[keep], dtype=torch.int64),
        unit_status=None if status is None else status_periods(status, per, body, keep),
        chiller_on_frac=on_frac,
        **tensors,
    )


def unit_status_of(frame: pd.DataFrame, design: TwinDesign) -> FloatArray | None:
    """Units available per row (rows, 3: CRAH running fraction, chillers available, tower
    fan capacity) from the status points, or None where the recording has none of them.

    A missing status point counts as all running (older recordings); a missing reading
    holds the last one (running before the first). The tower's alarm says that fan capacity
    is lost, not how much: it counts as all of it.
    """
    crah = [f"crah_running.{i:02d}" for i in range(design.n_crah)]
    alarms = [f"chiller_alarm.{k}" for k in range(design.n_chillers)]
    if not any(c in frame.columns for c in (*crah, *alarms, "tower_fan_alarm")):
        return None

    def points(names: Sequence[str], nominal: float) -> FloatArray:
        values = np.full((len(frame), len(names)), nominal)
        for j, name in enumerate(names):
            if name in frame.columns:
                held = frame[name].astype(np.float64).ffill().fillna(nominal)
                values[:, j] = np.clip(held.to_numpy(dtype=np.float64), 0.0, 1.0)
        return values

    running = points(crah, 1.0).mean(axis=1)
    available = design.n_chillers - points(alarms, 0.0).sum(axis=1)
    tower = 1.0 - points(["tower_fan_alarm"], 0.0)[:, 0]
    return np.stack([running, available, tower], axis=1)


def status_periods(rows: FloatArray, per: int, body: slice, keep: NDArray[np.int64]) -> UnitStatus:
    """Per-row unit status as period means over ``body`` for the kept periods."""
    v = rows[body]
    means = v.reshape(-1, per, v.shape[1]).mean(axis=1)[keep]
    t = torch.as_tensor(means, dtype=torch.float32)
    return UnitStatus(crah_running_frac=t[:, 0], chillers_available=t[:, 1], tower_fan_frac=t[:, 2])


def periods_from_recordings(recordings: Sequence[Recording], design: TwinDesign) -> PeriodData:
    """All recordings as control periods (each recording its own sequences)."""
    return PeriodData.concat(
        [
            periods_from_frame(
                r.frame,
                design,
                step_s=r.meta.step_s,
                control_period_s=r.meta.control_period_s,
            )
            for r in recordings
        ]
    )


def design_of(recordings: Sequence[Recording]) -> TwinDesign:
    """The design of the site the recordings come from (they share one site)."""
    if not recordings:
        raise DatasetError("no recordings")
    return TwinDesign.for_variant(recordings[0].meta.site_variant)

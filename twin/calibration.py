"""The ensemble's spread, calibrated into 90 % intervals on held-out recordings.

An ensemble of a few members knows *that* it is unsure (its members disagree) but not *how
much*: the raw spread of three members is too narrow to be an interval. Split conformal
prediction turns it into one without assumptions about the errors' shape: on held-out
recordings, every member runs open loop over ``horizon`` periods (1 h) from each start under
the recorded setpoints; the score of a prediction is its error divided by the members'
spread plus a floor (the spread's median, so a window where the members happen to agree
is not given a zero-width interval); the interval's scale is the ``(1 − α)(1 + 1/n)``
quantile of the scores. On data like the calibration data the interval ``mean ± scale ·
(spread + floor)`` then covers ``1 − α`` of the outcomes; where the twin extrapolates
(:mod:`twin.competence`) nothing guarantees it, and :func:`coverage` reports the two apart.

Outputs: the hottest rack inlet at the horizon's end, and the mean cooling and facility
power over the horizon's last period.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from twin.competence import CompetenceModel, period_features
from twin.dataset import METER_NAMES, PeriodData
from twin.ensemble import TwinEnsemble
from twin.rollout import rollout, targets_along
from twinloop.errors import TwinLoopError

FloatArray = NDArray[np.float64]
OUTPUTS: tuple[str, ...] = ("hottest_inlet_c", "cooling_kw", "facility_kw")


class CalibrationError(TwinLoopError, ValueError):
    """A twin or data set that cannot calibrate intervals: one member, or too few
    periods or windows; the message says which."""


@dataclass(frozen=True)
class MemberPredictions:
    """Per output: the members' predictions (K, W), the truth (W,), and per window whether
    any of its periods lay outside the twin's data (W,)."""

    predictions: dict[str, FloatArray]
    truth: dict[str, FloatArray]
    extrapolating: NDArray[np.bool_]


@torch.inference_mode()
def member_predictions(
    ensemble: TwinEnsemble,
    data: PeriodData,
    *,
    horizon: int = 12,
    competence: CompetenceModel | None = None,
) -> MemberPredictions:
    """Every member open loop over every window of ``horizon`` periods of ``data``."""
    if len(ensemble) < 2:
        raise CalibrationError("calibrating a spread needs an ensemble of at least two members")
    starts = data.windows(horizon)
    if starts.numel() == 0:
        raise CalibrationError(f"the data has no window of {horizon + 1} consecutive periods")
    cool, fac = METER_NAMES.index("cooling_kw"), METER_NAMES.index("facility_kw")
    preds: dict[str, list[FloatArray]] = {name: [] for name in OUTPUTS}
    for m in range(len(ensemble)):
        out = rollout(ensemble.member(m), data, starts, horizon)
        preds["hottest_inlet_c"].append(
            out.rack_inlet_c[-1].flatten(1).amax(dim=1).double().numpy()
        )
        preds["cooling_kw"].append(out.meters[-1, :, cool].double().numpy())
        preds["facility_kw"].append(out.meters[-1, :, fac].double().numpy())
    inlet, _, _, meters, _ = targets_along(data, starts, horizon)
    truth = {
        "hottest_inlet_c": inlet[-1].flatten(1).amax(dim=1).double().numpy(),
        "cooling_kw": meters[-1, :, cool].double().numpy(),
        "facility_kw": meters[-1, :, fac].double().numpy(),
    }
    model = competence or ensemble.competence
    blind: NDArray[np.bool_] = np.zeros(starts.numel(), dtype=bool)
    if model is not None:
        outside = model.ratio(period_features(data, model.scale)) > 1.0
        idx = starts.numpy()[:, None] + np.arange(horizon)[None, :]
        blind = np.asarray(outside[idx].any(axis=1), dtype=bool)
    return MemberPredictions({k: np.stack(v) for k, v in preds.items()}, truth, blind)


@dataclass(frozen=True)
class Calibration:
    """Per output: the scale and floor of the ``1 − alpha`` interval (see the module
    docstring)."""

    alpha: float
    scale: dict[str, float]
    floor: dict[str, float]

    def interval(self, output: str, members: FloatArray) -> tuple[FloatArray, FloatArray]:
        """The interval (low, high) of each column of ``members`` (K, W)."""
        mean, spread = members.mean(axis=0), members.std(axis=0, ddof=1)
        half = self.scale[output] * (spread + self.floor[output])
        return mean - half, mean + half

    def to_dict(self) -> dict[str, Any]:
        return {"alpha": self.alpha, "scale": self.scale, "floor": self.floor}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Calibration:
        return cls(float(raw["alpha"]), dict(raw["scale"]), dict(raw["floor"]))


def calibrate(predictions: MemberPredictions, alpha: float = 0.1) -> Calibration:
    """The split-conformal scale of each output on calibration windows (interpolation only:
    the guarantee is about data like the twin's)."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    keep = ~predictions.extrapolating
    if keep.sum() < 10:
        raise CalibrationError("fewer than 10 calibration windows inside the twin's data")
    scale, floor = {}, {}
    for name in OUTPUTS:
        members = predictions.predictions[name][:, keep]
        spread = members.std(axis=0, ddof=1)
        f = max(float(np.median(spread)), 1e-6)
        scores = np.abs(predictions.truth[name][keep] - members.mean(axis=0)) / (spread + f)
        n = len(scores)
        level = min(1.0, (1.0 - alpha) * (1.0 + 1.0 / n))
        scale[name] = float(np.quantile(scores, level, method="higher"))
        floor[name] = f
    return Calibration(alpha, scale, floor)


def coverage(predictions: MemberPredictions, calibration: Calibration) -> dict[str, Any]:
    """Share of outcomes inside their interval, per output, split by whether the window lay
    inside the twin's data ("interpolating") or not ("extrapolating")."""
    out: dict[str, Any] = {}
    for flag, mask in (
        ("interpolating", ~predictions.extrapolating),
        ("extrapolating", predictions.extrapolating),
    ):
        row: dict[str, Any] = {"windows": int(mask.sum())}
        for name in OUTPUTS:
            if not mask.any():
                row[name] = math.nan
                continue
            low, high = calibration.interval(name, predictions.predictions[name][:, mask])
            truth = predictions.truth[name][mask]
            row[name] = float(((truth >= low) & (truth <= high)).mean())
        out[flag] = row
    return out


def split_halves(data: PeriodData) -> tuple[PeriodData, PeriodData]:
    """The first and second half of ``data`` by time (calibrate on one, check on the other);
    no window spans the cut."""
    n = len(data)
    if n < 4:
        raise CalibrationError("too few periods to split")
    half = n // 2
    first = data.index(torch.arange(0, half))
    second = data.index(torch.arange(half, n))
    return first, second

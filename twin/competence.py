"""Where the twin can be believed: a model of the data it was fitted on.

A twin is an interpolator of its training data. Over what a policy *controls* and what it
*drives* — the five setpoints, how fast they move, the chilled- and condenser-water
temperatures they bring about, how often the economiser switches — a policy can walk the
twin out of that data, where its errors are unknown and an optimiser finds them (a PPO agent
learned to hold condenser water at 29–35 °C with the economiser toggled every other period,
where the drawings' twin predicted 40 % of the plant's cooling energy). The weather and the
season are deliberately *not* features: a physics twin fitted on January days predicts a
heat wave well, because its physics carries over; what does not carry over is operation it
has never seen.

:class:`CompetenceModel` holds the training periods' features (each scaled by its physical
range, so a unit means "the whole actuator range") and scikit-learn's nearest-neighbour
index over them. A period's *competence ratio* is its mean distance to its ``k`` nearest
training periods divided by the ``quantile`` of the same distance among the training periods
themselves (leave-one-out): ≤ 1 is interpolation, > 1 is extrapolation (on data like the
training data, about ``1 − quantile`` of the periods exceed 1 by chance).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn.neighbors import NearestNeighbors

from twin.dataset import PeriodData
from twin.spaces import ACTION_NAMES, ActionScale

FloatArray = NDArray[np.float64]

SWITCH_WINDOW = 6
"""Periods over which economiser switches are counted (30 min at 5-min periods)."""

FEATURE_NAMES: tuple[str, ...] = (
    *(f"sp.{n}" for n in ACTION_NAMES),
    *(f"rate.{n}" for n in ACTION_NAMES[:4]),
    "economiser_switches",
    "chw_supply_c",
    "cw_supply_c",
)
COMPETENCE_FILE = "competence.npz"
FEATURES_VERSION = 2
"""2: condenser-water setpoints below the delivered water count as reached
(:func:`reachable_setpoints`)."""
CW_SETPOINT = ACTION_NAMES.index("cw_supply_c")


def feature_scale(scale: ActionScale) -> FloatArray:
    """Physical range of each feature (setpoint spans; switches per window; water spans)."""
    span = scale.high - scale.low  # economiser: 1
    return np.concatenate(
        [span, span[:4], [float(SWITCH_WINDOW)], [span[2] + 4.0], [span[3] + 4.0]]
    )


def reachable_setpoints(setpoints: FloatArray, cw_supply_c: FloatArray) -> FloatArray:
    """Setpoints (N, 5) with condenser water raised to the water the tower delivers
    (``cw_supply_c``) where the setpoint lies below it.

    The tower runs the least fan that meets its setpoint; a setpoint it cannot make runs the
    fans at full, the same operation whether it asks for 1 K or 15 K below what the tower
    delivers. Counted as asked, a controller that writes its lowest condenser water on a
    hot night (the MPC does: full tower fan is its plan) would look further from the data
    with every kelvin the tower never acts on."""
    out = np.array(setpoints, dtype=np.float64, copy=True)
    out[:, CW_SETPOINT] = np.maximum(out[:, CW_SETPOINT], cw_supply_c)
    return out


def features(
    setpoints: FloatArray,
    previous: FloatArray,
    switches: FloatArray,
    chw_supply_c: FloatArray,
    cw_supply_c: FloatArray,
    scale: ActionScale,
) -> FloatArray:
    """Features (N, F) of N periods: the setpoints applied (N, 5), those of the period before
    (N, 5), economiser switches in the last :data:`SWITCH_WINDOW` periods (N,), and the
    chilled- and condenser-water supply temperatures at the period's start (N,); every
    feature divided by its physical range. Condenser-water setpoints below the water
    delivered count as reached (:func:`reachable_setpoints`)."""
    cw = np.asarray(cw_supply_c, dtype=np.float64)
    sp = reachable_setpoints(np.asarray(setpoints, dtype=np.float64), cw)
    prev = reachable_setpoints(np.asarray(previous, dtype=np.float64), cw)
    raw = np.column_stack(
        [
            sp,
            np.abs(sp[:, :4] - prev[:, :4]),
            np.asarray(switches, dtype=np.float64),
            np.asarray(chw_supply_c, dtype=np.float64),
            cw,
        ]
    )
    out: FloatArray = raw / feature_scale(scale)
    return out


def switch_counts(economiser: FloatArray, sequence: NDArray[np.int64]) -> FloatArray:
    """Economiser switches in the last :data:`SWITCH_WINDOW` periods of each period (its own
    switch included), counted within each unbroken sequence."""
    on = np.asarray(economiser, dtype=np.float64) > 0.5
    seq = np.asarray(sequence)
    n = len(on)
    switched = np.zeros(n)
    switched[1:] = (on[1:] != on[:-1]) & (seq[1:] == seq[:-1])
    counts = switched.copy()
    for lag in range(1, min(SWITCH_WINDOW, n)):
        counts[lag:] += switched[:-lag] * (seq[lag:] == seq[:-lag])
    return counts


def period_features(data: PeriodData, scale: ActionScale) -> FloatArray:
    """The features of recorded control periods (the twin's training or held-out data)."""
    sp = data.setpoints.double().numpy()
    seq = data.sequence.numpy()
    prev = sp.copy()
    same = seq[1:] == seq[:-1]
    prev[1:][same] = sp[:-1][same]
    hall = data.hall.double().numpy()
    return features(sp, prev, switch_counts(sp[:, 4], seq), hall[:, 2], hall[:, 4], scale)


@dataclass(frozen=True)
class Blindness:
    """Why a period lies outside the twin's data: its ratio and the features furthest from
    the nearest training period (in units of each feature's physical range)."""

    ratio: float
    features: tuple[tuple[str, float], ...]


class CompetenceModel:
    """The twin's training data over the competence features (see the module docstring)."""

    def __init__(
        self,
        train: FloatArray,
        scale: ActionScale,
        *,
        k: int = 5,
        quantile: float = 0.99,
        threshold: float | None = None,
    ) -> None:
        train = np.asarray(train, dtype=np.float64)
        if train.ndim != 2 or train.shape[1] != len(FEATURE_NAMES):
            raise ValueError(
                f"competence features must be (periods, {len(FEATURE_NAMES)}), got {train.shape}"
            )
        if len(train) <= k:
            raise ValueError(f"a competence model needs more than k={k} training periods")
        if not np.all(np.isfinite(train)):
            raise ValueError("competence features must be finite")
        if not 0.5 <= quantile < 1.0:
            raise ValueError(f"quantile must lie in [0.5, 1), got {quantile}")
        self.train = train
        self.scale = scale
        self.k = k
        self.quantile = quantile
        self.index = NearestNeighbors(n_neighbors=k + 1).fit(train)
        if threshold is None:
            # Leave-one-out: each training period's distance to its k nearest *others*.
            dist, _ = self.index.kneighbors(train, n_neighbors=k + 1)
            own = dist[:, 1:].mean(axis=1)
            threshold = float(np.quantile(own, quantile))
        self.threshold = max(float(threshold), 1e-6)

    @classmethod
    def fit(
        cls, data: PeriodData, scale: ActionScale | None = None, **kwargs: Any
    ) -> CompetenceModel:
        """The model of recorded periods, features scaled by ``scale`` (default: the full
        actuator envelope)."""
        scale = scale or ActionScale()
        return cls(period_features(data, scale), scale, **kwargs)

    def ratio(self, x: FloatArray) -> FloatArray:
        """Competence ratio (N,) of periods with features ``x`` (N, F): ≤ 1 interpolation."""
        x = np.atleast_2d(np.asarray(x, dtype=np.float64))
        if len(x) == 0:
            return np.zeros(0)
        dist, _ = self.index.kneighbors(x, n_neighbors=self.k)
        out: FloatArray = dist.mean(axis=1) / self.threshold
        return out

    def explain(self, x: FloatArray, top: int = 3) -> list[Blindness]:
        """For each period: its ratio and the ``top`` features furthest from its nearest
        training period (what the twin has not seen)."""
        x = np.atleast_2d(np.asarray(x, dtype=np.float64))
        ratios = self.ratio(x)
        _, idx = self.index.kneighbors(x, n_neighbors=1)
        gaps = np.abs(x - self.train[idx[:, 0]])
        out = []
        for r, gap in zip(ratios, gaps, strict=True):
            order = np.argsort(gap)[::-1][:top]
            out.append(Blindness(float(r), tuple((FEATURE_NAMES[i], float(gap[i])) for i in order)))
        return out

    # ------------------------------------------------------------------ persistence
    def save(self, twin_dir: Path) -> Path:
        path = twin_dir / COMPETENCE_FILE
        meta = {
            "features": list(FEATURE_NAMES),
            "version": FEATURES_VERSION,
            "k": self.k,
            "quantile": self.quantile,
            "threshold": self.threshold,
            "scale": {n: list(getattr(self.scale, n)) for n in ACTION_NAMES[:4]},
        }
        tmp = path.with_suffix(".tmp.npz")
        np.savez_compressed(tmp, train=self.train, meta=np.array(json.dumps(meta)))
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, twin_dir: Path) -> CompetenceModel | None:
        """The competence model saved with a twin, or None if it has none."""
        path = twin_dir / COMPETENCE_FILE
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as saved:
                meta = json.loads(str(saved["meta"]))
                train = np.asarray(saved["train"], dtype=np.float64)
            if list(meta["features"]) != list(FEATURE_NAMES):
                raise ValueError(f"features {meta['features']} are not {list(FEATURE_NAMES)}")
            if int(meta.get("version", 1)) != FEATURES_VERSION:
                raise ValueError(
                    f"its features are version {int(meta.get('version', 1))}, this TwinLoop "
                    f"computes version {FEATURES_VERSION}: refit it "
                    "(twinloop twin competence)"
                )
            scale = ActionScale(**{n: tuple(meta["scale"][n]) for n in ACTION_NAMES[:4]})
            return cls(
                train,
                scale,
                k=int(meta["k"]),
                quantile=float(meta["quantile"]),
                threshold=float(meta["threshold"]),
            )
        except (KeyError, ValueError, OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path}: cannot load the twin's competence model: {exc}") from exc


class CompetenceTracker:
    """Competence features of N environments as they step (setpoints before, economiser
    switches): what :class:`~twin.vec_env.BatchedTwin` feeds the model each period."""

    def __init__(self, model: CompetenceModel, n: int) -> None:
        self.model = model
        self.previous = np.zeros((n, len(ACTION_NAMES)))
        self.switches = np.zeros((n, SWITCH_WINDOW))

    def reset(self, envs: NDArray[np.int64], setpoints: FloatArray) -> None:
        self.previous[envs] = setpoints
        self.switches[envs] = 0.0

    def step(
        self, setpoints: FloatArray, chw_supply_c: FloatArray, cw_supply_c: FloatArray
    ) -> FloatArray:
        """The features of this period for every environment (and remember its setpoints)."""
        sp = np.asarray(setpoints, dtype=np.float64)
        switched = (sp[:, 4] > 0.5) != (self.previous[:, 4] > 0.5)
        self.switches = np.roll(self.switches, 1, axis=1)
        self.switches[:, 0] = switched
        x = features(
            sp,
            self.previous,
            self.switches.sum(axis=1),
            chw_supply_c,
            cw_supply_c,
            self.model.scale,
        )
        self.previous = sp.copy()
        return x

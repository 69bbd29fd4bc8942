"""What a policy sees and sets: the observation layout and the scaled action, shared by every
environment (twin, batched twin, plant) so a policy trained in one runs in the others.

Actions are the five setpoints a controller writes to the BMS
(:data:`physics.plant.site_control.SETPOINT_FIELDS`), scaled to [-1, 1]: CRAH supply-air
temperature, CRAH fan speed, chilled-water supply temperature, condenser-water supply
temperature, economiser enable (on when > 0). Observations are what a BMS gives, condensed
per pod, plus time features and forecasts, each centred and scaled to order one by fixed
constants (no running statistics, so the same reading always maps to the same number).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from gymnasium import spaces
from numpy.typing import ArrayLike, NDArray

from physics.plant.site import SetpointLimits

FloatArray = NDArray[np.float64]

FORECAST_WET_BULB_H: tuple[float, float] = (1.0, 3.0)
"""Lead times of the outdoor wet-bulb forecasts in the observation."""
FORECAST_IT_H = 1.0
"""Lead time of the IT-power forecast: the current IT power scaled by the scheduled change
in mean utilisation (the same rule in every environment)."""

ACTION_NAMES: tuple[str, ...] = (
    "supply_air_c",
    "fan_speed_frac",
    "chw_supply_c",
    "cw_supply_c",
    "economiser_enable",
)
"""Action components, in order; the same names as the plant's setpoint fields."""


OBSERVATION_BOUND = 100.0
"""Observations are clipped to ±this. They are scaled to order one, so only an absurd reading
reaches it; a finite bound keeps ``check_env`` quiet. Every environment over the same
:class:`ObservationSpec` must use the same bound, as SB3 refuses to load a policy into an
environment whose spaces differ."""


@dataclass(frozen=True)
class ActionScale:
    """Maps actions in [-1, 1] to setpoints and back (linear per component).

    The ranges default to the plant's actuator envelope; a site may narrow them.
    """

    supply_air_c: tuple[float, float] = (16.0, 27.0)
    fan_speed_frac: tuple[float, float] = (0.3, 1.0)
    chw_supply_c: tuple[float, float] = (5.5, 16.0)
    cw_supply_c: tuple[float, float] = (10.0, 35.0)

    def __post_init__(self) -> None:
        for name in ACTION_NAMES[:4]:
            low, high = getattr(self, name)
            if not (math.isfinite(low) and math.isfinite(high) and low < high):
                raise ValueError(f"ActionScale.{name}: need low < high, got ({low}, {high})")

    @classmethod
    def within(cls, limits: SetpointLimits) -> ActionScale:
        """The default ranges narrowed to an actuator envelope."""
        base = cls()

        def cut(name: str) -> tuple[float, float]:
            low, high = getattr(base, name)
            lim_low, lim_high = getattr(limits, name)
            return max(low, lim_low), min(high, lim_high)

        return cls(**{name: cut(name) for name in ACTION_NAMES[:4]})

    @property
    def low(self) -> FloatArray:
        return np.array([*(getattr(self, n)[0] for n in ACTION_NAMES[:4]), 0.0])

    @property
    def high(self) -> FloatArray:
        return np.array([*(getattr(self, n)[1] for n in ACTION_NAMES[:4]), 1.0])

    def to_setpoints(self, action: ArrayLike) -> FloatArray:
        """Setpoints (..., 5) for actions (..., 5); actions are clipped to [-1, 1] first and
        the economiser component becomes 0/1."""
        a = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        if a.shape[-1] != len(ACTION_NAMES):
            raise ValueError(f"an action has {len(ACTION_NAMES)} components, got {a.shape[-1]}")
        sp = self.low + (a + 1.0) * 0.5 * (self.high - self.low)
        sp[..., 4] = (a[..., 4] > 0.0).astype(np.float64)
        return np.asarray(sp, dtype=np.float64)

    def to_action(self, setpoints: ArrayLike) -> FloatArray:
        """Inverse of :meth:`to_setpoints` (economiser 1 → +1, 0 → -1)."""
        sp = np.asarray(setpoints, dtype=np.float64)
        a = 2.0 * (sp - self.low) / (self.high - self.low) - 1.0
        a[..., 4] = np.where(sp[..., 4] >= 0.5, 1.0, -1.0)
        return np.asarray(np.clip(a, -1.0, 1.0), dtype=np.float64)


@dataclass(frozen=True)
class ObservationSpec:
    """Names, centres and scales of the observation vector for a site with ``n_pods`` pods.

    Per pod: hottest and mean rack inlet, hot-aisle temperature. Hall: supply and return air,
    chilled-water supply and return, condenser-water supply; IT, cooling and facility power;
    outdoor dry and wet bulb. Time: hour of day and day of year as sine/cosine. Forecasts:
    outdoor wet bulb in 1 h and 3 h, IT power in 1 h. Last applied action (scaled).
    """

    n_pods: int = 4
    design_it_kw: float = 1_000.0

    @functools.cached_property
    def names(self) -> tuple[str, ...]:
        pods = [
            f"{kind}.{p}"
            for p in range(self.n_pods)
            for kind in ("rack_inlet_max_c", "rack_inlet_mean_c", "hot_aisle_c")
        ]
        return (
            *pods,
            "supply_air_c",
            "return_air_c",
            "chw_supply_c",
            "chw_return_c",
            "cw_supply_c",
            "it_power_kw",
            "cooling_power_kw",
            "facility_power_kw",
            "outdoor_dry_bulb_c",
            "outdoor_wet_bulb_c",
            "hour_sin",
            "hour_cos",
            "day_sin",
            "day_cos",
            "forecast_wet_bulb_1h_c",
            "forecast_wet_bulb_3h_c",
            "forecast_it_power_1h_kw",
            *(f"last_action.{name}" for name in ACTION_NAMES),
        )

    @property
    def size(self) -> int:
        return len(self.names)

    def centre_scale(self) -> tuple[FloatArray, FloatArray]:
        """Per-component (centre, scale): the observation is ``(x - centre) / scale``."""
        return self._centre_scale

    @functools.cached_property
    def _centre_scale(self) -> tuple[FloatArray, FloatArray]:
        it = self.design_it_kw
        table: dict[str, tuple[float, float]] = {
            "rack_inlet_max_c": (24.0, 5.0),
            "rack_inlet_mean_c": (22.0, 5.0),
            "hot_aisle_c": (35.0, 8.0),
            "supply_air_c": (20.0, 5.0),
            "return_air_c": (32.0, 8.0),
            "chw_supply_c": (10.0, 5.0),
            "chw_return_c": (15.0, 5.0),
            "cw_supply_c": (27.0, 6.0),
            "it_power_kw": (0.6 * it, 0.3 * it),
            "cooling_power_kw": (0.25 * it, 0.15 * it),
            "facility_power_kw": (1.4 * it, 0.5 * it),
            "outdoor_dry_bulb_c": (25.0, 10.0),
            "outdoor_wet_bulb_c": (20.0, 8.0),
            "forecast_wet_bulb_1h_c": (20.0, 8.0),
            "forecast_wet_bulb_3h_c": (20.0, 8.0),
            "forecast_it_power_1h_kw": (0.6 * it, 0.3 * it),
        }
        centre, scale = [], []
        for name in self.names:
            key = name.split(".")[0]
            c, s = table.get(key, (0.0, 1.0))
            centre.append(c)
            scale.append(s)
        return np.array(centre), np.array(scale)


def time_features(time_h: ArrayLike) -> FloatArray:
    """(…, 4): sine/cosine of the hour of day and of the day of year for hours of the year."""
    t = np.asarray(time_h, dtype=np.float64)
    day = 2.0 * np.pi * (t % 24.0) / 24.0
    year = 2.0 * np.pi * (t % 8760.0) / 8760.0
    return np.stack([np.sin(day), np.cos(day), np.sin(year), np.cos(year)], axis=-1)


COOLING_POWER_POINTS: tuple[str, ...] = (
    "crah_fan_power_kw",
    "chw_pump_power_kw",
    "cw_pump_power_kw",
    "tower_fan_power_kw",
)
"""Cooling power meters besides the chillers (``chiller_power_kw.<k>``), summed with them."""


@dataclass(frozen=True)
class HallReadings:
    """The readings a policy's observation is built from; leading axis = environments.

    ``rack_inlet_c`` (N, pods, racks), ``hot_aisle_c`` (N, pods), the rest (N,).
    """

    rack_inlet_c: FloatArray
    hot_aisle_c: FloatArray
    supply_air_c: FloatArray
    return_air_c: FloatArray
    chw_supply_c: FloatArray
    chw_return_c: FloatArray
    cw_supply_c: FloatArray
    it_power_kw: FloatArray
    cooling_power_kw: FloatArray
    facility_power_kw: FloatArray
    outdoor_dry_bulb_c: FloatArray
    outdoor_wet_bulb_c: FloatArray

    @classmethod
    def from_points(
        cls, names: tuple[str, ...], values: ArrayLike, n_pods: int, racks_per_pod: int
    ) -> HallReadings:
        """From a plant/BMS reading matrix (N, points) with point names (see
        :func:`physics.plant.sensors.point_catalog`). Missing readings (NaN) stay NaN."""
        v = np.atleast_2d(np.asarray(values, dtype=np.float64))
        index = {n: i for i, n in enumerate(names)}

        def col(name: str) -> FloatArray:
            try:
                return v[:, index[name]]
            except KeyError:
                raise KeyError(f"reading has no point {name!r}") from None

        inlets = np.stack(
            [
                np.stack([col(f"rack_inlet_c.{p}.{r:02d}") for r in range(racks_per_pod)], -1)
                for p in range(n_pods)
            ],
            axis=1,
        )
        chillers = [n for n in names if n.startswith("chiller_power_kw.")]
        cooling = sum((col(n) for n in (*COOLING_POWER_POINTS, *chillers)), np.zeros(v.shape[0]))
        return cls(
            rack_inlet_c=inlets,
            hot_aisle_c=np.stack([col(f"hot_aisle_c.{p}") for p in range(n_pods)], -1),
            supply_air_c=col("supply_air_c"),
            return_air_c=col("return_air_c"),
            chw_supply_c=col("chw_supply_c"),
            chw_return_c=col("chw_return_c"),
            cw_supply_c=col("cw_supply_c"),
            it_power_kw=sum((col(f"it_power_kw.{p}") for p in range(n_pods)), np.zeros(v.shape[0])),
            cooling_power_kw=cooling,
            facility_power_kw=col("facility_power_kw"),
            outdoor_dry_bulb_c=col("outdoor_dry_bulb_c"),
            outdoor_wet_bulb_c=col("outdoor_wet_bulb_c"),
        )


def build_observation(
    spec: ObservationSpec,
    readings: HallReadings,
    *,
    time_h: ArrayLike,
    forecast_wet_bulb_1h_c: ArrayLike,
    forecast_wet_bulb_3h_c: ArrayLike,
    forecast_it_power_1h_kw: ArrayLike,
    last_action: ArrayLike,
) -> NDArray[np.float32]:
    """The scaled observation (N, spec.size) as float32. Missing readings (NaN) become the
    component's centre (0 after scaling), so a dropout never feeds NaN to a policy."""
    inlet = readings.rack_inlet_c
    n = inlet.shape[0]
    if np.isnan(inlet).any():
        with np.errstate(all="ignore"):
            inlet_max = np.max(np.where(np.isnan(inlet), -np.inf, inlet), axis=2)
            inlet_max = np.where(np.isfinite(inlet_max), inlet_max, np.nan)
            inlet_mean = np.nanmean(inlet, axis=2)
    else:
        inlet_max, inlet_mean = inlet.max(axis=2), inlet.mean(axis=2)
    pods = np.stack([inlet_max, inlet_mean, readings.hot_aisle_c], axis=2).reshape(n, -1)

    def per_env(x: ArrayLike) -> FloatArray:
        return np.broadcast_to(np.asarray(x, dtype=np.float64), (n,))

    hall = np.stack(
        [
            readings.supply_air_c,
            readings.return_air_c,
            readings.chw_supply_c,
            readings.chw_return_c,
            readings.cw_supply_c,
            readings.it_power_kw,
            readings.cooling_power_kw,
            readings.facility_power_kw,
            readings.outdoor_dry_bulb_c,
            readings.outdoor_wet_bulb_c,
        ],
        axis=1,
    )
    times = np.broadcast_to(time_features(time_h), (n, 4))
    forecasts = np.stack(
        [
            per_env(forecast_wet_bulb_1h_c),
            per_env(forecast_wet_bulb_3h_c),
            per_env(forecast_it_power_1h_kw),
        ],
        axis=1,
    )
    action = np.broadcast_to(np.asarray(last_action, dtype=np.float64), (n, len(ACTION_NAMES)))
    raw = np.concatenate([pods, hall, times, forecasts, action], axis=1)
    centre, scale = spec.centre_scale()
    obs = (raw - centre) / scale
    return np.nan_to_num(obs, nan=0.0, posinf=10.0, neginf=-10.0).astype(np.float32)


def observation_space(spec: ObservationSpec) -> spaces.Box[np.float32]:
    """The observation space of every TwinLoop environment over ``spec``."""
    return spaces.Box(-OBSERVATION_BOUND, OBSERVATION_BOUND, (spec.size,), dtype=np.float32)


def action_space() -> spaces.Box[np.float32]:
    """The action space of every TwinLoop environment: the scaled setpoints."""
    return spaces.Box(-1.0, 1.0, (len(ACTION_NAMES),), dtype=np.float32)


def vector_spaces(spec: ObservationSpec, num_envs: int) -> dict[str, spaces.Box[np.float32]]:
    """A vector env's single and batched observation and action spaces (attribute names
    of Gymnasium's ``VectorEnv``)."""
    return {
        "single_observation_space": observation_space(spec),
        "single_action_space": action_space(),
        "observation_space": spaces.Box(
            -OBSERVATION_BOUND, OBSERVATION_BOUND, (num_envs, spec.size), np.float32
        ),
        "action_space": spaces.Box(-1.0, 1.0, (num_envs, len(ACTION_NAMES)), np.float32),
    }

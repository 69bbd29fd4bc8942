"""The plant's sensor points and the measurement model between truth and reading.

Every reading is truth + per-site calibration bias (hidden) + slow drift + white noise;
scheduled sensor faults add bias or freeze a point; random dropouts give NaN with bad
quality. Noise scales with the scenario's noise level (0 = perfect sensors).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from physics.plant.faults import FaultEffects
from physics.plant.site import SiteConfig

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]


@dataclass(frozen=True)
class PointSpec:
    """One sensor point as a BMS would list it."""

    name: str
    unit: str


@dataclass(frozen=True)
class SensorNoise:
    """Measurement quality. ``level`` scales every noise, bias and drift term."""

    level: float = 1.0
    temperature_std_c: float = 0.1
    temperature_bias_std_c: float = 0.1
    temperature_drift_std_c_per_day: float = 0.01
    relative_std: float = 0.01
    """Noise of power and flow meters, relative to the reading."""
    fraction_std: float = 0.005
    dropout_prob: float = 0.0

    def __post_init__(self) -> None:
        if self.level < 0:
            raise ValueError("noise level must not be negative")
        if not 0.0 <= self.dropout_prob < 1.0:
            raise ValueError("dropout_prob must lie in [0, 1)")


def point_catalog(config: SiteConfig) -> tuple[PointSpec, ...]:
    """Every sensor point of the site, in the order of the plant's truth vector."""
    pts: list[PointSpec] = []
    for p in range(config.n_pods):
        pts += [PointSpec(f"rack_inlet_c.{p}.{r:02d}", "degC") for r in range(config.racks_per_pod)]
    pts += [PointSpec(f"hot_aisle_c.{p}", "degC") for p in range(config.n_pods)]
    pts += [PointSpec(f"it_power_kw.{p}", "kW") for p in range(config.n_pods)]
    pts += [
        PointSpec("supply_air_c", "degC"),
        PointSpec("return_air_c", "degC"),
        PointSpec("crah_fan_speed_frac", "frac"),
        PointSpec("crah_fan_power_kw", "kW"),
        PointSpec("crah_airflow_kg_s", "kg/s"),
    ]
    pts += [PointSpec(f"crah_valve_frac.{i:02d}", "frac") for i in range(config.n_crah)]
    pts += [PointSpec(f"crah_running.{i:02d}", "bool") for i in range(config.n_crah)]
    pts += [
        PointSpec("chw_supply_c", "degC"),
        PointSpec("chw_return_c", "degC"),
        PointSpec("chw_flow_kg_s", "kg/s"),
        PointSpec("chw_pump_power_kw", "kW"),
    ]
    pts += [PointSpec(f"chiller_power_kw.{k}", "kW") for k in range(config.n_chillers)]
    pts += [PointSpec(f"chiller_running.{k}", "bool") for k in range(config.n_chillers)]
    pts += [PointSpec(f"chiller_alarm.{k}", "bool") for k in range(config.n_chillers)]
    pts += [
        PointSpec("chillers_on", "count"),
        PointSpec("cw_supply_c", "degC"),
        PointSpec("cw_return_c", "degC"),
        PointSpec("cw_pump_power_kw", "kW"),
        PointSpec("tower_fan_power_kw", "kW"),
        PointSpec("tower_fan_speed_frac", "frac"),
        PointSpec("tower_fan_alarm", "bool"),
        PointSpec("economiser_enabled", "bool"),
        PointSpec("ups_output_kw", "kW"),
        PointSpec("facility_power_kw", "kW"),
        PointSpec("outdoor_dry_bulb_c", "degC"),
        PointSpec("outdoor_wet_bulb_c", "degC"),
        PointSpec("outdoor_rel_hum_frac", "frac"),
    ]
    return tuple(pts)


@dataclass(frozen=True)
class SensorFrame:
    """Readings of every point at one instant; quality False marks a dropout (value NaN)."""

    time_s: float
    names: tuple[str, ...]
    values: FloatArray  # (sites, points)
    quality: BoolArray  # (sites, points)

    def as_dict(self, site: int = 0) -> dict[str, float]:
        return {n: float(v) for n, v in zip(self.names, self.values[site], strict=True)}


class SensorModel:
    """Turns the plant's truth vector into readings."""

    def __init__(
        self, points: tuple[PointSpec, ...], noise: SensorNoise, seeds: tuple[int, ...]
    ) -> None:
        self.points = points
        self.names = tuple(p.name for p in points)
        self._index = {n: i for i, n in enumerate(self.names)}
        self._noise = noise
        n_sites, n_points = len(seeds), len(points)
        units = np.array([p.unit for p in points])
        self._is_temp = units == "degC"
        self._is_relative = np.isin(units, ["kW", "kg/s"])
        self._is_fraction = units == "frac"
        self._rng = np.random.default_rng(np.random.SeedSequence([*seeds, 0x5E45]))
        # Dropouts draw from their own stream, so reading n steps at once or one at a
        # time gives the same readings.
        self._dropout_rng = np.random.default_rng(np.random.SeedSequence([*seeds, 0xD809]))
        level = noise.level
        self._bias = (
            np.where(
                self._is_temp,
                self._rng.normal(0.0, noise.temperature_bias_std_c, (n_sites, n_points)),
                0.0,
            )
            * level
        )
        self._drift_per_s = np.where(
            self._is_temp,
            self._rng.normal(0.0, noise.temperature_drift_std_c_per_day, (n_sites, n_points)),
            0.0,
        ) * (level / 86_400.0)
        self._abs_std = level * np.where(
            self._is_temp,
            noise.temperature_std_c,
            np.where(self._is_fraction, noise.fraction_std, 0.0),
        )
        self._rel_std = level * np.where(self._is_relative, noise.relative_std, 0.0)
        self._stuck_values: dict[str, FloatArray] = {}

    def index(self, name: str) -> int:
        try:
            return self._index[name]
        except KeyError:
            raise KeyError(f"unknown sensor point {name!r}") from None

    def read(self, truth: FloatArray, time_s: float, effects: FaultEffects) -> SensorFrame:
        """Readings for a truth matrix of shape (sites, points)."""
        values, quality = self.read_many(truth[None], np.array([time_s]), effects)
        return SensorFrame(time_s=time_s, names=self.names, values=values[0], quality=quality[0])

    def read_many(
        self, truth: FloatArray, times_s: FloatArray, effects: FaultEffects
    ) -> tuple[FloatArray, BoolArray]:
        """Readings and quality for truth of shape (steps, sites, points) under one set of
        fault effects; the same numbers as reading the steps one by one."""
        shape = truth.shape
        # values = truth + bias + drift·t + N(0, 1)·(abs_std + rel_std·|truth|), in place.
        values = np.abs(truth)
        values *= self._rel_std
        values += self._abs_std
        values *= self._rng.standard_normal(shape, dtype=np.float32)
        values += truth
        values += self._bias
        values += self._drift_per_s * times_s[:, None, None]
        for name, bias in effects.sensor_bias.items():
            values[..., self.index(name)] += bias
        for name in effects.sensor_stuck:
            i = self.index(name)
            frozen = self._stuck_values.setdefault(name, values[0, :, i].copy())
            values[..., i] = frozen
        for name in list(self._stuck_values):
            if name not in effects.sensor_stuck:
                del self._stuck_values[name]
        quality = np.ones(shape, dtype=bool)
        if self._noise.dropout_prob > 0:
            quality = self._dropout_rng.random(shape) >= self._noise.dropout_prob
            values = np.where(quality, values, np.nan)
        return values, quality

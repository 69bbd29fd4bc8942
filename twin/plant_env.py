"""A Gymnasium environment over the plant: the ground truth on which policies are evaluated.

One step is one control period of the scenario. The action (five numbers in [-1, 1], see
:class:`~twin.spaces.ActionScale`) becomes a :class:`SetpointCommand` that expires at the end of
the period; the plant then advances ``steps_per_period`` internal steps. The policy sees only
sensor readings (:func:`~twin.spaces.build_observation`); the reward is computed from readings
too, exactly as the twin environment computes it, so a policy trained in the twin is scored the
same way here. Readings pass the sensor check first (:mod:`twin.sensor_check`; on by default,
``sensor_check=None`` turns it off): a biased or stuck inlet or supply-air sensor is replaced by
its estimate in the observation and the reward, and reported in ``info["sensor_flags"]``.
The plant's truth log (``true_*`` in ``info``) is for evaluation only. The observation's
forecasts are the site's (:mod:`twin.forecast`): the weather file plus the error of the
scenario's forecast level, and IT power from the readings seen so far.

Each reset builds a fresh plant over the episode's window of the scenario. The window opens
with one control period under the site's own control (the *lead-in*), whose readings give the
first observation; the episode's periods follow it. An episode therefore fits in the scenario
when it is at least one control period shorter than it, and by default it is exactly that.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pandas as pd
from gymnasium import spaces
from numpy.typing import NDArray

from physics.kpi import COOLING_COLUMNS, RACK_INLET_PREFIX, energy_kwh
from physics.plant.faults import FaultEvent
from physics.plant.plant import Plant
from physics.plant.scenario import Scenario, load_scenario
from physics.plant.site_control import SETPOINT_FIELDS, SetpointCommand
from physics.workload import make_workload
from twin.forecast import LoadHistory, WeatherForecast
from twin.reward import CoolingEnergyReward
from twin.sensor_check import SensorCheckConfig, SensorValidator
from twin.spaces import (
    ACTION_NAMES,
    FORECAST_IT_H,
    FORECAST_WET_BULB_H,
    OBSERVATION_BOUND,
    ActionScale,
    HallReadings,
    ObservationSpec,
    action_space,
    build_observation,
    observation_space,
)

FloatArray = NDArray[np.float64]
Obs = NDArray[np.float32]


def shift_faults(faults: tuple[FaultEvent, ...], offset_h: float) -> tuple[FaultEvent, ...]:
    """The faults of a scenario as seen by a run that starts ``offset_h`` into it.

    Events that ended before the offset are dropped; one still active at the offset starts at
    0 with what remains of it (a stuck sensor then freezes at the window's start).
    """
    shifted: list[FaultEvent] = []
    for event in faults:
        start = event.start_h - offset_h
        if event.duration_h is None:
            shifted.append(replace(event, start_h=max(start, 0.0)))
            continue
        end = start + event.duration_h
        if end <= 0.0:
            continue
        begin = max(start, 0.0)
        shifted.append(replace(event, start_h=begin, duration_h=end - begin))
    return tuple(shifted)


@dataclass(frozen=True)
class _LogColumns:
    """Where the plant's truth log keeps what ``info`` reports."""

    cooling: list[int]
    facility: int
    it: int
    inlet: list[int]

    @classmethod
    def of(cls, log_names: tuple[str, ...]) -> _LogColumns:
        index = {name: i for i, name in enumerate(log_names)}
        return cls(
            cooling=[index[c] for c in COOLING_COLUMNS],
            facility=index["facility_power_kw"],
            it=index["it_power_kw"],
            inlet=[i for n, i in index.items() if n.startswith(RACK_INLET_PREFIX)],
        )


class PlantEnv(gym.Env[Obs, Obs]):
    """The plant of a scenario as a Gymnasium environment (one step = one control period).

    ``episode_hours`` defaults to the whole scenario after the lead-in period; it must be a
    whole number of control periods. With ``random_start`` each reset starts the episode at a
    control period drawn uniformly (with the env's ``np_random``) among those where it fits;
    otherwise it starts one period after the scenario's start. The plant itself is
    deterministic given the scenario's seeds, so a seed fixes the whole trajectory.
    """

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012 (gymnasium's declaration)

    def __init__(
        self,
        scenario: str | Path | Scenario = "tropical-typical-week",
        episode_hours: float | None = None,
        reward: CoolingEnergyReward | None = None,
        action_scale: ActionScale | None = None,
        random_start: bool = False,
        record_log: bool = False,
        sensor_check: SensorCheckConfig | None = SensorCheckConfig(),  # noqa: B008 (frozen)
    ) -> None:
        super().__init__()
        self.scenario = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
        sc = self.scenario
        site = sc.site
        self.random_start = bool(random_start)
        self.record_log = bool(record_log)
        self.sensor_check = sensor_check
        self.sensor_validator: SensorValidator | None = None
        self._logs: list[FloatArray] = []
        self.reward_fn = reward if reward is not None else CoolingEnergyReward()
        self.action_scale = action_scale or ActionScale.within(site.limits)
        self.period_s = sc.control_period_s
        self.steps_per_period = sc.steps_per_period
        self.scenario_periods = sc.n_steps // self.steps_per_period
        self.episode_periods = self._episode_periods(episode_hours)
        self.observation_spec = ObservationSpec(
            n_pods=site.n_pods, design_it_kw=site.n_racks * site.server.max_power_kw
        )
        self.observation_space: spaces.Box[np.float32] = observation_space(self.observation_spec)
        self.action_space: spaces.Box[np.float32] = action_space()

        # Constant across resets: the weather and the workload of the whole scenario.
        self._weather = sc.weather()
        self._last_weather_h = float(self._weather.time_h[-1])
        self._grid_h = sc.start_h + np.arange(sc.n_steps) * sc.step_s / 3600.0
        self._utilisation = make_workload(sc.workload, self._grid_h, site.n_pods, seed=sc.seed)
        self.weather_forecast = WeatherForecast.for_scenario(sc)
        self._load = LoadHistory(1, self.period_s / 3600.0)

        self.plant: Plant | None = None
        self._columns: _LogColumns | None = None
        self._period = 0
        self._last_action = np.zeros(len(ACTION_NAMES), dtype=np.float64)
        self._held_cooling_kw = 0.0
        self._held_inlet_c = np.full(site.n_racks, self.reward_fn.recommended_c)

    def _episode_periods(self, episode_hours: float | None) -> int:
        sc, period_h = self.scenario, self.period_s / 3600.0
        most = self.scenario_periods - 1
        if most < 1:
            raise ValueError(
                f"scenario {sc.name} ({sc.duration_h:g} h) is too short for an episode: it "
                f"needs at least two control periods of {self.period_s:g} s"
            )
        if episode_hours is None:
            return most
        hours = float(episode_hours)
        if not (math.isfinite(hours) and hours > 0.0):
            raise ValueError(f"episode_hours must be a positive number of hours, got {hours}")
        periods = round(hours / period_h)
        if periods < 1 or abs(periods * period_h - hours) > 1e-9 * max(hours, 1.0):
            raise ValueError(
                f"episode_hours={hours:g} is not a whole number of control periods "
                f"({self.period_s:g} s) of scenario {sc.name}"
            )
        if periods > most:
            raise ValueError(
                f"episode_hours={hours:g} does not fit in scenario {sc.name}: at most "
                f"{most * period_h:g} h ({sc.duration_h:g} h less the lead-in control period "
                "that gives the first observation)"
            )
        return periods

    # ------------------------------------------------------------------ Gymnasium API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Obs, dict[str, Any]]:
        super().reset(seed=seed)
        site = self.scenario.site
        free = self.scenario_periods - 1 - self.episode_periods
        first = int(self.np_random.integers(0, free + 1)) if self.random_start else 0
        self.plant = self._build_plant(first)
        self._period = 0
        self._last_action = np.zeros(len(ACTION_NAMES), dtype=np.float64)
        self._held_cooling_kw = 0.0
        self._held_inlet_c = np.full(self.scenario.site.n_racks, self.reward_fn.recommended_c)
        self._load.reset()
        if self.sensor_check is not None:
            self.sensor_validator = SensorValidator(
                self.plant.point_names, site.n_pods, site.racks_per_pod, self.sensor_check
            )
        logs, readings = self.plant.advance(self.steps_per_period)  # the lead-in period
        self._logs = [logs[:, 0]] if self.record_log else []
        checked = self._checked(readings[:, 0])
        hall = self._hall(checked)
        self._period_cooling_kw(hall)
        self._period_inlet_c(hall)
        info = {"time_h": self.plant.time_h, "start_period": first + 1}
        info.update(self._sensor_info())
        return self._observe(checked[-1]), info

    def step(self, action: Obs) -> tuple[Obs, float, bool, bool, dict[str, Any]]:
        plant = self.plant
        if plant is None:
            raise RuntimeError("PlantEnv.step() before reset()")
        if self._period >= self.episode_periods:
            raise RuntimeError("PlantEnv.step() after the episode was truncated; call reset()")
        a = np.asarray(action, dtype=np.float64)
        if a.shape != (len(ACTION_NAMES),):
            raise ValueError(f"action must have shape ({len(ACTION_NAMES)},), got {a.shape}")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"action must be finite, got {a.tolist()}")
        setpoints = self.action_scale.to_setpoints(a)
        applied = dict(zip(ACTION_NAMES, (float(v) for v in setpoints), strict=True))
        plant.apply_command(
            SetpointCommand(
                command_id=f"env-{self._period}",
                expires_at_s=plant.time_s + self.period_s,
                **{name: applied[name] for name in SETPOINT_FIELDS},
            )
        )
        logs, readings = plant.advance(self.steps_per_period)
        if self.record_log:
            self._logs.append(logs[:, 0])
        self._period += 1
        self._last_action = np.clip(a, -1.0, 1.0)

        checked = self._checked(readings[:, 0])
        hall = self._hall(checked)
        value, terms = self.reward_fn(
            cooling_power_kw=self._period_cooling_kw(hall),
            inlet_c=self._period_inlet_c(hall),
            period_s=self.period_s,
        )
        info: dict[str, Any] = {name: float(term) for name, term in terms.items()}
        info["setpoints"] = applied
        info.update(self._truth(logs[:, 0]))
        info["time_h"] = plant.time_h
        info.update(self._sensor_info())
        truncated = self._period >= self.episode_periods
        return self._observe(checked[-1]), float(value), False, truncated, info

    def close(self) -> None:
        self.plant = None

    def log_frame(self) -> pd.DataFrame:
        """The plant's ground truth of the episode so far, lead-in included (one row per plant
        step, columns ``Plant.log_names``) — for evaluation KPIs; needs ``record_log``."""
        if not self.record_log:
            raise RuntimeError("PlantEnv(record_log=True) keeps the ground-truth log")
        if self.plant is None or not self._logs:
            raise RuntimeError("no episode recorded yet; call reset()")
        return pd.DataFrame(np.concatenate(self._logs), columns=list(self.plant.log_names))

    # ------------------------------------------------------------------ internals
    def _build_plant(self, first_period: int) -> Plant:
        """The plant over the window that opens at control period ``first_period`` (the
        lead-in) and holds the episode: :func:`~physics.plant.simulation.build_plant` for that
        window, with the scenario's weather and workload reused rather than rebuilt."""
        sc = self.scenario
        first = first_period * self.steps_per_period
        n_steps = (self.episode_periods + 1) * self.steps_per_period
        offset_h = first * sc.step_s / 3600.0
        plant = Plant(
            sc.site,
            weather=self._weather,
            utilisation=self._utilisation[first : first + n_steps],
            start_h=sc.start_h + offset_h,
            faults=shift_faults(sc.faults, offset_h),
            seeds=(sc.site_seed,),
            step_s=sc.step_s,
            noise=sc.noise,
        )
        if self._columns is None:
            self._columns = _LogColumns.of(plant.log_names)
        return plant

    def _checked(self, readings: FloatArray) -> FloatArray:
        """The period's readings (steps, points) with distrusted sensors substituted
        (:mod:`twin.sensor_check`); unchanged when the check is off."""
        if self.sensor_validator is None:
            return readings
        assert self.plant is not None
        return self.sensor_validator.update(self.plant.time_s, readings)

    def _sensor_info(self) -> dict[str, Any]:
        """``sensor_flags``: every distrusted sensor; ``sensor_flags_raised`` and
        ``sensor_flags_cleared``: what changed this period (tuples of SensorFlag)."""
        v = self.sensor_validator
        if v is None:
            return {}
        return {
            "sensor_flags": v.flags,
            "sensor_flags_raised": v.raised,
            "sensor_flags_cleared": v.cleared,
        }

    def _hall(self, readings: FloatArray) -> HallReadings:
        """Readings (steps, points) of one site as hall readings."""
        assert self.plant is not None
        site = self.scenario.site
        return HallReadings.from_points(
            self.plant.point_names, readings, site.n_pods, site.racks_per_pod
        )

    def _period_cooling_kw(self, hall: HallReadings) -> float:
        """Mean metered cooling power over the period; a period without one valid reading
        holds the last period's value."""
        power = hall.cooling_power_kw
        valid = np.isfinite(power)
        if valid.any():
            self._held_cooling_kw = float(power[valid].mean())
        return self._held_cooling_kw

    def _period_inlet_c(self, hall: HallReadings) -> FloatArray:
        """Hottest reading of each rack inlet over the period, (racks,). A rack without a
        valid reading takes the hottest rack's, so a dropout never hides a hot spot; a period
        without any valid inlet reading holds the last period's values."""
        inlet = hall.rack_inlet_c.reshape(hall.rack_inlet_c.shape[0], -1)
        hottest = np.where(np.isfinite(inlet), inlet, -np.inf).max(axis=0)
        seen = np.isfinite(hottest)
        if seen.any():
            self._held_inlet_c = np.where(seen, hottest, hottest[seen].max())
        return self._held_inlet_c.copy()

    def _truth(self, log: FloatArray) -> dict[str, float]:
        """Ground-truth energies (kWh) and hottest inlet of the period from the truth log."""
        step_s, cols = self.scenario.step_s, self._columns
        assert cols is not None
        return {
            "true_cooling_kwh": float(energy_kwh(log[:, cols.cooling].sum(axis=1), step_s)),
            "true_facility_kwh": float(energy_kwh(log[:, cols.facility], step_s)),
            "true_it_kwh": float(energy_kwh(log[:, cols.it], step_s)),
            "true_max_inlet_c": float(log[:, cols.inlet].max()),
        }

    def _observe(self, last: FloatArray) -> Obs:
        """The observation from the last readings (points,) and the site's forecasts at plant
        time (records this period's IT reading in the load history: once per period)."""
        assert self.plant is not None
        time_h = self.plant.time_h
        hall = self._hall(last[None, :])
        leads = np.asarray(FORECAST_WET_BULB_H)
        ahead = np.minimum(time_h + leads, self._last_weather_h)
        truth = self._weather.at(ahead).wet_bulb_c[None, :]
        wet_bulb = self.weather_forecast.forecast_c(truth, time_h, leads)[0]
        self._load.record(hall.it_power_kw)
        it_ahead = self._load.forecast_kw([FORECAST_IT_H])[0, 0]
        obs = build_observation(
            self.observation_spec,
            hall,
            time_h=time_h,
            forecast_wet_bulb_1h_c=wet_bulb[0],
            forecast_wet_bulb_3h_c=wet_bulb[1],
            forecast_it_power_1h_kw=it_ahead,
            last_action=self._last_action,
        )[0]
        clipped: Obs = np.clip(obs, -OBSERVATION_BOUND, OBSERVATION_BOUND)
        return clipped

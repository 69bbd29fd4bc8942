"""The batched twin with everything on its device: a vector env whose step never leaves torch.

:class:`DeviceTwin` is :class:`~twin.vec_env.BatchedTwin`'s engine (the same physics,
residual networks, ensemble spread over the environments, unit status and faults from the
scenario's :class:`~twin.exogenous.ExogenousTable`) with the rest of the environment moved
onto the engine's device as well:

* **observations** are built in torch from the same layout and scaling as
  :func:`twin.spaces.build_observation`;
* **forecasts**: the weather forecast's error at the scenario's level depends only on the
  issue time, which is one of the table's periods, so :class:`WeatherForecast`'s errors are
  precomputed once as a (periods, leads) tensor; the IT forecast runs
  :class:`~twin.forecast.LoadHistory`'s seasonal-naive rule over a ring buffer on the device;
* **rewards** and the **pessimism** penalties (:class:`~twin.reward.CoolingEnergyReward`,
  :class:`~twin.reward.Pessimism`; the competence ratio by a nearest-neighbour search in
  torch over the twin's competence data) are tensors;
* **resets** and **domain randomisation** draw from a torch generator on the device, and the
  site's own control that settles a new episode is the economiser's wet-bulb threshold
  (found once from :func:`physics.plant.site_control.site_setpoints`).

Episodes have a fixed length, so which environments end at a step is known on the host
from when they were reset: a step makes no device-to-host transfer at all.

:class:`TorchTwinVectorEnv` is the Gymnasium ``VectorEnv`` over it (same-step autoreset,
observations, rewards, terminations and truncations as tensors; ``infos["final_obs"]`` a
tensor with its ``_final_obs`` mask; reward terms only when asked). :class:`NumpyTwinVectorEnv`
is the thin numpy view on top, for code that wants arrays.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from gymnasium.vector import AutoresetMode, VectorEnv
from numpy.typing import NDArray
from torch import Tensor

from physics.plant.site import SiteDefaults
from physics.plant.site_control import site_control_matrix, site_setpoints
from twin.competence import CW_SETPOINT, SWITCH_WINDOW, CompetenceModel, feature_scale
from twin.forecast import SEASON_H, WeatherForecast
from twin.spaces import (
    ACTION_NAMES,
    FORECAST_IT_H,
    FORECAST_WET_BULB_H,
    OBSERVATION_BOUND,
    vector_spaces,
)
from twin.surrogate import THETA_NAMES, THETA_NOMINAL, TwinState
from twin.vec_env import WARMUP_PERIODS, BatchedTwin, _scatter

COMPETENCE_CHUNK = 16_384
"""Environments per nearest-neighbour search (bounds the distance matrix's memory)."""


def economiser_threshold_c(
    defaults: SiteDefaults, low_c: float = -60.0, high_c: float = 60.0
) -> float:
    """The wet bulb below which the site's own control enables the economiser (at the
    design chilled-water return): ``site_setpoints`` enables it on one side of a single
    threshold, found here by bisection (``±inf`` when it is always or never enabled)."""
    grid = np.linspace(low_c, high_c, 2401)
    on = site_setpoints(defaults, grid).economiser_enable > 0.5
    if on.all():
        return math.inf
    if not on.any():
        return -math.inf
    if np.any(np.diff(on.astype(np.int8)) > 0):
        raise ValueError("the site's economiser is not enabled below a single wet-bulb threshold")
    lo, hi = float(grid[np.nonzero(on)[0][-1]]), float(grid[np.nonzero(~on)[0][0]])
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if site_setpoints(defaults, np.array([mid])).economiser_enable[0] > 0.5:
            lo = mid
        else:
            hi = mid
    return hi


class DeviceLoadHistory:
    """:class:`~twin.forecast.LoadHistory` on a device: each environment's IT power once per
    period in a ring buffer (every environment records at every step, so one write position
    serves all), and the same seasonal-naive forecast."""

    def __init__(
        self, n_envs: int, period_h: float, device: torch.device, *, season_h: float = SEASON_H
    ) -> None:
        self.period_h = float(period_h)
        self.season = max(1, round(season_h / self.period_h))
        self.length = self.season + 2
        self.buffer = torch.full((n_envs, self.length), math.nan, device=device)
        self.position = 0
        """Column of the latest reading."""
        self._cache: dict[tuple[int, int], Tensor] = {}

    def restart(self, envs: Tensor, it_power_kw: Tensor) -> None:
        """Forget the history of ``envs``; ``it_power_kw`` (len(envs),) is their first reading."""
        self.buffer[envs] = math.nan
        self.buffer[envs, self.position] = it_power_kw

    def record(self, it_power_kw: Tensor) -> None:
        """This period's reading (N,) of every environment."""
        self.position = (self.position + 1) % self.length
        self.buffer[:, self.position] = it_power_kw

    def _columns(self, back: int) -> Tensor:
        """Buffer columns of the three periods centred ``back`` before the latest (a device
        index tensor, cached: indexing with a Python list would copy it to the device at
        every step)."""
        key = (self.position, back)
        cols = self._cache.get(key)
        if cols is None:
            ages = [a for a in (back - 1, back, back + 1) if 0 <= a < self.length]
            cols = torch.tensor(
                [(self.position - a) % self.length for a in ages], device=self.buffer.device
            )
            self._cache[key] = cols
        return cols

    def _smoothed(self, back: int) -> Tensor:
        """Three-period means (N,) centred ``back`` periods before the latest."""
        window = self.buffer[:, self._columns(back)]
        valid = torch.isfinite(window)
        count = valid.sum(dim=1)
        total = torch.where(valid, window, 0.0).sum(dim=1)
        return torch.where(count > 0, total / count.clamp(min=1), math.nan)

    def forecast_kw(self, lead_h: float) -> Tensor:
        """IT power (N,) ``lead_h`` hours after the latest reading."""
        steps = min(max(round(lead_h / self.period_h), 0), self.season)
        then = self._smoothed(self.season)
        target = self._smoothed(self.season - steps)
        ratio = torch.clamp(target / then, 0.5, 2.0)
        now = self.buffer[:, self.position]
        seasonal = now * ratio
        return torch.where(torch.isfinite(seasonal), seasonal, now)


class DeviceCompetence:
    """:class:`~twin.competence.CompetenceTracker` and the model's ratio in torch: the
    features of each period and the mean distance to the ``k`` nearest training periods over
    the model's threshold."""

    def __init__(self, model: CompetenceModel, n_envs: int, device: torch.device) -> None:
        self.k = model.k
        self.threshold = float(model.threshold)
        self.train = torch.as_tensor(model.train, dtype=torch.float32, device=device)
        self.scale = torch.as_tensor(feature_scale(model.scale), dtype=torch.float32, device=device)
        self.previous = torch.zeros(n_envs, len(ACTION_NAMES), device=device)
        self.switches = torch.zeros(n_envs, SWITCH_WINDOW, device=device)

    def reset(self, envs: Tensor, setpoints: Tensor) -> None:
        self.previous[envs] = setpoints
        self.switches[envs] = 0.0

    def step(self, setpoints: Tensor, chw_supply_c: Tensor, cw_supply_c: Tensor) -> Tensor:
        """Features (N, F) of this period (and remember its setpoints)."""
        switched = (setpoints[:, 4] > 0.5) != (self.previous[:, 4] > 0.5)
        self.switches = torch.roll(self.switches, 1, dims=1)
        self.switches[:, 0] = switched.to(torch.float32)
        asked = setpoints
        # Condenser water below what the tower delivers counts as reached (features()).
        sp, prev = setpoints.clone(), self.previous.clone()
        sp[:, CW_SETPOINT] = torch.maximum(sp[:, CW_SETPOINT], cw_supply_c)
        prev[:, CW_SETPOINT] = torch.maximum(prev[:, CW_SETPOINT], cw_supply_c)
        raw = torch.cat(
            [
                sp,
                (sp[:, :4] - prev[:, :4]).abs(),
                self.switches.sum(dim=1, keepdim=True),
                chw_supply_c[:, None],
                cw_supply_c[:, None],
            ],
            dim=1,
        )
        self.previous = asked.clone()
        return raw / self.scale

    def ratio(self, x: Tensor) -> Tensor:
        """Competence ratio (N,) of features ``x`` (N, F)."""
        parts = []
        for chunk in torch.split(x, COMPETENCE_CHUNK):
            dist = torch.cdist(chunk, self.train)
            parts.append(torch.topk(dist, self.k, dim=1, largest=False).values.mean(dim=1))
        return torch.cat(parts) / self.threshold


class DeviceTwin(BatchedTwin):
    """:class:`BatchedTwin` whose resets, observations, forecasts and rewards stay on its
    device (see the module docstring). Same constructor; ``seed`` seeds a torch generator on
    the device instead of numpy's."""

    def __init__(self, num_envs: int, **kwargs: Any) -> None:
        super().__init__(num_envs, **kwargs)
        dev, f32 = self.device, torch.float32
        n = num_envs
        # BatchedTwin's host-side helpers are replaced by device ones (freed here).
        self.load_history = None  # type: ignore[assignment]
        self.history = DeviceLoadHistory(n, self.period_s / 3600.0, dev)
        self.generator = torch.Generator(device=dev)
        seed = kwargs.get("seed")
        self.generator.manual_seed(int(seed) if seed is not None else int(torch.seed() % 2**63))
        table = self.table
        error = WeatherForecast.for_scenario(self.scenario).error_k(
            table.time_h, FORECAST_WET_BULB_H
        )
        self._forecast_error = torch.as_tensor(error, dtype=f32, device=dev)
        """(periods, leads) error of the wet-bulb forecast issued at each period."""
        last = table.n_periods - 1
        lead_steps = [round(h * 3600.0 / self.period_s) for h in FORECAST_WET_BULB_H]
        rows = np.arange(table.n_periods)
        ahead = np.stack([np.minimum(rows + k, last) for k in lead_steps], axis=1)
        self._ahead = torch.as_tensor(ahead, dtype=torch.int64, device=dev)
        t = table.time_h
        day, year = 2 * np.pi * (t % 24.0) / 24.0, 2 * np.pi * (t % 8760.0) / 8760.0
        times = np.stack([np.sin(day), np.cos(day), np.sin(year), np.cos(year)], axis=1)
        self._time_features = torch.as_tensor(times, dtype=f32, device=dev)
        self._it_total = self._it.sum(dim=-1)
        centre, scale = self.spec.centre_scale()
        self._centre = torch.as_tensor(centre, dtype=f32, device=dev)
        self._scale = torch.as_tensor(scale, dtype=f32, device=dev)
        defaults = self.design.defaults
        self._economiser_below_c = economiser_threshold_c(defaults)
        site = site_control_matrix(defaults, np.array([0.0, 1.0]))
        self._site_off, self._site_on = (torch.as_tensor(r, dtype=f32, device=dev) for r in site)
        r = self.randomisation
        if r is not None:
            self._theta_low = torch.tensor(r.theta_low, dtype=f32, device=dev)
            self._theta_span = torch.tensor(r.theta_high, dtype=f32, device=dev) - self._theta_low
        self._theta_nominal = torch.tensor(THETA_NOMINAL, dtype=f32, device=dev)
        comp = self.competence
        self.device_competence = None if comp is None else DeviceCompetence(comp.model, n, dev)
        self.competence = None  # the host tracker is not used
        self.last_ratio = torch.zeros(n, device=dev)
        """Competence ratio of each environment's last period (0 without the penalty)."""
        self.steps_done = 0
        """Steps since construction (all environments step together)."""
        self._ends: dict[int, list[Tensor]] = {}
        """Step count -> environments whose episode ends then (known from their reset)."""

    # ------------------------------------------------------------------ episodes
    @torch.inference_mode()
    def reset_envs(self, envs: Tensor) -> None:
        """New episodes for ``envs`` (a device index tensor): draw on the device, settle."""
        n = int(envs.numel())
        if n == 0:
            return
        dev, g = self.device, self.generator
        start = (
            torch.randint(0, self.last_start + 1, (n,), generator=g, device=dev)
            if self.random_start
            else torch.zeros(n, dtype=torch.int64, device=dev)
        )
        members = (
            torch.randint(0, len(self.ensemble), (n,), generator=g, device=dev)
            if self.member_per_episode
            else None
        )
        r = self.randomisation
        if r is not None:
            u = torch.rand(n, len(THETA_NAMES) + 2, generator=g, device=dev)
            theta = self._theta_low + u[:, : len(THETA_NAMES)] * self._theta_span
            it_low, it_high = r.it_power_scale
            off_low, off_high = r.weather_offset_k
            it_scale = it_low + (it_high - it_low) * u[:, -2]
            offset = off_low + (off_high - off_low) * u[:, -1]
        else:
            theta = self._theta_nominal.expand(n, -1)
            it_scale = torch.ones(n, device=dev)
            offset = torch.zeros(n, device=dev)
        self.set_episodes(envs, start, theta, it_scale, offset, members)

    @torch.inference_mode()
    def set_episodes(
        self,
        envs: Tensor,
        start: Tensor,
        theta: Tensor,
        it_scale: Tensor,
        weather_offset_k: Tensor,
        member: Tensor | None = None,
    ) -> None:
        """Start episodes for ``envs`` with the given start periods, parameters, IT scales,
        weather offsets (and ensemble members), and settle them under the site's control."""
        dev = self.device
        self.start[envs] = start.to(dev)
        self.elapsed[envs] = 0
        if member is not None:
            self.member_of[envs] = member.to(dev)
        self.theta[envs] = theta.to(dev, torch.float32)
        self.it_scale[envs] = it_scale.to(dev, torch.float32)
        self.weather_offset_k[envs] = weather_offset_k.to(dev, torch.float32)
        rows = self.start[envs]
        wet = self._wet[rows] + self.weather_offset_k[envs]
        on = (wet < self._economiser_below_c)[:, None]
        sp = torch.where(on, self._site_on, self._site_off)
        inputs = self._inputs(sp, rows, envs)
        theta_now = self._theta_at(rows, envs)
        member0 = self.ensemble.member(0)
        settled = self._blank_state(int(envs.numel()))
        for _ in range(WARMUP_PERIODS):
            out = member0(settled, inputs, theta_now)
            settled = out.state
        self.state = _scatter(self.state, envs, settled)
        self.last_cooling_kw[envs] = out.cooling_kw
        self.last_facility_kw[envs] = out.facility_kw
        if self.device_competence is not None:
            self.device_competence.reset(envs, sp)
        a = 2.0 * (sp - self._low) / self._span - 1.0
        a[:, 4] = torch.where(sp[:, 4] >= 0.5, 1.0, -1.0)
        self.last_action[envs] = a.clamp(-1.0, 1.0)
        self.history.restart(envs, self._it_total[rows] * self.it_scale[envs])
        self._ends.setdefault(self.steps_done + self.episode_periods, []).append(envs)

    def forget_episodes(self) -> None:
        """Drop every pending episode end (before all environments are reset anew)."""
        self._ends.clear()

    def ending(self) -> Tensor | None:
        """The environments whose episode ended at the last step (None: none did)."""
        ended = self._ends.pop(self.steps_done, None)
        if ended is None:
            return None
        return ended[0] if len(ended) == 1 else torch.cat(ended)

    # ------------------------------------------------------------------ stepping
    @torch.inference_mode()
    def _advance(self, setpoints: Tensor) -> tuple[TwinState, Tensor, Tensor]:
        """One period; with the ensemble's spread tracked, every member runs once on every
        environment and each environment keeps its own member's result (no index lists:
        no host sync, and one forward per member instead of two)."""
        k = len(self.ensemble)
        if not (self.track_spread and k > 1):
            return super()._advance(setpoints)
        rows = self.start + self.elapsed
        inputs = self._inputs(setpoints, rows, slice(None))
        theta = self._theta_at(rows, slice(None))
        outs = [self._steppers[m](self.state, inputs, theta) for m in range(k)]
        inlets = torch.stack([o.state.rack_inlet_c for o in outs])
        self.last_inlet_spread_c = inlets.std(dim=0).flatten(1).amax(dim=1)
        envs = torch.arange(self.num_envs, device=self.device)

        def pick(values: list[Tensor]) -> Tensor:
            return torch.stack(values)[self.member_of, envs]

        state = TwinState(
            **{
                name: pick([getattr(o.state, name) for o in outs])
                for name in TwinState.__dataclass_fields__
            }
        )
        return state, pick([o.cooling_kw for o in outs]), pick([o.facility_kw for o in outs])

    @torch.inference_mode()
    def step(self, actions: Tensor) -> tuple[Tensor, Tensor]:
        """Advance every environment under ``actions`` (N, 5) in [-1, 1] (no host sync);
        returns the mean cooling power (N,) and the rack inlets at the period's end."""
        a = torch.clamp(actions.to(self.device, torch.float32), -1.0, 1.0)
        sp = self._low + (a + 1.0) * 0.5 * self._span
        sp[:, 4] = (a[:, 4] > 0.0).to(torch.float32)
        comp = self.device_competence
        if comp is not None:
            x = comp.step(sp, self.state.chw_supply_c, self.state.cw_supply_c)
            self.last_ratio = comp.ratio(x)
        state, cooling, facility = self._advance(sp)
        self.state = state
        self.last_cooling_kw = cooling
        self.last_facility_kw = facility
        self.last_travel = (a - self.last_action).abs().sum(dim=1)
        self.last_action = a
        self.elapsed += 1
        self.steps_done += 1
        rows = self.start + self.elapsed
        self.history.record(self._it_total[rows] * self.it_scale)
        return cooling, state.rack_inlet_c

    @torch.inference_mode()
    def observe_tensor(self) -> Tensor:
        """Observations (N, obs) on the device, clipped to the observation bound."""
        s = self.state
        rows = self.start + self.elapsed
        off = self.weather_offset_k
        inlet = s.rack_inlet_c
        n = inlet.shape[0]
        pods = torch.stack([inlet.amax(dim=2), inlet.mean(dim=2), s.hot_aisle_c], dim=2)
        wet_ahead = self._wet[self._ahead[rows]] + off[:, None] + self._forecast_error[rows]
        raw = torch.cat(
            [
                pods.reshape(n, -1),
                torch.stack(
                    [
                        s.supply_air_c,
                        s.return_air_c,
                        s.chw_supply_c,
                        s.chw_return_c,
                        s.cw_supply_c,
                        self._it_total[rows] * self.it_scale,
                        self.last_cooling_kw,
                        self.last_facility_kw,
                        self._dry[rows] + off,
                        self._wet[rows] + off,
                    ],
                    dim=1,
                ),
                self._time_features[rows],
                wet_ahead,
                self.history.forecast_kw(FORECAST_IT_H)[:, None],
                self.last_action,
            ],
            dim=1,
        )
        obs = torch.nan_to_num(
            (raw - self._centre) / self._scale, nan=0.0, posinf=10.0, neginf=-10.0
        )
        return obs.clamp(-OBSERVATION_BOUND, OBSERVATION_BOUND)

    def reward_tensor(
        self, cooling_kw: Tensor, inlet_c: Tensor, *, terms: bool = False
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """The reward (N,) of the last step (penalised when the twin has pessimism on) and,
        when ``terms``, its terms (N,) each."""
        f = self.reward_fn
        hours = self.period_s / 3600.0
        inlet = inlet_c.flatten(1)
        cooling_kwh = cooling_kw * hours
        over_rec = torch.relu(inlet - f.recommended_c).sum(dim=1) * hours
        over_all = torch.relu(inlet - f.allowable_c).sum(dim=1) * hours
        energy = -cooling_kwh / f.normaliser_kwh
        thermal = (
            -f.violation_kwh_per_kh
            * (over_rec + f.allowable_price_mult * over_all)
            / f.normaliser_kwh
        )
        value = energy + thermal
        out: dict[str, Tensor] = {}
        if terms:
            out = {
                "energy_term": energy,
                "thermal_term": thermal,
                "cooling_kwh": cooling_kwh,
                "violation_kh_recommended": over_rec,
                "violation_kh_allowable": over_all,
                "max_inlet_c": inlet.amax(dim=1),
            }
        p = self.pessimism
        if p is None:
            return value, out
        spread = p.spread_kwh_per_k * self.last_inlet_spread_c
        outside = p.extrapolation_kwh * torch.relu(self.last_ratio - 1.0)
        moves = p.travel_kwh * self.last_travel
        value = value - (spread + outside + moves) / f.normaliser_kwh
        if terms:
            out |= {
                "spread_penalty_kwh": spread,
                "extrapolation_penalty_kwh": outside,
                "travel_penalty_kwh": moves,
            }
        return value, out


TensorInfo = dict[str, Tensor]


class TorchTwinVectorEnv(VectorEnv[Tensor, Tensor, Tensor]):
    """:class:`DeviceTwin` as a Gymnasium ``VectorEnv`` of tensors on ``device``.

    Same-step autoreset: at a step where episodes end, the returned observation starts the
    next episode and ``infos["final_obs"]`` (N, obs) holds the last one where
    ``infos["_final_obs"]`` is set. Reward terms go into ``infos`` only with
    ``info_terms=True`` (or :meth:`reward_terms` after a step). Keyword arguments are
    :class:`~twin.vec_env.BatchedTwin`'s."""

    metadata: dict[str, Any] = {"autoreset_mode": AutoresetMode.SAME_STEP}  # noqa: RUF012

    def __init__(self, num_envs: int = 16, *, info_terms: bool = False, **kwargs: Any) -> None:
        self.sim = DeviceTwin(num_envs, **kwargs)
        self.num_envs = num_envs
        self.device = self.sim.device
        self.info_terms = info_terms
        for name, space in vector_spaces(self.sim.spec, num_envs).items():
            setattr(self, name, space)
        self._needs_reset = True
        self._last: tuple[Tensor, Tensor] | None = None
        self._every = torch.arange(num_envs, device=self.device)

    def reset(
        self, *, seed: int | Sequence[int] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Tensor, TensorInfo]:
        if seed is not None:
            first = seed if isinstance(seed, int) else int(seed[0])
            self.sim.generator.manual_seed(first)
        self.sim.forget_episodes()
        self.sim.reset_envs(self._every)
        self._needs_reset = False
        return self.sim.observe_tensor(), {"start_period": self.sim.start.clone()}

    def step(self, actions: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, TensorInfo]:
        if self._needs_reset:
            raise RuntimeError("TorchTwinVectorEnv.step() before reset()")
        if tuple(actions.shape) != (self.num_envs, len(ACTION_NAMES)):
            raise ValueError(
                f"actions must have shape ({self.num_envs}, {len(ACTION_NAMES)}), "
                f"got {tuple(actions.shape)}"
            )
        sim = self.sim
        cooling, inlet = sim.step(actions)
        self._last = (cooling, inlet)
        reward, terms = sim.reward_tensor(cooling, inlet, terms=self.info_terms)
        truncated = sim.truncated
        terminated = torch.zeros_like(truncated)
        obs = sim.observe_tensor()
        infos: TensorInfo = dict(terms)
        if terms:
            every = torch.ones_like(truncated)
            for key in terms:
                infos[f"_{key}"] = every
        ended = sim.ending()
        if ended is not None:
            infos["final_obs"], infos["_final_obs"] = obs, truncated.clone()
            sim.reset_envs(ended)
            obs = sim.observe_tensor()
        return obs, reward, terminated, truncated, infos

    def reward_terms(self) -> TensorInfo:
        """The last step's reward terms (N,) each, assembled now."""
        if self._last is None:
            raise RuntimeError("reward_terms() before a step")
        return self.sim.reward_tensor(*self._last, terms=True)[1]


class NumpyTwinVectorEnv(VectorEnv[NDArray[np.float32], NDArray[np.float32], NDArray[Any]]):
    """A numpy view of :class:`TorchTwinVectorEnv` (arrays in and out; ``final_obs`` as an
    object array like :class:`~twin.vec_env.TwinVectorEnv`'s)."""

    metadata: dict[str, Any] = {"autoreset_mode": AutoresetMode.SAME_STEP}  # noqa: RUF012

    def __init__(self, num_envs: int = 16, **kwargs: Any) -> None:
        self.env = TorchTwinVectorEnv(num_envs, **kwargs)
        self.num_envs = num_envs
        self.single_observation_space = self.env.single_observation_space
        self.single_action_space = self.env.single_action_space
        self.observation_space = self.env.observation_space
        self.action_space = self.env.action_space

    def reset(
        self, *, seed: int | Sequence[int] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[NDArray[np.float32], dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        return obs.cpu().numpy(), {k: v.cpu().numpy() for k, v in info.items()}

    def step(
        self, actions: NDArray[Any]
    ) -> tuple[NDArray[np.float32], NDArray[Any], NDArray[Any], NDArray[Any], dict[str, Any]]:
        a = np.asarray(actions, dtype=np.float32)
        if not np.isfinite(a).all():
            raise ValueError("actions must be finite")
        obs, reward, terminated, truncated, infos = self.env.step(
            torch.as_tensor(a, device=self.env.device)
        )
        out: dict[str, Any] = {k: v.cpu().numpy() for k, v in infos.items() if k != "final_obs"}
        if "final_obs" in infos:
            final = infos["final_obs"].cpu().numpy()
            objects = np.empty(self.num_envs, dtype=object)
            for i in np.nonzero(out["_final_obs"])[0]:
                objects[i] = final[i]
            out["final_obs"] = objects
        return (
            obs.cpu().numpy(),
            reward.cpu().numpy().astype(np.float64),
            terminated.cpu().numpy(),
            truncated.cpu().numpy(),
            out,
        )

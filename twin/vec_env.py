"""The batched twin: many environments stepping together in torch tensors (CPU or GPU).

:class:`BatchedTwin` is the engine: each environment has its own twin state, physical
parameters ``theta`` (drawn per episode for domain randomisation), start period in the
scenario's :class:`~twin.exogenous.ExogenousTable`, IT-power scale and weather offset; the
members of a twin ensemble are spread over the environments (environment ``i`` runs member
``i mod K``), so model uncertainty is randomised too. It is exposed as a Gymnasium
``VectorEnv`` (:class:`TwinVectorEnv`, same-step autoreset, infos as arrays); the
Stable-Baselines3 ``VecEnv`` over it is :class:`control.sb3_env.TwinSB3VecEnv`, and the
single-environment ``TwinLoop/DataCenter-v0`` is the same engine with one environment
(``twin/twin_env.py``). The observation's forecasts are the site's (:mod:`twin.forecast`):
the scenario's weather plus the error of its forecast level, and IT power from each
environment's own history of the episode.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gymnasium.vector import AutoresetMode, VectorEnv
from numpy.typing import NDArray
from torch import Tensor

from physics.plant.scenario import Scenario, load_scenario
from physics.plant.site_control import site_setpoints
from twin.competence import FEATURE_NAMES, CompetenceTracker
from twin.design import TwinDesign
from twin.ensemble import TwinEnsemble
from twin.exogenous import ExogenousTable
from twin.forecast import LoadHistory, WeatherForecast
from twin.reward import CoolingEnergyReward, Pessimism
from twin.spaces import (
    ACTION_NAMES,
    FORECAST_IT_H,
    FORECAST_WET_BULB_H,
    OBSERVATION_BOUND,
    ActionScale,
    HallReadings,
    ObservationSpec,
    build_observation,
    vector_spaces,
)
from twin.surrogate import (
    THETA_NAMES,
    THETA_NOMINAL,
    PhysicsTwin,
    TwinInputs,
    TwinState,
    UnitStatus,
)

logger = logging.getLogger(__name__)

FloatArray = NDArray[np.float64]
Obs = NDArray[np.float32]

WARMUP_PERIODS = 12
"""Periods the twin runs under the site's own control before an episode starts, so the
episode starts from a settled state rather than from a guess."""


@dataclass(frozen=True)
class Randomisation:
    """Ranges drawn uniformly per environment and episode (domain randomisation).

    ``theta_low``/``theta_high`` bound the physical parameters (THETA_NAMES order); the
    defaults span the spread of real sites around their drawings. ``None`` disables it.
    """

    theta_low: tuple[float, ...] = (0.85, 0.92, 0.7, 0.85, -0.3)
    theta_high: tuple[float, ...] = (1.15, 1.12, 1.4, 1.15, 0.8)
    it_power_scale: tuple[float, float] = (0.8, 1.3)
    """Multiplier on the scenario's IT power: the site's deviation from nameplate and loads
    above and below the training days' (0.9-1.1 taught PPO a policy that overheated at the
    selection suite's higher load)."""
    weather_offset_k: tuple[float, float] = (-1.5, 1.5)

    def __post_init__(self) -> None:
        if len(self.theta_low) != len(THETA_NAMES) or len(self.theta_high) != len(THETA_NAMES):
            raise ValueError(f"theta ranges need {len(THETA_NAMES)} values ({THETA_NAMES})")
        pairs = [*zip(self.theta_low, self.theta_high, strict=True)]
        pairs += [self.it_power_scale, self.weather_offset_k]
        if any(not low <= high for low, high in pairs):
            raise ValueError("every randomisation range needs low <= high")


def load_twin(
    twin: TwinEnsemble | PhysicsTwin | str | Path | None, design: TwinDesign
) -> TwinEnsemble:
    """A twin from an object, a saved twin's directory, or ``None``/"drawings" for the
    physics of the drawings alone (no data, no residuals)."""
    if isinstance(twin, TwinEnsemble):
        return twin
    if isinstance(twin, PhysicsTwin):
        return TwinEnsemble([twin])
    if twin is None or twin == "drawings":
        return TwinEnsemble([PhysicsTwin(design, residual_hidden=0)])
    return TwinEnsemble.load(Path(twin))


class BatchedTwin:
    """``num_envs`` twin environments in lock-step (one step = one control period)."""

    def __init__(
        self,
        num_envs: int,
        *,
        scenario: str | Path | Scenario = "tropical-typical-week",
        twin: TwinEnsemble | PhysicsTwin | str | Path | None = None,
        episode_hours: float = 24.0,
        reward: CoolingEnergyReward | None = None,
        action_scale: ActionScale | None = None,
        randomisation: Randomisation | None = None,
        device: str | torch.device = "cpu",
        seed: int | None = None,
        compile: bool = False,
        random_start: bool = True,
        track_spread: bool = False,
        track_competence: bool = False,
        pessimism: Pessimism | None = None,
        member_per_episode: bool = False,
    ) -> None:
        if num_envs < 1:
            raise ValueError("num_envs must be at least 1")
        self.scenario = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
        site = self.scenario.site
        self.design = TwinDesign.from_site(site)
        self.device = torch.device(device)
        self.ensemble = load_twin(twin, self.design).to(self.device).eval()
        members = [self.ensemble.member(i) for i in range(len(self.ensemble))]
        # torch.compile fuses the step's ~1,200 small operations (about 5x less latency for
        # one environment); the first step then compiles for ~25 s, cached across runs.
        self._steppers: list[Any] = (
            [torch.compile(m, dynamic=False) for m in members] if compile else members
        )
        if self.ensemble.design.site_name != self.design.site_name:
            raise ValueError(
                f"twin of site {self.ensemble.design.site_name!r} cannot run scenario "
                f"{self.scenario.name!r} of site {self.design.site_name!r}"
            )
        if abs(self.ensemble.step_s - self.scenario.control_period_s) > 1e-6:
            raise ValueError(
                f"twin steps {self.ensemble.step_s:.0f} s but the scenario's control period is "
                f"{self.scenario.control_period_s:.0f} s"
            )
        self.table = ExogenousTable.from_scenario(self.scenario)
        self.period_s = self.table.period_s
        self.episode_periods = round(episode_hours * 3600.0 / self.period_s)
        if episode_hours <= 0 or self.episode_periods < 1:
            raise ValueError(f"episode_hours must be positive (got {episode_hours})")
        self.last_start = self.table.n_periods - self.episode_periods - 1
        if self.last_start < 0:
            raise ValueError(
                f"an episode of {episode_hours} h does not fit scenario {self.scenario.name} "
                f"({self.table.n_periods * self.period_s / 3600.0:.1f} h)"
            )
        self.num_envs = num_envs
        self.reward_fn = reward or CoolingEnergyReward()
        self.action_scale = action_scale or ActionScale.within(site.limits)
        self.randomisation = randomisation
        self.random_start = random_start
        self.spec = ObservationSpec(n_pods=site.n_pods, design_it_kw=self.design.design_it_kw)
        self.rng = np.random.default_rng(seed)
        self.weather_forecast = WeatherForecast.for_scenario(self.scenario)
        self.load_history = LoadHistory(num_envs, self.period_s / 3600.0)
        """Each environment's IT power, once per period (the observation's IT forecast)."""
        dev, f32 = self.device, torch.float32

        def tensor(x: FloatArray) -> Tensor:
            return torch.as_tensor(x, dtype=f32, device=dev)

        self._dry = tensor(self.table.dry_bulb_c)
        self._wet = tensor(self.table.wet_bulb_c)
        self._it = tensor(self.table.it_power_kw)
        self._theta_fault = tensor(self.table.theta_fault)
        self._crah_running = tensor(self.table.crah_running_frac)
        self._chillers_available = tensor(self.table.chillers_available)
        self._tower_fan = tensor(self.table.tower_fan_frac)
        self._low = tensor(self.action_scale.low)
        self._span = tensor(self.action_scale.high - self.action_scale.low)
        n = num_envs
        # Members over environments: contiguous groups, one forward call per member.
        k = len(self.ensemble)
        bounds = np.linspace(0, n, k + 1).round().astype(int)
        self._groups = [slice(int(a), int(b)) for a, b in itertools.pairwise(bounds) if b > a]
        self.start = torch.zeros(n, dtype=torch.int64, device=dev)
        self.elapsed = torch.zeros(n, dtype=torch.int64, device=dev)
        self.theta = self.ensemble.first.nominal_theta(n, dev)
        self.it_scale = torch.ones(n, device=dev)
        self.weather_offset_k = torch.zeros(n, device=dev)
        self.last_action = torch.zeros(n, len(ACTION_NAMES), device=dev)
        self.state = self._blank_state(n)
        self.last_cooling_kw = torch.zeros(n, device=dev)
        self.last_facility_kw = torch.zeros(n, device=dev)
        self.pessimism = pessimism if pessimism is not None and pessimism.active else None
        p = self.pessimism
        several = len(self.ensemble) > 1
        track_spread = track_spread or (p is not None and p.spread_kwh_per_k > 0 and several)
        if p is not None and p.extrapolation_kwh > 0:
            if self.ensemble.competence is None:
                logger.warning(
                    "the twin has no competence model: the extrapolation penalty is off "
                    "(train on a fitted twin, `twinloop twin fit`)"
                )
            else:
                track_competence = True
        self.last_travel = torch.zeros(n, device=dev)
        """Action change of each environment's last step (sum of |Δa| over components)."""
        self.member_per_episode = member_per_episode and several
        sizes = torch.tensor([g.stop - g.start for g in self._groups], device=dev)
        self.member_of = torch.repeat_interleave(torch.arange(len(sizes), device=dev), sizes)
        """Ensemble member each environment runs (drawn per episode with
        ``member_per_episode``, else contiguous groups)."""
        self.track_spread = track_spread
        self.last_inlet_spread_c = torch.zeros(n, device=dev)
        """Ensemble spread (std over members) of the hottest rack's inlet, last step; filled
        when ``track_spread`` (one extra forward per member)."""
        competence = self.ensemble.competence if track_competence else None
        if track_competence and competence is None:
            raise ValueError(
                "track_competence needs a twin saved with its competence model "
                "(`twinloop twin fit` writes one; `twinloop twin competence` adds it)"
            )
        self.competence = None if competence is None else CompetenceTracker(competence, n)
        self.last_competence_ratio = np.zeros(n)
        """Competence ratio of each environment's last period (> 1: the twin extrapolated;
        :mod:`twin.competence`); filled when ``track_competence``."""
        self.last_competence_features = np.zeros((n, len(FEATURE_NAMES)))

    # ------------------------------------------------------------------ engine
    def _blank_state(self, n: int) -> TwinState:
        def full(shape: tuple[int, ...], value: float) -> Tensor:
            return torch.full(shape, value, device=self.device)

        d = self.design
        return self.ensemble.first.state_from_readings(
            full((n, d.n_pods, d.racks_per_pod), 20.0),
            full((n, d.n_pods), 32.0),
            full((n,), 19.0),
            full((n,), 30.0),
            full((n,), d.defaults.chw_supply_c),
            full((n,), d.defaults.chw_supply_c + 5.0),
            full((n,), d.defaults.cw_supply_c),
        )

    def _inputs(self, setpoints: Tensor, rows: Tensor, envs: slice | Tensor) -> TwinInputs:
        offset = self.weather_offset_k[envs]
        return TwinInputs(
            setpoints=setpoints,
            it_power_kw=self._it[rows] * self.it_scale[envs, None],
            outdoor_dry_bulb_c=self._dry[rows] + offset,
            outdoor_wet_bulb_c=self._wet[rows] + offset,
            status=UnitStatus(
                crah_running_frac=self._crah_running[rows],
                chillers_available=self._chillers_available[rows],
                tower_fan_frac=self._tower_fan[rows],
            ),
        )

    def _theta_at(self, rows: Tensor, envs: slice | Tensor) -> Tensor:
        fault = self._theta_fault[rows]
        theta = self.theta[envs] * fault
        bias = THETA_NAMES.index("tower_approach_bias_k")
        theta[:, bias] = self.theta[envs, bias] + fault[:, bias]
        return theta

    def _site_setpoints(self, wet_bulb_c: Tensor) -> Tensor:
        sp = site_setpoints(self.design.defaults, wet_bulb_c.detach().cpu().numpy().astype(float))
        return torch.as_tensor(sp.as_matrix(), dtype=torch.float32, device=self.device)

    @torch.inference_mode()
    def _advance(self, setpoints: Tensor) -> tuple[TwinState, Tensor, Tensor]:
        """One period for every environment from its current state."""
        rows = self.start + self.elapsed
        every = slice(None)
        inputs = self._inputs(setpoints, rows, every)
        theta = self._theta_at(rows, every)
        if self.track_spread:
            # Every member from the same state: how far the ensemble disagrees (the hottest
            # rack's spread per environment), for the gate and the shield.
            inlets = torch.stack(
                [
                    self.ensemble.member(m)(self.state, inputs, theta).state.rack_inlet_c
                    for m in range(len(self.ensemble))
                ]
            )
            spread = inlets.std(dim=0) if len(self.ensemble) > 1 else torch.zeros_like(inlets[0])
            self.last_inlet_spread_c = spread.flatten(1).amax(dim=1)
        if len(self._groups) == 1:
            out = self._steppers[0](self.state, inputs, theta)
            return out.state, out.cooling_kw, out.facility_kw
        if self.member_per_episode:
            return self._advance_drawn(inputs, theta)
        parts = []
        for m, group in enumerate(self._groups):
            sub = inputs.index(group)
            parts.append(self._steppers[m](self.state.index(group), sub, theta[group]))
        return (
            TwinState(
                **{
                    name: torch.cat([getattr(p.state, name) for p in parts])
                    for name in TwinState.__dataclass_fields__
                }
            ),
            torch.cat([p.cooling_kw for p in parts]),
            torch.cat([p.facility_kw for p in parts]),
        )

    def _advance_drawn(self, inputs: TwinInputs, theta: Tensor) -> tuple[TwinState, Tensor, Tensor]:
        """One period with each environment in the member drawn for its episode."""
        state = self.state
        cooling = torch.zeros(self.num_envs, device=self.device)
        facility = torch.zeros(self.num_envs, device=self.device)
        fields = TwinState.__dataclass_fields__
        new = {name: getattr(state, name).clone() for name in fields}
        for m in range(len(self.ensemble)):
            idx = torch.nonzero(self.member_of == m).flatten()
            if idx.numel() == 0:
                continue
            out = self._steppers[m](state.index(idx), inputs.index(idx), theta[idx])
            for name in fields:
                new[name][idx] = getattr(out.state, name)
            cooling[idx] = out.cooling_kw
            facility[idx] = out.facility_kw
        return TwinState(**new), cooling, facility

    @torch.inference_mode()
    def reset_envs(self, envs: Tensor) -> None:
        """New episodes for ``envs``: draw start, parameters and offsets; settle the state."""
        n = int(envs.numel())
        if n == 0:
            return
        dev = self.device
        starts = (
            self.rng.integers(0, self.last_start + 1, size=n)
            if self.random_start
            else np.zeros(n, dtype=np.int64)
        )
        self.start[envs] = torch.as_tensor(starts, device=dev)
        self.elapsed[envs] = 0
        if self.member_per_episode:
            members = self.rng.integers(0, len(self.ensemble), size=n)
            self.member_of[envs] = torch.as_tensor(members, device=dev)
        r = self.randomisation
        if r is not None:
            low, high = np.asarray(r.theta_low), np.asarray(r.theta_high)
            drawn = self.rng.uniform(low, high, size=(n, len(THETA_NAMES)))
            self.theta[envs] = torch.as_tensor(drawn, dtype=torch.float32, device=dev)
            it = self.rng.uniform(*r.it_power_scale, size=n)
            self.it_scale[envs] = torch.as_tensor(it, dtype=torch.float32, device=dev)
            off = self.rng.uniform(*r.weather_offset_k, size=n)
            self.weather_offset_k[envs] = torch.as_tensor(off, dtype=torch.float32, device=dev)
        else:
            self.theta[envs] = torch.tensor(THETA_NOMINAL, device=dev)
        blank = self._blank_state(n)
        state = self.state
        self.state = _scatter(state, envs, blank)
        # Settle under the site's own control on the start period's conditions.
        rows = self.start[envs]
        sp = self._site_setpoints(self._wet[rows] + self.weather_offset_k[envs])
        inputs = self._inputs(sp, rows, envs)
        theta = self._theta_at(rows, envs)
        member = self.ensemble.member(0)
        settled = blank
        for _ in range(WARMUP_PERIODS):
            out = member(settled, inputs, theta)
            settled = out.state
        self.state = _scatter(self.state, envs, settled)
        self.last_cooling_kw[envs] = out.cooling_kw
        self.last_facility_kw[envs] = out.facility_kw
        if self.competence is not None:
            self.competence.reset(envs.cpu().numpy(), sp.cpu().numpy().astype(np.float64))
        self.last_action[envs] = torch.as_tensor(
            self.action_scale.to_action(sp.cpu().numpy().astype(float)),
            dtype=torch.float32,
            device=dev,
        )
        index = envs.cpu().numpy()
        self.load_history.reset(index)
        self.load_history.record(self._it_now_kw()[index], index)

    def _it_now_kw(self) -> FloatArray:
        """Each environment's IT power (N,) in its current period."""
        rows = self.start + self.elapsed
        it = self._it[rows].sum(dim=-1) * self.it_scale
        return np.asarray(it.detach().to("cpu", torch.float64).numpy(), dtype=np.float64)

    def step(self, actions: Tensor) -> tuple[Tensor, Tensor]:
        """Advance every environment under ``actions`` (N, 5) in [-1, 1]; returns the mean
        cooling power (N,) and the rack inlets at the period's end (N, P, R)."""
        if bool(self.truncated.any()):
            raise RuntimeError("some environments are past their episode; reset_envs() them")
        a = torch.clamp(actions.to(self.device, torch.float32), -1.0, 1.0)
        sp = self._low + (a + 1.0) * 0.5 * self._span
        sp[:, 4] = (a[:, 4] > 0.0).to(torch.float32)
        if self.competence is not None:
            before = self.state
            x = self.competence.step(
                sp.detach().cpu().numpy().astype(np.float64),
                before.chw_supply_c.detach().cpu().numpy().astype(np.float64),
                before.cw_supply_c.detach().cpu().numpy().astype(np.float64),
            )
            self.last_competence_features = x
            self.last_competence_ratio = self.competence.model.ratio(x)
        state, cooling, facility = self._advance(sp)
        self.state = state
        self.last_cooling_kw = cooling
        self.last_facility_kw = facility
        self.last_travel = (a - self.last_action).abs().sum(dim=1)
        self.last_action = a
        self.elapsed += 1
        self.load_history.record(self._it_now_kw())
        return cooling, state.rack_inlet_c

    @property
    def truncated(self) -> Tensor:
        return self.elapsed >= self.episode_periods

    def observe(self) -> Obs:
        """Observations (N, obs) of the current state, clipped to the observation bound."""
        s = self.state
        rows = self.start + self.elapsed
        last = self.table.n_periods - 1
        steps = [round(h * 3600.0 / self.period_s) for h in FORECAST_WET_BULB_H]
        ahead = [torch.clamp(rows + k, max=last) for k in steps]
        it_now = self._it[rows].sum(dim=-1) * self.it_scale
        off = self.weather_offset_k
        # One transfer to the host for every per-environment number.
        columns = torch.stack(
            [
                s.supply_air_c,
                s.return_air_c,
                s.chw_supply_c,
                s.chw_return_c,
                s.cw_supply_c,
                it_now,
                self.last_cooling_kw,
                self.last_facility_kw,
                self._dry[rows] + off,
                self._wet[rows] + off,
                self._wet[ahead[0]] + off,
                self._wet[ahead[1]] + off,
            ],
            dim=1,
        )
        host = torch.cat(
            [columns, s.hot_aisle_c, self.last_action, s.rack_inlet_c.flatten(1)], dim=1
        )
        h = host.detach().to("cpu", torch.float64).numpy()
        time_h = self.table.time_h[rows.cpu().numpy()]
        wet_ahead = self.weather_forecast.forecast_c(h[:, 10:12], time_h, FORECAST_WET_BULB_H)
        it_ahead = self.load_history.forecast_kw([FORECAST_IT_H])[:, 0]
        hot_end = columns.shape[1] + s.hot_aisle_c.shape[1]
        act_end = hot_end + len(ACTION_NAMES)
        hall = HallReadings(
            rack_inlet_c=h[:, act_end:].reshape(s.rack_inlet_c.shape),
            hot_aisle_c=h[:, columns.shape[1] : hot_end],
            supply_air_c=h[:, 0],
            return_air_c=h[:, 1],
            chw_supply_c=h[:, 2],
            chw_return_c=h[:, 3],
            cw_supply_c=h[:, 4],
            it_power_kw=h[:, 5],
            cooling_power_kw=h[:, 6],
            facility_power_kw=h[:, 7],
            outdoor_dry_bulb_c=h[:, 8],
            outdoor_wet_bulb_c=h[:, 9],
        )
        obs = build_observation(
            self.spec,
            hall,
            time_h=time_h,
            forecast_wet_bulb_1h_c=wet_ahead[:, 0],
            forecast_wet_bulb_3h_c=wet_ahead[:, 1],
            forecast_it_power_1h_kw=it_ahead,
            last_action=h[:, hot_end:act_end],
        )
        clipped: Obs = np.clip(obs, -OBSERVATION_BOUND, OBSERVATION_BOUND)
        return clipped

    def reward(
        self, cooling_kw: Tensor, inlet_c: Tensor
    ) -> tuple[FloatArray, dict[str, FloatArray]]:
        n = cooling_kw.shape[0]
        inlets = inlet_c.detach().to("cpu", torch.float64).numpy().reshape(n, -1)
        cooling = cooling_kw.detach().to("cpu", torch.float64).numpy()
        value, terms = self.reward_fn(cooling, inlets, self.period_s)
        if self.pessimism is None:
            return value, terms
        penalty, more = self.pessimism(
            self.last_inlet_spread_c.detach().to("cpu", torch.float64).numpy(),
            self.last_competence_ratio,
            self.last_travel.detach().to("cpu", torch.float64).numpy(),
        )
        pessimistic: FloatArray = value - penalty / self.reward_fn.normaliser_kwh
        return pessimistic, {**terms, **more}


def _scatter(state: TwinState, envs: Tensor, values: TwinState) -> TwinState:
    out = {}
    for name in TwinState.__dataclass_fields__:
        full = getattr(state, name).clone()
        full[envs] = getattr(values, name)
        out[name] = full
    return TwinState(**out)


class TwinVectorEnv(VectorEnv[Obs, Obs, NDArray[Any]]):
    """:class:`BatchedTwin` as a Gymnasium ``VectorEnv`` (same-step autoreset: an episode's
    last observation is in ``infos["final_obs"]``; reward terms are arrays in ``infos``)."""

    metadata: dict[str, Any] = {"autoreset_mode": AutoresetMode.SAME_STEP}  # noqa: RUF012

    def __init__(self, num_envs: int = 16, **kwargs: Any) -> None:
        self.sim = BatchedTwin(num_envs, **kwargs)
        self.num_envs = num_envs
        for name, space in vector_spaces(self.sim.spec, num_envs).items():
            setattr(self, name, space)
        self._needs_reset = True

    def reset(
        self, *, seed: int | Sequence[int] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Obs, dict[str, Any]]:
        if seed is not None:
            first = seed if isinstance(seed, int) else int(seed[0])
            self.sim.rng = np.random.default_rng(first)
        self.sim.reset_envs(torch.arange(self.num_envs, device=self.sim.device))
        self._needs_reset = False
        return self.sim.observe(), {"start_h": self.sim.table.time_h[self.sim.start.cpu().numpy()]}

    def step(
        self, actions: Obs
    ) -> tuple[Obs, NDArray[Any], NDArray[Any], NDArray[Any], dict[str, Any]]:
        if self._needs_reset:
            raise RuntimeError("TwinVectorEnv.step() before reset()")
        a = np.asarray(actions, dtype=np.float32)
        if a.shape != (self.num_envs, len(ACTION_NAMES)) or not np.isfinite(a).all():
            raise ValueError(
                f"actions must be finite with shape ({self.num_envs}, {len(ACTION_NAMES)}), "
                f"got {a.shape}"
            )
        cooling, inlet = self.sim.step(torch.from_numpy(a))
        reward, terms = self.sim.reward(cooling, inlet)
        truncated = self.sim.truncated.cpu().numpy()
        terminated = np.zeros(self.num_envs, dtype=bool)
        obs = self.sim.observe()
        infos: dict[str, Any] = dict(terms)
        every = np.ones(self.num_envs, dtype=bool)
        for key in terms:
            infos[f"_{key}"] = every
        if truncated.any():
            done = np.nonzero(truncated)[0]
            final = np.empty(self.num_envs, dtype=object)
            for i in done:
                final[i] = obs[i].copy()
            infos["final_obs"], infos["_final_obs"] = final, truncated.copy()
            self.sim.reset_envs(torch.as_tensor(done, device=self.sim.device))
            obs = self.sim.observe()
        return obs, reward, terminated, truncated, infos

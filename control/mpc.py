"""Model predictive control over the twin, and the oracle MPC that knows the plant's truths.

Every control period :class:`MpcPolicy`

1. rebuilds the twin's state from the observation (pod hottest/mean inlets, hot aisles,
   supply/return air, chilled and condenser water; the structure node by the twin's own
   observer). Per-rack inlets are not observed: each pod's racks are set to its mean inlet,
   except the rack the twin ranks hottest, which gets the pod's hottest reading (this keeps
   the pod mean and maximum; the twin's rack inlets only feed its server-fan speed-up);
2. reads the period from the observation's hour-of-day and day-of-year features (exact to a
   second in float32; the policy's own period counter is the fallback) and forecasts the
   horizon as a site can (:mod:`twin.forecast`): wet and dry bulb are the scenario's weather
   plus the error of its forecast level (``forecast: {level: ...}``, growing with the lead
   time), IT power is the seasonal-naive forecast from the IT power it has observed (never
   the schedule), split over the pods as the present period's shares;
3. samples the twin around the setpoints applied last: one batched rollout (``settle``
   periods, about 50 variants) gives, per continuous setpoint, its quasi-steady response at
   knots over the range reachable within the horizon, the coil's least approach at each fan
   speed, the sensitivities to IT power and wet bulb, and the inlets' response time
   (:class:`~control.mpc_model.TwinSampler`);
4. loads that into the Pyomo model of ``control/mpc_model.py`` (convex piecewise-linear
   costs, soft inlet limit, rate limits, bounds), solves it with HiGHS and applies the first
   move (receding horizon); the economiser is enabled when the site's Guideline 36 test
   (predicted exchanger leaving water well below the chilled-water return) holds for the
   hour ahead's warmest forecast wet bulb. The hottest-inlet
   prediction carries an offset-free bias, updated from what the last plan predicted and
   what was then measured — it absorbs what the twin does not know (e.g. the plant's
   per-rack recirculation when the twin is the drawings' physics).

Two guards sit outside the optimiser: while a pod's measured hottest inlet is above the
limit less half the margin, no setpoint moves towards warmer that period (the twin may not
know where the heat comes from); and if HiGHS returns no usable plan, the setpoints move
towards the site's own (safe, cold) setpoints at the rate limits.

:class:`OracleMpcPolicy` is the same controller on a twin whose parameters are the plant's
hidden truths for the scenario's site seed (:func:`oracle_twin`), with the scenario's own
forecasts *including* its faults (workload surges, and coil/condenser fouling through
``theta``) and perfect foresight of weather and IT load (it alone reads the scenario's own
weather and schedule), the true installed IT power and a longer horizon: the upper bound on
what a policy can save, never deployable.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor

from control.coil_estimate import CoilUaEstimator
from control.mpc_model import (
    CHW,
    FAN,
    SAT,
    Forecast,
    LocalModel,
    MpcProblem,
    MpcSettings,
    MpcSolution,
    TwinSampler,
)
from control.policy import FloatArray, Obs, decode_observation, pods_of
from physics.compiled import as_record
from physics.plant.scenario import Scenario, load_scenario
from physics.plant.site import draw_hidden_params
from physics.plant.site_control import economiser_favourable
from twin.design import TwinDesign
from twin.ensemble import TwinEnsemble
from twin.exogenous import ExogenousTable
from twin.forecast import LoadHistory, WeatherForecast
from twin.spaces import ACTION_NAMES, ActionScale, ObservationSpec
from twin.surrogate import THETA_NAMES, THETA_NOMINAL, PhysicsTwin, TwinState
from twin.vec_env import load_twin

logger = logging.getLogger(__name__)

COIL_UA = THETA_NAMES.index("coil_ua_mult")
BIAS_RANGE_K = (-2.0, 10.0)
"""Limits of the inlet bias: measurements may make the controller far more careful than the
twin, but never more than 2 K bolder."""
APPLIED_TOLERANCE = 1e-3
"""Setpoints (K or fraction) within this of the plan's first move count as the plan's."""
_TAU = 2.0 * math.pi


@dataclass(frozen=True)
class MpcConfig:
    """Tuning of the MPC. Rates are per control period, in ActionScale order (supply air
    K, fan speed fraction, chilled water K, condenser water K)."""

    horizon: int = 12
    knots: int = 9
    settle_periods: int = 6
    """Periods the twin is rolled out per sample: its quasi-steady response."""
    inlet_limit_c: float = 27.0
    margin_k: float = 1.5
    rate: tuple[float, float, float, float] = (0.5, 0.05, 0.5, 1.0)
    slack_penalty_kwh_per_kh: float = 2_000.0
    move_penalty_kwh: float = 0.02
    bias_gain: float = 0.8
    """Share of the last prediction error added to the inlet bias each period."""
    crah_headroom_units: int = 1
    """CRAH units the plan keeps in reserve (N-1 headroom, the default): the fan speed is
    capped at (n - k) / n, so the BMS's failure sequence can hold the planned airflow with k
    units tripped. 0: the plan may use every unit; the controller reacts to a trip through
    its measured inlet bias and the BMS sequence bridges the gap meanwhile. On the held-out
    suite the cap never bound (fans at 0.41-0.46 on average): both rules gave the same runs,
    0 K·h above 27 °C through every trip (benchmarks/RESULTS.md)."""

    learn_coil_ua: bool = True
    """Learn the coils' UA online from the supply air they reach
    (:class:`~control.coil_estimate.CoilUaEstimator`) and plan with it: a fouled coil is
    planned as one. The oracle, which knows the fouling, does not."""

    def __post_init__(self) -> None:
        if self.settle_periods < 1:
            raise ValueError("MpcConfig.settle_periods must be at least 1")
        if not 0.0 <= self.bias_gain <= 1.0:
            raise ValueError("MpcConfig: bias_gain must lie in [0, 1]")
        if self.crah_headroom_units < 0:
            raise ValueError("MpcConfig.crah_headroom_units must not be negative")

    def settings(
        self, scale: ActionScale, n_pods: int, period_h: float, n_crah: int = 12
    ) -> MpcSettings:
        if self.crah_headroom_units >= n_crah:
            raise ValueError(
                f"MpcConfig.crah_headroom_units ({self.crah_headroom_units}) must be below "
                f"the site's {n_crah} CRAH units"
            )
        low, high = float(scale.low[1]), float(scale.high[1])
        fan_cap = (n_crah - self.crah_headroom_units) / n_crah
        return MpcSettings(
            horizon=self.horizon,
            knots=self.knots,
            n_pods=n_pods,
            period_h=period_h,
            low=tuple(float(v) for v in scale.low[:4]),  # type: ignore[arg-type]
            high=tuple(float(v) for v in scale.high[:4]),  # type: ignore[arg-type]
            fan_cap_frac=min(max(fan_cap, low), high),
            rate=self.rate,
            inlet_limit_c=self.inlet_limit_c,
            margin_k=self.margin_k,
            slack_penalty_kwh_per_kh=self.slack_penalty_kwh_per_kh,
            move_penalty_kwh=self.move_penalty_kwh,
        )


@dataclass
class _EnvMemory:
    """What the controller carries from one period to the next, per environment."""

    u_prev: FloatArray | None = None
    economiser: float = 0.0
    bias_k: FloatArray | None = None
    predicted_c: FloatArray | None = None
    local: LocalModel | None = None
    """The model last period's plan was made on (to predict what was applied instead)."""
    counter: int = 0
    coil: CoilUaEstimator | None = None


@dataclass
class MpcStats:
    """Compute time per control step (sampling + model update + solve), s, and solver
    outcomes."""

    step_s: list[float] = field(default_factory=list)
    solve_s: list[float] = field(default_factory=list)
    fallbacks: int = 0
    held_back: int = 0
    """Periods that began from setpoints other than the plan's first move (a shield's rate
    limit, an economiser dwell): the plan restarted from what was applied."""


class MpcPolicy:
    """Receding-horizon MPC over a twin (see the module docstring); kind ``"mpc"``.

    ``twin`` is a fitted twin (object or saved directory) or ``None`` for the physics of the
    site's drawings; ``scenario`` gives the site, the clock, the weather truth its forecast
    errs from and the forecast level (:attr:`forecast_level`); ``theta`` the twin's physical
    parameters (nominal by default, e.g. from assimilation).
    """

    kind: str = "mpc"

    def __init__(
        self,
        twin: TwinEnsemble | PhysicsTwin | str | Path | None = None,
        scenario: str | Path | Scenario = "tropical-typical-week",
        *,
        horizon: int | None = None,
        config: MpcConfig | None = None,
        name: str = "mpc",
        theta: Sequence[float] | FloatArray | None = None,
    ) -> None:
        self.name = name
        self.scenario = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
        sc = self.scenario
        site = sc.site
        self.design = TwinDesign.from_site(site)
        self._defaults = as_record(self.design.defaults)
        if twin is None:
            twin = PhysicsTwin(self.design, step_s=sc.control_period_s, residual_hidden=0)
        self.ensemble = load_twin(twin, self.design).eval()
        if self.ensemble.design.site_name != self.design.site_name:
            raise ValueError(
                f"twin of site {self.ensemble.design.site_name!r} cannot control scenario "
                f"{sc.name!r} of site {self.design.site_name!r}"
            )
        if abs(self.ensemble.step_s - sc.control_period_s) > 1e-6:
            raise ValueError(
                f"twin steps {self.ensemble.step_s:.0f} s but the scenario's control period is "
                f"{sc.control_period_s:.0f} s"
            )
        config = config or MpcConfig()
        self.config = config if horizon is None else replace(config, horizon=horizon)
        self.scale = ActionScale.within(site.limits)
        self.spec = ObservationSpec(n_pods=site.n_pods, design_it_kw=self.design.design_it_kw)
        self.table = ExogenousTable.from_scenario(replace(sc, faults=()))
        self.period_h = sc.control_period_s / 3600.0
        self.weather_forecast = WeatherForecast.for_scenario(sc)
        self.forecast_level = self.weather_forecast.level
        """Error level of the forecasts this policy plans with (recorded with every result)."""
        self._load = LoadHistory(1, self.period_h)
        self.theta = np.asarray(THETA_NOMINAL if theta is None else theta, dtype=np.float64)
        if self.theta.shape != (len(THETA_NAMES),):
            raise ValueError(f"theta needs {len(THETA_NAMES)} values ({', '.join(THETA_NAMES)})")
        self.settings = self.config.settings(self.scale, site.n_pods, self.period_h, site.n_crah)
        self.problem = MpcProblem(self.settings)
        self.sampler = TwinSampler(self.ensemble, self.settings, self.config.settle_periods)
        self._hottest_rack = self._hottest_racks()
        self._twin_coil_ua = self._twin_coil_ua_mult()
        self.stats = MpcStats()
        self.last_solution: MpcSolution | None = None
        self._memory: list[_EnvMemory] = []

    # ------------------------------------------------------------------ Policy protocol
    def reset(self, n_envs: int = 1) -> None:
        self._memory = [_EnvMemory() for _ in range(n_envs)]
        if self.config.learn_coil_ua:
            start = self._twin_coil_ua * float(self.theta[COIL_UA])
            for mem in self._memory:
                mem.coil = CoilUaEstimator(self.scenario.site.crah, estimate=start)
        self._load = LoadHistory(n_envs, self.period_h)

    def act(self, observation: Obs) -> Obs:
        obs = np.atleast_2d(np.asarray(observation, dtype=np.float32))
        values = decode_observation(self.spec, obs)
        n = obs.shape[0]
        if len(self._memory) != n:
            self.reset(n)
        self._load.record(values["it_power_kw"])
        # The period from the time features (the own counter where they match none).
        periods = self.period_of(obs)
        actions = np.empty((n, 5), dtype=np.float32)
        for i in range(n):
            actions[i] = self.scale.to_action(self._step(values, periods, i))
        return actions

    # ------------------------------------------------------------------ one environment
    def _step(
        self, values: dict[str, FloatArray], periods: NDArray[np.int64], i: int
    ) -> FloatArray:
        started = time.perf_counter()
        mem = self._memory[i]
        st = self.settings
        low, high = np.asarray(st.low), np.asarray(st.high)
        rate = np.asarray(st.rate)
        k = int(periods[i]) if periods[i] >= 0 else min(mem.counter, self.table.n_periods - 1)
        inlet_max = pods_of(values, "rack_inlet_max_c")[i]
        if mem.u_prev is None:
            d = self.design.defaults
            start = [d.supply_air_c, d.fan_speed_frac, d.chw_supply_c, d.cw_supply_c]
            mem.u_prev = np.clip(np.asarray(start, dtype=np.float64), low, high)
            mem.bias_k = np.zeros(st.n_pods)
        assert mem.bias_k is not None
        self._follow_applied(mem, values, i)
        if mem.predicted_c is not None:
            error = inlet_max - mem.predicted_c
            mem.bias_k = np.clip(mem.bias_k + self.config.bias_gain * error, *BIAS_RANGE_K)
        if mem.coil is not None and mem.counter > 0:  # what last period's setpoints reached
            mem.coil.update(
                float(values["supply_air_c"][i]),
                float(mem.u_prev[SAT]),
                float(values["return_air_c"][i]),
                float(values["chw_supply_c"][i]),
                float(mem.u_prev[FAN]),
            )
        forecast = self._forecast(k, values, i, mem)
        local = self.sampler.local_model(
            self._state(values, i), mem.u_prev, mem.economiser, forecast, inlet_max, mem.bias_k
        )
        mem.local = local
        solution = self.problem.solve(local)
        self.last_solution = solution
        self.stats.solve_s.append(solution.solve_s)
        u_prev = mem.u_prev
        if solution.optimal and np.isfinite(solution.first_move).all():
            u = solution.first_move
            mem.predicted_c = solution.inlet_c[0]
        else:
            self.stats.fallbacks += 1
            logger.warning(
                "%s: no optimal plan (%s); moving towards the site's setpoints",
                self.name,
                solution.status,
            )
            d = self.design.defaults
            safe = np.array([d.supply_air_c, d.fan_speed_frac, d.chw_supply_c, d.cw_supply_c])
            u = u_prev + np.clip(safe - u_prev, -rate, rate)
            mem.predicted_c = None
        u = np.clip(np.clip(u, u_prev - rate, u_prev + rate), low, high)
        u[FAN] = min(u[FAN], st.fan_cap_path(float(u_prev[FAN]))[0])
        if (inlet_max > st.inlet_limit_c - 0.5 * st.margin_k).any():
            # Guard: racks measurably hotter than planned for — whatever the twin says about
            # where the hot air comes from, this period nothing moves towards warmer.
            u[SAT] = min(u[SAT], u_prev[SAT])
            u[FAN] = max(u[FAN], u_prev[FAN])
            u[CHW] = min(u[CHW], u_prev[CHW])
        hour = max(1, round(1.0 / self.period_h))
        wet_ahead = float(forecast.wet_bulb_c[:hour].max())
        chw_return = float(values["chw_return_c"][i])
        if not np.isfinite(chw_return):
            chw_return = float(u[CHW]) + 5.0
        # The site's Guideline 36 test, on the hour ahead's warmest forecast wet bulb.
        mem.economiser = float(economiser_favourable(self._defaults, wet_ahead, chw_return))
        mem.u_prev = u
        mem.counter += 1
        self.stats.step_s.append(time.perf_counter() - started)
        return np.array([*u, mem.economiser])

    def _follow_applied(self, mem: _EnvMemory, values: dict[str, FloatArray], i: int) -> None:
        """Start this period from the setpoints last applied (the observation's last action)
        where they differ from the plan's first move: live and in pre-evaluation the site's
        shield paces the moves (per period and per hour), and a plan continued from setpoints
        that were never applied drifts away from the plant (measured: the MPC believed the
        fans at 0.40 while the shield held them at 0.60, then released them with the supply
        air and chilled water it had not planned them with, and the inlets overshot 27 °C).
        The inlet bias then learns from what the twin predicted for the applied setpoints."""
        assert mem.u_prev is not None
        if mem.counter == 0:  # nothing applied yet: an episode's first action is no command
            return
        last = np.array([values[f"last_action.{name}"][i] for name in ACTION_NAMES])
        if not np.isfinite(last).all():
            return
        applied = self.scale.to_setpoints(last)
        st = self.settings
        u_applied = np.clip(applied[:4], np.asarray(st.low), np.asarray(st.high))
        economiser = float(applied[4])
        if np.abs(u_applied - mem.u_prev).max() <= APPLIED_TOLERANCE:
            if economiser == mem.economiser:
                return
        else:
            if mem.local is not None and mem.predicted_c is not None:
                mem.predicted_c = mem.local.first_inlet_c(u_applied)
            mem.u_prev = u_applied
        mem.economiser = economiser
        self.stats.held_back += 1

    def period_of(self, observation: Obs) -> NDArray[np.int64]:
        """The scenario period (row of :attr:`table`) each observation is about to be
        controlled in, from its hour-of-day and day-of-year features (float32 keeps them to
        about a second); -1 where they fall on no period of the scenario."""
        v = decode_observation(self.spec, np.atleast_2d(observation))
        year = np.arctan2(v["day_sin"], v["day_cos"]) % _TAU * 8760.0 / _TAU
        hour = np.arctan2(v["hour_sin"], v["hour_cos"]) % _TAU * 24.0 / _TAU
        shift = (hour - year) % 24.0
        time_h = year + np.where(shift > 12.0, shift - 24.0, shift)
        elapsed = (time_h - float(self.table.time_h[0])) % 8760.0
        k = np.rint(elapsed / self.period_h)
        ok = (np.abs(elapsed - k * self.period_h) <= 0.25 * self.period_h) & (
            k < self.table.n_periods
        )
        return np.where(ok, k, -1).astype(np.int64)

    def _forecast(self, k: int, values: dict[str, FloatArray], i: int, mem: _EnvMemory) -> Forecast:
        """The horizon's drivers as the site forecasts them (module docstring, step 2)."""
        rows = np.minimum(k + np.arange(self.settings.horizon), self.table.n_periods - 1)
        lead_h = (np.arange(self.settings.horizon) + 0.5) * self.period_h
        total_kw = self._load.forecast_kw(lead_h)[i]
        measured = float(values["it_power_kw"][i])
        total_kw = np.where(np.isfinite(total_kw), total_kw, measured)
        # Per pod: the present period's shares (the site meters each pod), not the future's.
        present = self.table.it_power_kw[k]
        shares = present / max(float(present.sum()), 1e-9)
        error = self.weather_forecast.error_k(self.table.time_h[k], lead_h)[0]
        theta = np.tile(self.theta, (rows.size, 1))
        if mem.coil is not None:  # the learnt coil UA, relative to the twin's own
            theta[:, COIL_UA] = mem.coil.estimate / self._twin_coil_ua
        return Forecast(
            it_power_kw=total_kw[:, None] * shares[None, :],
            dry_bulb_c=self.table.dry_bulb_c[rows] + error,
            wet_bulb_c=self.table.wet_bulb_c[rows] + error,
            theta=theta,
        )

    def _state(self, values: dict[str, FloatArray], i: int) -> TwinState:
        d = self.design
        mean = pods_of(values, "rack_inlet_mean_c")[i]
        hottest = pods_of(values, "rack_inlet_max_c")[i]
        r = d.racks_per_pod
        others = (r * mean - hottest) / max(r - 1, 1)
        racks = np.repeat(others[:, None], r, axis=1)
        racks[np.arange(d.n_pods), self._hottest_rack] = hottest

        def t(x: FloatArray | float) -> Tensor:
            return torch.as_tensor(np.asarray(x, dtype=np.float64)[None, ...], dtype=torch.float32)

        return self.ensemble.first.state_from_readings(
            t(racks),
            t(pods_of(values, "hot_aisle_c")[i]),
            t(values["supply_air_c"][i]),
            t(values["return_air_c"][i]),
            t(values["chw_supply_c"][i]),
            t(values["chw_return_c"][i]),
            t(values["cw_supply_c"][i]),
        )

    def _twin_coil_ua_mult(self) -> float:
        """The twin's coil UA relative to the drawings' (a fitted twin learnt its own)."""
        twin = self.ensemble.first
        if isinstance(twin, PhysicsTwin):
            with torch.no_grad():
                return float(torch.exp(twin.raw_coil_ua_mult))
        return 1.0

    def _hottest_racks(self) -> NDArray[np.int64]:
        """Per pod, the rack the twin ranks hottest (highest recirculation plus offset)."""
        twin = self.ensemble.first
        if isinstance(twin, PhysicsTwin):
            with torch.no_grad():
                score = twin.rack_recirc * 10.0 + twin.rack_offset_c
            return np.asarray(score.argmax(dim=-1).numpy(), dtype=np.int64)
        return np.zeros(self.design.n_pods, dtype=np.int64)


@dataclass(frozen=True)
class OracleTruth:
    """The plant's hidden truths as the twin can hold them."""

    twin: PhysicsTwin
    theta: FloatArray  # (5,) THETA_NAMES order
    pod_it_scale: FloatArray  # (P,) installed IT relative to nameplate
    unmapped: tuple[str, ...]


def _logit(p: FloatArray | float) -> Tensor:
    q = np.clip(np.asarray(p, dtype=np.float64), 1e-4, 0.95)
    return torch.as_tensor(np.log(q / (1.0 - q)), dtype=torch.float32)


def oracle_twin(scenario: Scenario) -> OracleTruth:
    """A physics-only twin of ``scenario``'s site whose parameters are the plant's hidden
    truths (``draw_hidden_params`` for the scenario's site seed).

    Mapped exactly: per-rack local recirculation, pod airflow (installed power × design
    airflow, as the servers draw it), floor-tile shares, pod and structure heat capacities,
    tower approach bias; as means: coil UA (per CRAH) and chiller EIR (per chiller)
    multipliers, installed IT per pod. The cross-pod matrix becomes the twin's scalar
    cross recirculation (the hall mean of its row sums) with each pod's difference from it
    folded into its racks' recirculation. Not representable: the chillers' capacity
    multipliers (the twin has no capacity parameter), the spread of UA and EIR between units.
    """
    site = scenario.site
    hidden = draw_hidden_params(site, [scenario.site_seed])
    design = TwinDesign.from_site(site)
    twin = PhysicsTwin(design, step_s=scenario.control_period_s, residual_hidden=0)
    power = hidden.rack_power_scale[0]
    cross_pod = hidden.cross_recirc_frac[0].sum(axis=1)
    cross = float(cross_pod.mean())
    recirc = hidden.rack_recirc_frac[0] + (cross_pod - cross)[:, None]
    airflow = (site.server.design_airflow_kg_s * power).sum(axis=1)
    with torch.no_grad():
        twin.raw_rack_recirc.copy_(_logit(recirc))
        twin.raw_cross_recirc.copy_(_logit(cross))
        twin.raw_pod_airflow_kg_s.copy_(torch.as_tensor(np.log(airflow), dtype=torch.float32))
        twin.raw_pod_share.copy_(
            torch.as_tensor(np.log(hidden.pod_airflow_share[0]), dtype=torch.float32)
        )
        capacity = hidden.server_capacity_kj_k[0].sum(axis=1)
        twin.raw_pod_capacity.copy_(torch.as_tensor(np.log(capacity), dtype=torch.float32))
        structure = design.structure_capacity_kj_k * float(hidden.structure_capacity_mult[0])
        twin.raw_structure_capacity.fill_(math.log(structure))
    theta = np.array(
        [
            float(hidden.crah_ua_mult[0].mean()),
            float(hidden.chiller_eir_mult[0].mean()),
            1.0,
            1.0,
            float(hidden.tower_approach_bias_k[0]),
        ]
    )
    unmapped = (
        "chiller_cap_mult: the twin has no chiller-capacity parameter",
        "crah_ua_mult, chiller_eir_mult: spread between units (their means are used)",
        "cross_recirc_frac: pod-to-pod structure (row sums kept, folded into the racks)",
    )
    return OracleTruth(twin, theta, power.mean(axis=1), unmapped)


class OracleMpcPolicy(MpcPolicy):
    """The MPC with the plant's truths: the upper bound on savings; kind ``"oracle"``.

    Its twin carries the site's hidden parameters (:func:`oracle_twin`); its forecasts are
    the scenario's own, faults included (workload surges in the IT forecast, coil and
    condenser fouling in ``theta`` per period), whatever the scenario's forecast level: it
    alone keeps perfect foresight (:attr:`forecast_level` ``"none"``); its IT forecast uses
    the true installed power; its horizon is longer and its margin smaller than the
    deployable MPC's. It keeps the same CRAH headroom rule (N-1 by default), so the MPC's
    share of its savings compares like with like.
    """

    kind: str = "oracle"

    def __init__(
        self,
        scenario: str | Path | Scenario = "tropical-typical-week",
        *,
        horizon: int | None = None,
        config: MpcConfig | None = None,
        name: str = "oracle-mpc",
    ) -> None:
        sc = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
        self.truth = oracle_twin(sc)
        config = config or MpcConfig(horizon=24, margin_k=1.0, learn_coil_ua=False)
        super().__init__(
            self.truth.twin, sc, horizon=horizon, config=config, name=name, theta=self.truth.theta
        )
        self.table = ExogenousTable.from_scenario(sc)
        self.forecast_level = "none"

    def _forecast(self, k: int, values: dict[str, FloatArray], i: int, mem: _EnvMemory) -> Forecast:
        rows = np.minimum(k + np.arange(self.settings.horizon), self.table.n_periods - 1)
        fault = self.table.theta_fault[rows]
        theta = self.theta[None, :] * fault
        bias = THETA_NAMES.index("tower_approach_bias_k")
        theta[:, bias] = self.theta[bias] + fault[:, bias]
        return Forecast(
            it_power_kw=self.table.it_power_kw[rows] * self.truth.pod_it_scale[None, :],
            dry_bulb_c=self.table.dry_bulb_c[rows],
            wet_bulb_c=self.table.wet_bulb_c[rows],
            theta=theta,
        )

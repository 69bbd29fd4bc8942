"""The MPC's optimisation model: a Pyomo model of the twin around its operating point, solved
by HiGHS (``highspy``) through Pyomo's persistent interface.

:class:`LocalModel` holds what the controller learnt from the twin this period: for each
continuous setpoint a few knots and the twin's quasi-steady response at them, plus the
forecasts over the horizon; :class:`TwinSampler` makes it from one batched rollout of the
twin around the setpoints applied last (about 50 variants). :class:`MpcProblem` is one Pyomo
``ConcreteModel`` over ``H`` periods, built once with every coefficient a mutable ``Param``,
so each period only updates parameters and re-solves (the solver keeps its model).

Per period ``t`` the decision variables are the setpoints ``s`` (supply air), ``f`` (fan
speed), ``c`` (chilled water) and ``w`` (condenser water); the model is:

* **Cooling power** — separable and convex piecewise linear: ``F(f)`` (CRAH fans and the
  chillers' share of their heat), ``L(c)`` (chiller efficiency against chilled water),
  ``G(s − c)`` (chilled-water pumping, which climbs as the coil's approach closes),
  ``W(w − wb_t)`` (tower fans against chiller lift, shifting with the wet-bulb forecast), a
  linear term in ``s``, and forecast terms (IT power, wet bulb). Each piecewise term is a
  convex combination of its knots (λ formulation): exact for convex data, the lower convex
  envelope otherwise, and no binaries.
* **Supply air actually delivered** ``a ≥ s`` and ``a ≥ c + δ_t(f)``: the coil cannot cool
  the air to closer than its approach ``δ`` to the chilled water (the twin's coil at full
  valve; δ grows with the load forecast).
* **Hottest rack inlet per pod** — ``x_t = λ x_{t−1} + (1 − λ)(a_t + R_p(f_t) + e_{t,p})``:
  a first-order lag towards the delivered supply air plus the pod's recirculation rise
  ``R_p`` (which climbs steeply once the fans no longer feed what the racks draw) plus the
  IT forecast and an offset-free bias ``e``; ``x_{−1}`` is the measured inlet.
* **Soft thermal constraint** ``x_t ≤ limit − margin + σ``, ``σ ≥ 0`` priced far above any
  energy; **rate limits** ``|u_t − u_{t−1}| ≤ Δ`` from the last applied setpoints; bounds =
  the actuator envelope; a small L1 move penalty damps the plan (it stays an LP).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyomo.environ as pyo
import torch
from numpy.typing import NDArray
from pyomo.contrib.solver.common.results import SolutionStatus, TerminationCondition
from pyomo.contrib.solver.solvers.highs import Highs
from torch import Tensor

from twin.ensemble import TwinEnsemble
from twin.surrogate import TwinInputs, TwinState

FloatArray = NDArray[np.float64]

SETPOINTS: tuple[str, ...] = ("supply_air_c", "fan_speed_frac", "chw_supply_c", "cw_supply_c")
"""The continuous setpoints the MPC optimises, in ActionScale order (economiser by rule)."""
SAT, FAN, CHW, CW = range(4)


@dataclass(frozen=True)
class MpcSettings:
    """What fixes the model's structure and its constant coefficients."""

    horizon: int = 12
    knots: int = 9
    n_pods: int = 4
    period_h: float = 5.0 / 60.0
    low: tuple[float, float, float, float] = (16.0, 0.3, 5.5, 18.0)
    high: tuple[float, float, float, float] = (27.0, 1.0, 16.0, 35.0)
    rate: tuple[float, float, float, float] = (0.5, 0.05, 0.5, 1.0)
    """Largest change of each setpoint per control period."""
    fan_cap_frac: float = 1.0
    """Highest fan speed the plan may use (headroom for a CRAH trip); from above it the fans
    come down at their rate limit."""
    inlet_limit_c: float = 27.0
    margin_k: float = 1.5
    slack_penalty_kwh_per_kh: float = 2_000.0
    move_penalty_kwh: float = 0.02
    """Cost of one full rate step, per setpoint and period (damping, not economics)."""
    time_limit_s: float = 5.0

    def __post_init__(self) -> None:
        if self.horizon < 1 or self.knots < 2 or self.n_pods < 1:
            raise ValueError("MpcSettings: need horizon >= 1, knots >= 2, n_pods >= 1")
        if any(not lo < hi for lo, hi in zip(self.low, self.high, strict=True)):
            raise ValueError(f"MpcSettings: need low < high, got {self.low} / {self.high}")
        if any(r <= 0 for r in self.rate) or self.margin_k < 0 or self.period_h <= 0:
            raise ValueError("MpcSettings: rates and period must be positive, margin >= 0")
        if not self.low[1] <= self.fan_cap_frac <= self.high[1]:
            raise ValueError(
                f"MpcSettings: fan_cap_frac {self.fan_cap_frac} outside the fan's range "
                f"{self.low[1]}-{self.high[1]}"
            )

    def fan_cap_path(self, fan_prev_frac: float) -> FloatArray:
        """The fan's upper bound in each horizon period: the cap, or as low as the rate
        limit lets the fans come down from ``fan_prev_frac`` when they start above it."""
        periods = np.arange(1, self.horizon + 1, dtype=np.float64)
        return np.maximum(self.fan_cap_frac, fan_prev_frac - self.rate[1] * periods)


@dataclass(frozen=True)
class LocalModel:
    """The twin around its operating point, for one solve. Costs are kW relative to any
    common reference (only differences matter to the optimiser); temperatures in °C.

    Shapes: K knots, H horizon periods, P pods.
    """

    u_prev: FloatArray  # (4,) setpoints applied last period
    fan_knots: FloatArray  # (K,)
    fan_cost_kw: FloatArray  # (K,)
    rise_k: FloatArray  # (P, K) hottest inlet minus supply air, per fan knot
    coil_approach_k: FloatArray  # (H, K) δ: least supply air above chilled water
    chw_knots: FloatArray  # (K,)
    chw_cost_kw: FloatArray  # (K,)
    gap_knots: FloatArray  # (K,) supply air minus chilled water
    gap_cost_kw: FloatArray  # (K,)
    approach_knots: FloatArray  # (K,) condenser water minus wet bulb
    approach_cost_kw: FloatArray  # (K,)
    supply_air_cost_kw_k: float
    wet_bulb_c: FloatArray  # (H,)
    exo_cost_kw: FloatArray  # (H,) forecast terms of the cooling power
    inlet_offset_k: FloatArray  # (H, P) forecast terms plus bias of the hottest inlet
    inlet_now_c: FloatArray  # (P,) measured hottest inlet per pod
    lag: float  # λ of the inlet response per period, in [0, 1)

    def check(self, settings: MpcSettings) -> None:
        k, h, p = settings.knots, settings.horizon, settings.n_pods
        shapes = {
            "u_prev": (4,),
            "fan_knots": (k,),
            "fan_cost_kw": (k,),
            "rise_k": (p, k),
            "coil_approach_k": (h, k),
            "chw_knots": (k,),
            "chw_cost_kw": (k,),
            "gap_knots": (k,),
            "gap_cost_kw": (k,),
            "approach_knots": (k,),
            "approach_cost_kw": (k,),
            "wet_bulb_c": (h,),
            "exo_cost_kw": (h,),
            "inlet_offset_k": (h, p),
            "inlet_now_c": (p,),
        }
        for name, shape in shapes.items():
            value = np.asarray(getattr(self, name))
            if value.shape != shape:
                raise ValueError(f"LocalModel.{name}: shape {value.shape}, expected {shape}")
            if not np.isfinite(value).all():
                raise ValueError(f"LocalModel.{name}: not finite")
        if not 0.0 <= self.lag < 1.0:
            raise ValueError(f"LocalModel.lag must lie in [0, 1), got {self.lag}")

    def first_inlet_c(self, setpoints: FloatArray) -> FloatArray:
        """The hottest inlet per pod (P,) this model predicts one period after ``setpoints``
        (supply air, fan, chilled water, condenser water) are applied: the first period of
        the plan's inlet dynamics, evaluated on the knots' piecewise-linear interpolation.
        For a plan's own first move it is the plan's prediction; for setpoints something
        else applied (a shield's rate limit, an operator) it is what the twin expected of
        those."""
        u = np.asarray(setpoints, dtype=np.float64)
        fan = float(u[FAN])
        approach = float(np.interp(fan, self.fan_knots, self.coil_approach_k[0]))
        supply = max(float(u[SAT]), float(u[CHW]) + approach)
        rise = np.array([np.interp(fan, self.fan_knots, r) for r in self.rise_k])
        steady = supply + rise + self.inlet_offset_k[0]
        return np.asarray(self.lag * self.inlet_now_c + (1.0 - self.lag) * steady)


@dataclass(frozen=True)
class MpcSolution:
    """The optimal plan: setpoints (H, 4), predicted hottest inlet (H, P) and cooling (H,)."""

    setpoints: FloatArray
    inlet_c: FloatArray
    cooling_kw: FloatArray
    slack_kh: float
    optimal: bool
    status: str
    solve_s: float
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def first_move(self) -> FloatArray:
        return np.asarray(self.setpoints[0], dtype=np.float64)


class MpcProblem:
    """The Pyomo model (built once) and its persistent HiGHS solver."""

    def __init__(self, settings: MpcSettings | None = None) -> None:
        self.settings = settings or MpcSettings()
        self.model = self._build()
        self.solver = Highs()
        if not self.solver.available():
            raise RuntimeError("HiGHS is not available: install highspy")
        cfg = self.solver.config
        cfg.load_solutions = False
        cfg.raise_exception_on_nonoptimal_result = False
        cfg.threads = 1
        # HiGHS logs to the console by default (Pyomo switches it on for every solve), and
        # warns on stdout each time a mutable coefficient is updated to 0 where it is
        # already 0 (``Highs::changeCoeff``): thousands of lines per run. The solve's status
        # is read from the results, never from the log, so HiGHS' output is switched off at
        # HiGHS itself (here for every solve, and in ``_quiet_highs`` for the coefficient
        # updates Pyomo makes before the first one); ``MpcSolution.status`` says what failed.
        cfg.solver_options["output_flag"] = False
        auto = cfg.auto_updates
        # Only parameter values change between solves: skip the structural scans.
        auto.check_for_new_or_removed_constraints = False
        auto.check_for_new_or_removed_vars = False
        auto.check_for_new_or_removed_params = False
        auto.check_for_new_objective = False
        auto.update_constraints = False
        auto.update_vars = False
        auto.update_named_expressions = False
        self._instance_set = False
        self._highs_clock_s = 0.0

    # ------------------------------------------------------------------ model
    def _build(self) -> Any:
        st = self.settings
        m = pyo.ConcreteModel(name="twinloop-mpc")
        m.T = pyo.RangeSet(0, st.horizon - 1)
        m.K = pyo.RangeSet(0, st.knots - 1)
        m.P = pyo.RangeSet(0, st.n_pods - 1)
        m.U = pyo.RangeSet(0, 3)
        mut: dict[str, Any] = {"mutable": True, "initialize": 0.0}
        m.u_prev = pyo.Param(m.U, **mut)
        m.fan_x = pyo.Param(m.K, **mut)
        m.fan_y = pyo.Param(m.K, **mut)
        m.rise = pyo.Param(m.P, m.K, **mut)
        m.delta = pyo.Param(m.T, m.K, **mut)
        m.chw_x = pyo.Param(m.K, **mut)
        m.chw_y = pyo.Param(m.K, **mut)
        m.gap_x = pyo.Param(m.K, **mut)
        m.gap_y = pyo.Param(m.K, **mut)
        m.app_x = pyo.Param(m.K, **mut)
        m.app_y = pyo.Param(m.K, **mut)
        m.sat_slope = pyo.Param(**mut)
        m.wet_bulb = pyo.Param(m.T, **mut)
        m.exo_cost = pyo.Param(m.T, **mut)
        m.inlet_off = pyo.Param(m.T, m.P, **mut)
        m.inlet_now = pyo.Param(m.P, **mut)
        m.lag = pyo.Param(**mut)
        m.one_minus_lag = pyo.Param(mutable=True, initialize=1.0)
        m.fan_cap = pyo.Param(m.T, mutable=True, initialize=1.0)

        low, high = st.low, st.high
        m.u = pyo.Var(m.U, m.T, bounds=lambda _m, i, _t: (low[i], high[i]))
        nonneg = pyo.NonNegativeReals
        m.lam_fan = pyo.Var(m.T, m.K, domain=nonneg)
        m.lam_chw = pyo.Var(m.T, m.K, domain=nonneg)
        m.lam_gap = pyo.Var(m.T, m.K, domain=nonneg)
        m.lam_app = pyo.Var(m.T, m.K, domain=nonneg)
        m.supply = pyo.Var(m.T)
        m.inlet = pyo.Var(m.P, m.T)
        m.slack = pyo.Var(m.P, m.T, domain=nonneg)
        m.move = pyo.Var(m.U, m.T, domain=nonneg)

        def prev(i: int, t: int) -> Any:
            return m.u_prev[i] if t == 0 else m.u[i, t - 1]

        m.rate_up = pyo.Constraint(
            m.U, m.T, rule=lambda _m, i, t: m.u[i, t] - prev(i, t) <= st.rate[i]
        )
        m.rate_down = pyo.Constraint(
            m.U, m.T, rule=lambda _m, i, t: prev(i, t) - m.u[i, t] <= st.rate[i]
        )
        m.fan_headroom = pyo.Constraint(m.T, rule=lambda _m, t: m.u[1, t] <= m.fan_cap[t])
        lambdas = (m.lam_fan, m.lam_chw, m.lam_gap, m.lam_app)
        m.convex = pyo.Constraint(
            range(4), m.T, rule=lambda _m, j, t: sum(lambdas[j][t, k] for k in m.K) == 1.0
        )
        m.at_fan = pyo.Constraint(
            m.T, rule=lambda _m, t: sum(m.lam_fan[t, k] * m.fan_x[k] for k in m.K) == m.u[FAN, t]
        )
        m.at_chw = pyo.Constraint(
            m.T, rule=lambda _m, t: sum(m.lam_chw[t, k] * m.chw_x[k] for k in m.K) == m.u[CHW, t]
        )
        m.at_gap = pyo.Constraint(
            m.T,
            rule=lambda _m, t: (
                sum(m.lam_gap[t, k] * m.gap_x[k] for k in m.K) == m.u[SAT, t] - m.u[CHW, t]
            ),
        )
        m.at_app = pyo.Constraint(
            m.T,
            rule=lambda _m, t: (
                sum(m.lam_app[t, k] * m.app_x[k] for k in m.K) == m.u[CW, t] - m.wet_bulb[t]
            ),
        )
        m.supply_sp = pyo.Constraint(m.T, rule=lambda _m, t: m.supply[t] >= m.u[SAT, t])
        m.supply_coil = pyo.Constraint(
            m.T,
            rule=lambda _m, t: (
                m.supply[t] >= m.u[CHW, t] + sum(m.lam_fan[t, k] * m.delta[t, k] for k in m.K)
            ),
        )

        def inlet_rule(_m: Any, p: int, t: int) -> Any:
            before = m.inlet_now[p] if t == 0 else m.inlet[p, t - 1]
            steady = (
                m.supply[t] + sum(m.lam_fan[t, k] * m.rise[p, k] for k in m.K) + m.inlet_off[t, p]
            )
            return m.inlet[p, t] == m.lag * before + m.one_minus_lag * steady

        m.inlet_dyn = pyo.Constraint(m.P, m.T, rule=inlet_rule)
        limit = st.inlet_limit_c - st.margin_k
        m.thermal = pyo.Constraint(
            m.P, m.T, rule=lambda _m, p, t: m.inlet[p, t] <= limit + m.slack[p, t]
        )

        def cooling(t: int) -> Any:
            return (
                sum(m.lam_fan[t, k] * m.fan_y[k] for k in m.K)
                + sum(m.lam_chw[t, k] * m.chw_y[k] for k in m.K)
                + sum(m.lam_gap[t, k] * m.gap_y[k] for k in m.K)
                + sum(m.lam_app[t, k] * m.app_y[k] for k in m.K)
                + m.sat_slope * m.u[SAT, t]
                + m.exo_cost[t]
            )

        m.cooling_kw = pyo.Expression(m.T, rule=lambda _m, t: cooling(t))
        dt = st.period_h
        # Moves priced in L1 (an LP: HiGHS' simplex is more robust here than its QP solver).
        m.move_up = pyo.Constraint(
            m.U, m.T, rule=lambda _m, i, t: m.move[i, t] >= m.u[i, t] - prev(i, t)
        )
        m.move_down = pyo.Constraint(
            m.U, m.T, rule=lambda _m, i, t: m.move[i, t] >= prev(i, t) - m.u[i, t]
        )
        weight = [st.move_penalty_kwh / r for r in st.rate]
        moves = sum(weight[i] * m.move[i, t] for i in m.U for t in m.T)
        m.objective = pyo.Objective(
            expr=dt * sum(m.cooling_kw[t] for t in m.T)
            + dt * st.slack_penalty_kwh_per_kh * sum(m.slack[p, t] for p in m.P for t in m.T)
            + 1e-2 * sum(m.supply[t] for t in m.T)
            + moves,
            sense=pyo.minimize,
        )
        return m

    # ------------------------------------------------------------------ solve
    def _load(self, local: LocalModel) -> None:
        m, st = self.model, self.settings
        local.check(st)

        def put(param: Any, values: FloatArray) -> None:
            arr = np.asarray(values, dtype=np.float64)
            arr = np.where(np.abs(arr) < 1e-9, 0.0, arr)  # HiGHS drops (and warns on) these
            for index, v in np.ndenumerate(arr):
                param[index if len(index) > 1 else index[0]] = float(v)

        put(m.u_prev, local.u_prev)
        put(m.fan_cap, st.fan_cap_path(float(local.u_prev[1])))
        put(m.fan_x, local.fan_knots)
        put(m.fan_y, local.fan_cost_kw)
        put(m.rise, local.rise_k)
        put(m.delta, local.coil_approach_k)
        put(m.chw_x, local.chw_knots)
        put(m.chw_y, local.chw_cost_kw)
        put(m.gap_x, local.gap_knots)
        put(m.gap_y, local.gap_cost_kw)
        put(m.app_x, local.approach_knots)
        put(m.app_y, local.approach_cost_kw)
        put(m.wet_bulb, local.wet_bulb_c)
        put(m.exo_cost, local.exo_cost_kw)
        put(m.inlet_off, local.inlet_offset_k)
        put(m.inlet_now, local.inlet_now_c)
        m.sat_slope = (
            float(local.supply_air_cost_kw_k) if abs(local.supply_air_cost_kw_k) > 1e-9 else 0.0
        )
        m.lag = float(local.lag)
        m.one_minus_lag = 1.0 - float(local.lag)

    def _quiet_highs(self) -> None:
        """Switch off the output of the ``highspy.Highs`` object Pyomo just made (Pyomo
        offers no hook between making it and the parameter updates of the first solve)."""
        highs = getattr(self.solver, "_solver_model", None)
        if highs is None or not hasattr(highs, "setOptionValue"):
            raise RuntimeError(
                "this Pyomo's HiGHS interface keeps its solver elsewhere: pin the Pyomo "
                "version of requirements.lock"
            )
        highs.setOptionValue("output_flag", False)

    def solve(self, local: LocalModel) -> MpcSolution:
        """Load ``local`` into the model's parameters and solve; never raises on a
        non-optimal result (``optimal`` says whether the plan can be used)."""
        started = time.perf_counter()
        self._load(local)
        m, st = self.model, self.settings
        if not self._instance_set:
            self.solver.set_instance(m)
            self._quiet_highs()
            self._instance_set = True
        # HiGHS measures its time limit on a clock that runs across solves of one model.
        limit = self._highs_clock_s + st.time_limit_s
        results = self.solver.solve(m, time_limit=limit)
        self._highs_clock_s = float(results.timing_info.highs_time or self._highs_clock_s)
        optimal = (
            results.termination_condition == TerminationCondition.convergenceCriteriaSatisfied
            and results.solution_status == SolutionStatus.optimal
        )
        status = f"{results.termination_condition.name}/{results.solution_status.name}"
        h, p = st.horizon, st.n_pods
        if results.solution_status not in (SolutionStatus.optimal, SolutionStatus.feasible):
            nan = np.full((h, 4), np.nan)
            return MpcSolution(
                nan,
                np.full((h, p), np.nan),
                np.full(h, np.nan),
                np.nan,
                False,
                status,
                time.perf_counter() - started,
            )
        results.solution_loader.load_vars()
        setpoints = np.array([[pyo.value(m.u[i, t]) for i in m.U] for t in m.T])
        inlet = np.array([[pyo.value(m.inlet[q, t]) for q in m.P] for t in m.T])
        cooling = np.array([pyo.value(m.cooling_kw[t]) for t in m.T])
        slack = float(sum(pyo.value(m.slack[q, t]) for q in m.P for t in m.T)) * st.period_h
        supply = np.array([pyo.value(m.supply[t]) for t in m.T])
        return MpcSolution(
            setpoints,
            inlet,
            cooling,
            slack,
            optimal,
            status,
            time.perf_counter() - started,
            {"supply_air_c": supply},
        )


# ---------------------------------------------------------------------- the twin → LocalModel
@dataclass(frozen=True)
class Forecast:
    """Drivers over the horizon (H periods from now)."""

    it_power_kw: FloatArray  # (H, P)
    dry_bulb_c: FloatArray  # (H,)
    wet_bulb_c: FloatArray  # (H,)
    theta: FloatArray  # (H, 5)


class TwinSampler:
    """Builds the MPC's :class:`LocalModel` from batched rollouts of the twin."""

    def __init__(self, ensemble: TwinEnsemble, settings: MpcSettings, settle_periods: int):
        self.ensemble = ensemble
        self.settings = settings
        self.settle_periods = settle_periods

    @torch.inference_mode()
    def local_model(
        self,
        state: TwinState,
        u0: FloatArray,
        economiser: float,
        forecast: Forecast,
        inlet_now_c: FloatArray,
        bias_k: FloatArray,
    ) -> LocalModel:
        st = self.settings
        h, k = st.horizon, st.knots
        low, high, rate = (np.asarray(v, dtype=np.float64) for v in (st.low, st.high, st.rate))
        reach_lo = np.maximum(low, u0 - h * rate)
        reach_hi = np.minimum(high, u0 + h * rate)
        wb = forecast.wet_bulb_c
        fan_k = np.linspace(reach_lo[FAN], reach_hi[FAN], k)
        chw_k = np.linspace(reach_lo[CHW], reach_hi[CHW], k)
        gap_k = np.linspace(reach_lo[SAT] - reach_hi[CHW], reach_hi[SAT] - reach_lo[CHW], k)
        app_k = np.linspace(reach_lo[CW] - wb.max(), reach_hi[CW] - wb.min(), k)

        base = np.array([*u0, economiser], dtype=np.float64)
        rows: list[FloatArray] = []
        it_mult: list[float] = []
        wet_off: list[float] = []
        theta_row: list[int] = []
        groups: dict[str, slice] = {}

        def add(
            name: str, column: int | None, values: Sequence[float] | FloatArray, **kw: float
        ) -> None:
            start = len(rows)
            for v in values:
                row = base.copy()
                if column is not None:
                    row[column] = v
                if "sat" in kw:
                    row[SAT] = kw["sat"]
                rows.append(row)
                it_mult.append(kw.get("it", 1.0))
                wet_off.append(kw.get("wet", 0.0))
                theta_row.append(int(kw.get("theta", 0)))
            groups[name] = slice(start, len(rows))

        add("base", None, [0.0])
        add("fan", FAN, fan_k)
        add("chw", CHW, chw_k)
        add("gap", CHW, np.maximum(u0[SAT] - gap_k, 1.0))
        add("app", CW, wb[0] + app_k)
        add("delta", FAN, fan_k, sat=5.0)
        add("sat", SAT, [u0[SAT] - 1.0, u0[SAT] + 1.0])
        add("it", None, [0.0], it=1.1)
        add("wb", CW, [u0[CW] + 1.0], wet=1.0)
        future = _distinct_thetas(forecast.theta)
        for j in future[1:]:
            add(f"theta{j}", None, [0.0], theta=j)

        n = len(rows)
        sp = torch.as_tensor(np.stack(rows), dtype=torch.float32)
        it0 = forecast.it_power_kw[0]
        it = torch.as_tensor(np.outer(it_mult, it0), dtype=torch.float32)
        dry = torch.full((n,), float(forecast.dry_bulb_c[0]))
        wet = torch.as_tensor(wb[0] + np.asarray(wet_off), dtype=torch.float32)
        theta = torch.as_tensor(forecast.theta[theta_row], dtype=torch.float32)
        inputs = TwinInputs(sp, it, dry, wet)
        s = state.index(torch.zeros(n, dtype=torch.int64))
        first_inlet: Tensor | None = None
        for period in range(self.settle_periods):
            out = self.ensemble.step(s, inputs, theta).mean
            s = out.state
            if period == 0:
                first_inlet = s.rack_inlet_c.amax(dim=-1)
        assert first_inlet is not None

        def np64(x: Tensor) -> FloatArray:
            return np.asarray(x.detach().to(torch.float64).numpy())

        cool = np64(out.cooling_kw)
        pump = np64(out.chw_pump_kw)
        supply = np64(s.supply_air_c)
        chw_supply = np64(s.chw_supply_c)
        inlet = np64(s.rack_inlet_c.amax(dim=-1))  # (n, P)
        inlet1 = np64(first_inlet)
        g = groups
        b = g["base"].start
        rest = cool - pump
        sat_lo, sat_hi = g["sat"].start, g["sat"].start + 1
        sat_slope = (rest[sat_hi] - rest[sat_lo]) / 2.0
        it_total = forecast.it_power_kw.sum(axis=1)
        d_it = it_total - it_total[0]
        kappa_it = (cool[g["it"].start] - cool[b]) / (0.1 * it_total[0])
        iota = (inlet[g["it"].start] - inlet[b]) / (0.1 * np.maximum(it0, 1.0))
        kappa_wb = cool[g["wb"].start] - cool[b]

        exo_cost = cool[b] - sat_slope * u0[SAT] + kappa_it * d_it + kappa_wb * (wb - wb[0])
        inlet_off = bias_k[None, :] + iota[None, :] * (forecast.it_power_kw - it0[None, :])
        for j in future[1:]:
            r = g[f"theta{j}"].start
            later = _theta_index(forecast.theta) == j
            exo_cost = exo_cost + later * (cool[r] - cool[b])
            inlet_off = inlet_off + later[:, None] * (inlet[r] - inlet[b])[None, :]

        delta = np.clip(supply[g["delta"]] - chw_supply[g["delta"]], 0.2, None)
        load_ratio = it_total / max(it_total[0], 1.0)
        return LocalModel(
            u_prev=np.asarray(u0, dtype=np.float64),
            fan_knots=fan_k,
            fan_cost_kw=cool[g["fan"]] - cool[b],
            rise_k=(inlet[g["fan"]] - supply[g["fan"]][:, None]).T,
            coil_approach_k=np.outer(load_ratio, delta),
            chw_knots=chw_k,
            chw_cost_kw=rest[g["chw"]] - rest[b],
            gap_knots=gap_k,
            gap_cost_kw=pump[g["gap"]] - pump[b],
            approach_knots=app_k,
            approach_cost_kw=cool[g["app"]] - cool[b],
            supply_air_cost_kw_k=float(sat_slope),
            wet_bulb_c=np.asarray(wb, dtype=np.float64),
            exo_cost_kw=exo_cost,
            inlet_offset_k=inlet_off,
            inlet_now_c=np.asarray(inlet_now_c, dtype=np.float64),
            lag=_lag(inlet, inlet1, b, [g["fan"], g["sat"]]),
        )


def _theta_index(theta: FloatArray) -> NDArray[np.int64]:
    """Per horizon period, the index of the first period with the same ``theta``."""
    out = np.zeros(theta.shape[0], dtype=np.int64)
    for t in range(theta.shape[0]):
        same = np.nonzero(np.all(np.abs(theta[: t + 1] - theta[t]) < 1e-9, axis=1))[0]
        out[t] = same[0]
    return out


def _distinct_thetas(theta: FloatArray) -> list[int]:
    return sorted({int(i) for i in _theta_index(theta)})


def _lag(inlet: FloatArray, inlet1: FloatArray, base: int, groups: list[slice]) -> float:
    """λ of the hottest inlet's first-order response per period: how much of a setpoint
    change's quasi-steady effect is still missing after the first period."""
    ratios = []
    for group in groups:
        dev_end = inlet[group] - inlet[base]
        dev1 = inlet1[group] - inlet1[base]
        big = np.abs(dev_end) > 0.3
        ratios.extend((dev1[big] / dev_end[big]).tolist())
    if not ratios:
        return 0.0
    return float(np.clip(1.0 - np.median(ratios), 0.0, 0.9))

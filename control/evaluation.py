"""One evaluation engine: a policy over a scenario, on the plant (ground truth) or in the twin
(pre-evaluation), returning the control KPIs (:data:`HEADLINE_KPIS`): cooling, facility and
IT energy, PUE, rack-inlet degree-hours above 27 °C and 32 °C, and the hottest inlet.

On the plant the scenario runs through ``TwinLoop/DataCenterPlant-v0`` and the KPIs come
from the plant's ground-truth log (:func:`physics.kpi.compute_kpis`); in the twin it runs
through ``TwinLoop/DataCenter-v0`` from the scenario's start and the KPIs are the twin's
predictions. The policy sees the same observations in both, so the two sets of KPIs can be
compared: that comparison is how far pre-evaluation can be trusted.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from numpy.typing import NDArray
from tqdm import tqdm

from control.policy import Policy
from physics.kpi import computational_time_ratio, compute_kpis
from physics.plant.scenario import Scenario, load_scenario
from twin.competence import FEATURE_NAMES, CompetenceModel
from twin.design import TwinDesign
from twin.ensemble import TwinEnsemble
from twin.forecast import error_model
from twin.plant_env import PlantEnv
from twin.spaces import ACTION_NAMES
from twin.vec_env import BatchedTwin, load_twin

logger = logging.getLogger(__name__)

Target = Literal["plant", "twin"]
FloatArray = NDArray[np.float64]

HEADLINE_KPIS: tuple[str, ...] = (
    "cooling_kwh",
    "facility_kwh",
    "it_kwh",
    "pue",
    "violation_kh_above_27",
    "violation_kh_above_32",
    "max_inlet_c",
)
"""KPIs both the plant and the twin report (the twin's from its predictions)."""


@dataclass(frozen=True)
class EvaluationResult:
    """KPIs of one policy on one scenario, plus the per-period series behind them."""

    policy: str
    scenario: str
    on: Target
    kpis: dict[str, Any]
    series: pd.DataFrame = field(compare=False)
    wall_s: float

    def write(self, out_dir: Path) -> list[Path]:
        """``kpis.json``, ``series.parquet`` and the run's plot ``run.png`` (setpoints, hottest
        inlet against the limits, power: :mod:`control.evaluation_plots`) under ``out_dir``."""
        from control.evaluation_plots import write_run_plot

        out_dir.mkdir(parents=True, exist_ok=True)
        kpi_path, series_path = out_dir / "kpis.json", out_dir / "series.parquet"
        payload = {
            "policy": self.policy,
            "scenario": self.scenario,
            "on": self.on,
            "wall_s": round(self.wall_s, 2),
            "kpis": self.kpis,
        }
        kpi_path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        self.series.to_parquet(series_path, index=False)
        return [kpi_path, series_path, write_run_plot(self, out_dir)]


def _run_episode(
    env: PlantEnv, policy: Policy, name: str, progress: bool
) -> tuple[list[dict[str, Any]], list[float]]:
    """Step ``env`` to the end of its episode under ``policy``; per-period rows and the
    policy's compute time per call."""
    obs, _ = env.reset(seed=0)
    policy.reset(1)
    rows: list[dict[str, Any]] = []
    compute_s: list[float] = []
    periods = env.episode_periods
    with tqdm(total=periods, disable=not progress, desc=name, unit="period") as bar:
        truncated = False
        while not truncated:
            started = time.perf_counter()
            action = np.asarray(policy.act(obs[None, :]), dtype=np.float32)[0]
            compute_s.append(time.perf_counter() - started)
            obs, reward, _, truncated, info = env.step(action)
            row = {"time_h": info.get("time_h", np.nan), "reward": reward}
            row.update({k: v for k, v in info.items() if isinstance(v, float)})
            row.update({f"sp.{k}": v for k, v in info["setpoints"].items()})
            rows.append(row)
            bar.update(1)
    return rows, compute_s


def evaluate(
    policy: Policy,
    scenario: str | Path | Scenario,
    *,
    on: Target = "plant",
    twin: TwinEnsemble | str | Path | None = None,
    progress: bool = False,
) -> EvaluationResult:
    """Run ``policy`` over the whole ``scenario`` on the plant or in the twin.

    In the twin every member of the ensemble runs its own closed loop with the policy (one
    environment per member, from the same start): the KPIs are the members' mean, with the
    worst member's figures, the spread between members and, where the twin carries a
    competence model, the share of periods it extrapolated and where (:func:`twin_kpis`)."""
    if on not in ("plant", "twin"):
        raise ValueError(f"evaluate on 'plant' or 'twin', not {on!r}")
    sc = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
    started = time.perf_counter()
    if on == "plant":
        env = PlantEnv(sc, record_log=True)
        rows, compute_s = _run_episode(env, policy, f"{policy.name} on {on}", progress)
        series = pd.DataFrame(rows)
        kpis: dict[str, Any] = compute_kpis(env.log_frame(), sc.step_s).to_dict()
        kpis["actuator_travel"] = actuator_travel(series)
    else:
        series, compute_s, kpis = _run_members(policy, sc, twin, progress)
    kpis["computational_time_ratio"] = computational_time_ratio(
        np.asarray(compute_s), sc.control_period_s
    )
    kpis.update(forecast_kpis(policy, sc))
    wall_s = time.perf_counter() - started
    logger.info(
        "%s on %s (%s): cooling %.0f kWh, PUE %.3f, %.2f K·h above 27 °C",
        policy.name,
        sc.name,
        on,
        kpis["cooling_kwh"],
        kpis["pue"],
        kpis["violation_kh_above_27"],
    )
    return EvaluationResult(policy.name, sc.name, on, kpis, series, wall_s)


def forecast_kpis(policy: Policy, scenario: Scenario) -> dict[str, Any]:
    """The forecast level a result was obtained with: the policy's own where it plans with
    forecasts (the MPC: the scenario's level; the oracle: ``none``), else the scenario's (the
    level of the observation's forecasts), and its 1-h wet-bulb error std (a number, so the
    reservoir keeps it too)."""
    level = str(getattr(policy, "forecast_level", scenario.forecast_level))
    return {
        "forecast_level": level,
        "forecast_wet_bulb_std_1h_k": float(error_model(level).std_k(1.0)),
    }


def _run_members(
    policy: Policy,
    sc: Scenario,
    twin: TwinEnsemble | str | Path | None,
    progress: bool,
) -> tuple[pd.DataFrame, list[float], dict[str, Any]]:
    """The policy's closed loop in every member of the twin at once (environment ``m`` runs
    member ``m``); per-period rows of the members' mean and spread, and the KPIs."""
    ensemble = load_twin(twin, TwinDesign.from_site(sc.site))
    members = len(ensemble)
    hours = sc.duration_h - sc.control_period_s / 3600.0
    sim = BatchedTwin(
        members,
        scenario=sc,
        twin=ensemble,
        episode_hours=hours,
        random_start=False,
        track_competence=ensemble.competence is not None,
    )
    sim.reset_envs(torch.arange(members))
    policy.reset(members)
    obs = sim.observe()
    compute_s: list[float] = []
    rows: list[dict[str, Any]] = []
    per_member: dict[str, list[FloatArray]] = {"cooling_kwh": [], "kh": []}
    with tqdm(
        total=sim.episode_periods,
        disable=not progress,
        desc=f"{policy.name} in the twin ({members} members)",
        unit="period",
    ) as bar:
        while not bool(sim.truncated.any()):
            t0 = time.perf_counter()
            action = np.asarray(policy.act(obs), dtype=np.float32).reshape(members, -1)
            compute_s.append((time.perf_counter() - t0) / members)
            if not np.all(np.isfinite(action)):
                raise ValueError(f"{policy.name} returned a non-finite action {action.tolist()}")
            cooling, inlet = sim.step(torch.from_numpy(action))
            reward, terms = sim.reward(cooling, inlet)
            obs = sim.observe()
            rows.append(_member_row(sim, action, reward, terms))
            per_member["cooling_kwh"].append(terms["cooling_kwh"])
            per_member["kh"].append(terms["violation_kh_recommended"])
            bar.update(1)
    series = pd.DataFrame(rows)
    matrices = {k: np.stack(v) for k, v in per_member.items()}  # (periods, members)
    return series, compute_s, twin_kpis(sim, series, matrices, ensemble.competence)


def _member_row(
    sim: BatchedTwin, action: NDArray[np.float32], reward: FloatArray, terms: dict[str, FloatArray]
) -> dict[str, Any]:
    """One period of the members' loops: their mean, extremes and spread, the competence."""
    members = len(reward)
    row_index = min(int(sim.start[0] + sim.elapsed[0]), len(sim.table.time_h) - 1)
    row: dict[str, Any] = {
        "time_h": float(sim.table.time_h[row_index]),
        "reward": float(reward.mean()),
        "cooling_kwh": float(terms["cooling_kwh"].mean()),
        "cooling_kwh_min": float(terms["cooling_kwh"].min()),
        "cooling_kwh_max": float(terms["cooling_kwh"].max()),
        "facility_kw": float(sim.last_facility_kw.mean()),
        "max_inlet_c": float(terms["max_inlet_c"].mean()),
        "max_inlet_c_worst": float(terms["max_inlet_c"].max()),
        "inlet_spread_c": float(terms["max_inlet_c"].std()) if members > 1 else 0.0,
        "violation_kh_recommended": float(terms["violation_kh_recommended"].mean()),
        "violation_kh_allowable": float(terms["violation_kh_allowable"].mean()),
    }
    if sim.competence is not None:
        ratio = sim.last_competence_ratio
        row["competence_ratio"] = float(ratio.max())
        row["extrapolating_share"] = float((ratio > 1.0).mean())
        worst = sim.last_competence_features[int(np.argmax(ratio))]
        row.update({f"feature.{n}": float(v) for n, v in zip(FEATURE_NAMES, worst, strict=True)})
    # Setpoints applied in member 0's loop (the members' loops differ as their predictions
    # do): the travel and the plots follow it.
    setpoints = sim.action_scale.to_setpoints(action[0].astype(np.float64))
    row.update({f"sp.{k}": float(v) for k, v in zip(ACTION_NAMES, setpoints, strict=True)})
    return row


def twin_kpis(
    sim: BatchedTwin,
    series: pd.DataFrame,
    members: dict[str, FloatArray],
    competence: CompetenceModel | None,
) -> dict[str, Any]:
    """The headline KPIs from the twin's predictions (members' means; period means, inlets at
    period ends), the worst member's, the spread between members, and the twin's competence:
    the share of member-periods it extrapolated and the stretches where it did."""
    hours = sim.period_s / 3600.0
    table = sim.table
    it_kwh = float(table.it_power_kw[1 : 1 + len(series)].sum() * hours)
    facility_kwh = float(series["facility_kw"].sum() * hours)
    cooling_by_member = members["cooling_kwh"].sum(axis=0)
    kh_by_member = members["kh"].sum(axis=0)
    cooling_kwh = float(cooling_by_member.mean())
    spread = cooling_by_member.max() - cooling_by_member.min()
    kpis: dict[str, Any] = {
        "duration_h": len(series) * hours,
        "cooling_kwh": cooling_kwh,
        "facility_kwh": facility_kwh,
        "it_kwh": it_kwh,
        "pue": facility_kwh / it_kwh if it_kwh > 0 else float("nan"),
        "violation_kh_above_27": float(series["violation_kh_recommended"].sum()),
        "violation_kh_above_32": float(series["violation_kh_allowable"].sum()),
        "max_inlet_c": float(series["max_inlet_c_worst"].max()),
        "members": int(members["cooling_kwh"].shape[1]),
        "cooling_kwh_members": [float(v) for v in cooling_by_member],
        "violation_kh_above_27_members": [float(v) for v in kh_by_member],
        "cooling_kwh_worst": float(cooling_by_member.max()),
        "violation_kh_above_27_worst": float(kh_by_member.max()),
        "cooling_spread_percent": float(spread / cooling_kwh * 100.0) if cooling_kwh > 0 else 0.0,
        "max_inlet_spread_c": float(series["inlet_spread_c"].max()),
        "mean_inlet_spread_c": float(series["inlet_spread_c"].mean()),
        "actuator_travel": actuator_travel(series),
    }
    if competence is not None:
        kpis["extrapolating_share"] = float(series["extrapolating_share"].mean())
        kpis["max_competence_ratio"] = float(series["competence_ratio"].max())
        kpis["blind_spells"] = blind_spells(series, competence)
    return kpis


def blind_spells(
    series: pd.DataFrame, competence: CompetenceModel, limit: int = 5
) -> list[dict[str, Any]]:
    """The longest stretches of periods where some member extrapolated: when, how far, at
    which setpoints, and which features lay furthest from the twin's data."""
    ratio = series["competence_ratio"].to_numpy()
    spells: list[tuple[int, int]] = []
    start: int | None = None
    for i, blind in enumerate([*(ratio > 1.0), False]):
        if blind and start is None:
            start = i
        elif not blind and start is not None:
            spells.append((start, i))
            start = None
    spells.sort(key=lambda ab: ab[1] - ab[0], reverse=True)
    features = series[[f"feature.{n}" for n in FEATURE_NAMES]].to_numpy()
    out = []
    for a, b in spells[:limit]:
        worst = a + int(np.argmax(ratio[a:b]))
        why = competence.explain(features[worst : worst + 1])[0]
        out.append(
            {
                "from_h": float(series["time_h"].iloc[a]),
                "to_h": float(series["time_h"].iloc[b - 1]),
                "periods": b - a,
                "max_ratio": why.ratio,
                "setpoints": {n: float(series[f"sp.{n}"].iloc[a:b].mean()) for n in ACTION_NAMES},
                "unseen": {name: round(gap, 3) for name, gap in why.features},
            }
        )
    return out


def actuator_travel(series: pd.DataFrame) -> dict[str, float]:
    """Total movement of each applied setpoint over a run (sum of |change| per period, in the
    setpoint's unit: K, fraction, or switches for the economiser): wear and operator comfort."""
    return {
        name: float(np.abs(np.diff(series[f"sp.{name}"].to_numpy(dtype=np.float64))).sum())
        for name in ACTION_NAMES
    }


def savings_percent(candidate: EvaluationResult, baseline: EvaluationResult) -> float:
    """Cooling-energy savings of ``candidate`` over ``baseline`` on the same scenario, %."""
    if (candidate.scenario, candidate.on) != (baseline.scenario, baseline.on):
        raise ValueError("savings compare runs of one scenario on one target")
    base = float(baseline.kpis["cooling_kwh"])
    return (base - float(candidate.kpis["cooling_kwh"])) / base * 100.0


def write_comparison(results: list[EvaluationResult], out_dir: Path) -> list[Path]:
    """``summary.csv`` (one row per run, the headline KPIs) and ``evaluation.png`` (per run:
    cooling power and hottest rack inlet per control period) under ``out_dir``."""
    from matplotlib.figure import Figure

    from physics.plant.report import save_png

    if not results:
        raise ValueError("no evaluation results to write")
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = [
        {"policy": r.policy, "scenario": r.scenario, "on": r.on}
        | {k: r.kpis.get(k, np.nan) for k in HEADLINE_KPIS}
        for r in results
    ]
    table = out_dir / "summary.csv"
    pd.DataFrame(rows).to_csv(table, index=False)
    fig = Figure(figsize=(11.0, 2.8 * len(results) + 0.6), layout="constrained")
    axes = fig.subplots(len(results), 1, squeeze=False)[:, 0]
    for ax, r in zip(axes, results, strict=True):
        hours = r.series["time_h"] - r.series["time_h"].iloc[0]
        cooling_kw = r.series["cooling_kwh"] / (r.kpis["duration_h"] / max(len(r.series), 1))
        ax.plot(hours, cooling_kw, color="tab:blue", lw=1.0)
        ax.set_ylabel("cooling power (kW)", color="tab:blue")
        twin_ax = ax.twinx()
        twin_ax.plot(hours, r.series["max_inlet_c"], color="tab:red", lw=1.0)
        twin_ax.axhline(27.0, color="tab:red", ls="--", lw=0.8)
        twin_ax.set_ylabel("hottest rack inlet (°C)", color="tab:red")
        ax.set_title(f"{r.policy} on {r.scenario} ({r.on})", fontsize=10)
    axes[-1].set_xlabel("time from start (h)")
    return [table, save_png(fig, out_dir / "evaluation.png")]

"""One evaluation engine: a policy over a scenario, on the plant (ground truth) or in the twin
(pre-evaluation), returning DESIGN.md's KPIs.

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
from tqdm import tqdm

from control.policy import Policy
from physics.kpi import computational_time_ratio, compute_kpis
from physics.plant.scenario import Scenario, load_scenario
from twin.ensemble import TwinEnsemble
from twin.plant_env import PlantEnv
from twin.spaces import ACTION_NAMES
from twin.twin_env import TwinEnv

logger = logging.getLogger(__name__)

Target = Literal["plant", "twin"]

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
        """``kpis.json`` and ``series.parquet`` under ``out_dir``."""
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
        return [kpi_path, series_path]


def _run_episode(
    env: PlantEnv | TwinEnv, policy: Policy, name: str, progress: bool
) -> tuple[list[dict[str, Any]], list[float]]:
    """Step ``env`` to the end of its episode under ``policy``; per-period rows and the
    policy's compute time per call."""
    obs, _ = env.reset(seed=0)
    policy.reset(1)
    rows: list[dict[str, Any]] = []
    compute_s: list[float] = []
    periods = env.episode_periods if isinstance(env, PlantEnv) else env.sim.episode_periods
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
    """Run ``policy`` over the whole ``scenario`` on the plant or in the twin."""
    if on not in ("plant", "twin"):
        raise ValueError(f"evaluate on 'plant' or 'twin', not {on!r}")
    sc = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
    started = time.perf_counter()
    if on == "plant":
        env: PlantEnv | TwinEnv = PlantEnv(sc, record_log=True)
    else:
        hours = sc.duration_h - sc.control_period_s / 3600.0
        env = TwinEnv(sc, twin=twin, episode_hours=hours, random_start=False, track_spread=True)
    rows, compute_s = _run_episode(env, policy, f"{policy.name} on {on}", progress)
    series = pd.DataFrame(rows)
    if isinstance(env, PlantEnv):
        kpis: dict[str, Any] = compute_kpis(env.log_frame(), sc.step_s).to_dict()
        kpis["actuator_travel"] = actuator_travel(series)
    else:
        kpis = _twin_kpis(env, series)
    kpis["computational_time_ratio"] = computational_time_ratio(
        np.asarray(compute_s), sc.control_period_s
    )
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


def _twin_kpis(env: TwinEnv, series: pd.DataFrame) -> dict[str, Any]:
    """The headline KPIs from the twin's predictions (period means; inlets at period ends)."""
    hours = env.sim.period_s / 3600.0
    table = env.sim.table
    it_kwh = float(table.it_power_kw[1 : 1 + len(series)].sum() * hours)
    facility_kwh = float(series["facility_kw"].sum() * hours)
    cooling_kwh = float(series["cooling_kwh"].sum())
    return {
        "duration_h": len(series) * hours,
        "cooling_kwh": cooling_kwh,
        "facility_kwh": facility_kwh,
        "it_kwh": it_kwh,
        "pue": facility_kwh / it_kwh if it_kwh > 0 else float("nan"),
        "violation_kh_above_27": float(series["violation_kh_recommended"].sum()),
        "violation_kh_above_32": float(series["violation_kh_allowable"].sum()),
        "max_inlet_c": float(series["max_inlet_c"].max()),
        "max_inlet_spread_c": float(series["inlet_spread_c"].max()),
        "mean_inlet_spread_c": float(series["inlet_spread_c"].mean()),
        "actuator_travel": actuator_travel(series),
    }


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

"""Comparison of policies over a scenario suite: the table and plots an engineer (and the
operator at gate 2) reads to choose between candidates, the incumbent and the baselines.

Input is what :func:`control.evaluation.EvaluationResult.write` leaves behind: one folder per
policy run over a suite (``twinloop evaluate --out DIR``), with a ``kpis.json`` (and
``series.parquet``) per scenario. Totals are taken over the scenarios every policy ran, so a
missing run never flatters a policy; savings are suite totals relative to the baseline's.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from control.evaluation import actuator_travel
from physics.plant.report import markdown_table
from twin.spaces import ACTION_NAMES
from twinloop.errors import TwinLoopError

logger = logging.getLogger(__name__)

TRAVEL_UNITS: dict[str, str] = {
    "supply_air_c": "K",
    "fan_speed_frac": "frac",
    "chw_supply_c": "K",
    "cw_supply_c": "K",
    "economiser_enable": "switches",
}
"""Unit of each setpoint's travel (sum of |change| between control periods)."""


class ComparisonError(TwinLoopError, ValueError):
    """Runs that cannot be compared (missing folders, different targets, nothing shared)."""


@dataclass(frozen=True)
class PolicyRuns:
    """One policy's evaluation runs over a suite: scenario -> KPIs (with actuator travel)."""

    policy: str
    on: str
    kpis: dict[str, dict[str, Any]]
    folder: Path


def _travel_of(run_dir: Path, kpis: dict[str, Any]) -> dict[str, float]:
    travel = kpis.get("actuator_travel")
    if isinstance(travel, dict):
        return {k: float(v) for k, v in travel.items()}
    series = run_dir / "series.parquet"
    if series.exists():  # runs written before plant KPIs carried the travel
        return actuator_travel(pd.read_parquet(series))
    return {name: float("nan") for name in ACTION_NAMES}


def load_runs(folder: str | Path) -> PolicyRuns:
    """The runs under ``folder`` (one ``<scenario>/kpis.json`` each)."""
    root = Path(folder)
    files = sorted(root.glob("*/kpis.json"))
    if not files:
        raise ComparisonError(f"{root}: no evaluation runs (expected <scenario>/kpis.json)")
    policies, targets, kpis = set(), set(), {}
    for path in files:
        try:
            payload = json.loads(path.read_text(encoding="utf-8"))
            policy, on, scenario = payload["policy"], payload["on"], payload["scenario"]
            values = dict(payload["kpis"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ComparisonError(f"{path}: not an evaluation result ({exc})") from None
        values["actuator_travel"] = _travel_of(path.parent, values)
        policies.add(policy)
        targets.add(on)
        kpis[scenario] = values
    if len(policies) != 1 or len(targets) != 1:
        raise ComparisonError(
            f"{root}: runs of several policies or targets ({sorted(policies)}, {sorted(targets)})"
        )
    return PolicyRuns(policies.pop(), targets.pop(), kpis, root)


def _shared_scenarios(runs: Sequence[PolicyRuns]) -> list[str]:
    if not runs:
        raise ComparisonError("no policies to compare")
    if len({r.on for r in runs}) != 1:
        raise ComparisonError("compare runs on one target (all plant or all twin)")
    names = [r.policy for r in runs]
    if len(set(names)) != len(names):
        raise ComparisonError(f"a policy appears twice: {names}")
    shared = set.intersection(*(set(r.kpis) for r in runs))
    if not shared:
        raise ComparisonError("the policies share no scenario")
    for r in runs:
        if extra := sorted(set(r.kpis) - shared):
            logger.warning("%s: left out of the totals (not run by all): %s", r.policy, extra)
    return sorted(shared)


def _totals(run: PolicyRuns, scenarios: Sequence[str]) -> dict[str, float]:
    k = [run.kpis[s] for s in scenarios]
    it_kwh = sum(float(x["it_kwh"]) for x in k)
    facility_kwh = sum(float(x["facility_kwh"]) for x in k)
    row = {
        "cooling_kwh": sum(float(x["cooling_kwh"]) for x in k),
        "facility_kwh": facility_kwh,
        "pue": facility_kwh / it_kwh if it_kwh > 0 else float("nan"),
        "violation_kh_above_27": sum(float(x["violation_kh_above_27"]) for x in k),
        "violation_kh_above_32": sum(float(x.get("violation_kh_above_32", 0.0)) for x in k),
        "max_inlet_c": max(float(x["max_inlet_c"]) for x in k),
    }
    for name in ACTION_NAMES:
        row[f"travel.{name}"] = sum(float(x["actuator_travel"].get(name, np.nan)) for x in k)
    return row


def comparison_table(
    runs: Sequence[PolicyRuns],
    *,
    baseline: str,
    reference: str | None = None,
    oracle: str | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Suite totals per policy (index: policy) and cooling savings per scenario (%).

    ``savings_vs_<baseline>_pct`` and ``savings_vs_<reference>_pct`` compare suite totals of
    cooling energy; ``share_of_oracle_pct`` is a policy's savings over the baseline as a share
    of the oracle's.
    """
    scenarios = _shared_scenarios(runs)
    by_name = {r.policy: r for r in runs}
    for role, name in (("baseline", baseline), ("reference", reference), ("oracle", oracle)):
        if name is not None and name not in by_name:
            raise ComparisonError(f"{role} {name!r} is not among the runs ({sorted(by_name)})")
    table = pd.DataFrame({r.policy: _totals(r, scenarios) for r in runs}).T
    table.index.name = "policy"
    cooling = table["cooling_kwh"].to_numpy(dtype=np.float64)
    position = {name: i for i, name in enumerate(table.index)}

    def savings_vs(name: str) -> NDArray[np.float64]:
        base = float(cooling[position[name]])
        return np.asarray((base - cooling) / base * 100.0, dtype=np.float64)

    saved = savings_vs(baseline)
    table[f"savings_vs_{baseline}_pct"] = saved
    if reference is not None:
        table[f"savings_vs_{reference}_pct"] = savings_vs(reference)
    if oracle is not None:
        table["share_of_oracle_pct"] = saved / saved[position[oracle]] * 100.0
    per_scenario = pd.DataFrame(
        {
            r.policy: [
                (by_name[baseline].kpis[s]["cooling_kwh"] - r.kpis[s]["cooling_kwh"])
                / by_name[baseline].kpis[s]["cooling_kwh"]
                * 100.0
                for s in scenarios
            ]
            for r in runs
        },
        index=pd.Index(scenarios, name="scenario"),
    )
    return table, per_scenario


def forecast_levels(runs: Sequence[PolicyRuns]) -> dict[str, str]:
    """Per policy, the forecast level(s) its runs record (``unrecorded`` for runs written
    before results carried one; several levels joined by ``/``)."""
    scenarios = _shared_scenarios(runs)
    return {
        r.policy: "/".join(
            sorted({str(r.kpis[s].get("forecast_level", "unrecorded")) for s in scenarios})
        )
        for r in runs
    }


def _frame_markdown(frame: pd.DataFrame, digits: int) -> str:
    rows = [
        [str(index), *(f"{float(v):.{digits}f}" for v in row)]
        for index, row in zip(frame.index, frame.to_numpy(), strict=True)
    ]
    return markdown_table([str(frame.index.name or ""), *map(str, frame.columns)], rows)


def _markdown(
    table: pd.DataFrame, per_scenario: pd.DataFrame, baseline: str, levels: dict[str, str]
) -> str:
    headline = [c for c in table.columns if not c.startswith("travel.")]
    travel = [c for c in table.columns if c.startswith("travel.")]
    lines = [
        f"# Policy comparison ({len(per_scenario)} scenarios)",
        "",
        "Suite totals; savings are of cooling energy over the whole suite.",
        "",
        "Forecast level (weather-forecast error each policy had; `none` is perfect "
        "foresight): " + ", ".join(f"{p} {level}" for p, level in levels.items()) + ".",
        "",
        _frame_markdown(table[headline], 3),
        "",
        "## Actuator travel (sum of |change| per period over the suite)",
        "",
        _frame_markdown(
            table[travel].rename(columns=lambda c: f"{c[7:]} ({TRAVEL_UNITS.get(c[7:], '')})"), 1
        ),
        "",
        f"## Cooling-energy savings per scenario vs {baseline} (%)",
        "",
        _frame_markdown(per_scenario, 2),
        "",
    ]
    return "\n".join(lines)


def write_comparison_report(
    runs: Sequence[PolicyRuns],
    out_dir: str | Path,
    *,
    baseline: str,
    reference: str | None = None,
    oracle: str | None = None,
) -> list[Path]:
    """``comparison.csv``, ``savings_by_scenario.csv``, ``comparison.md`` and
    ``comparison.png`` (savings per scenario; cooling energy vs worst inlet) in ``out_dir``."""
    from matplotlib.figure import Figure

    from physics.plant.report import save_png

    table, per_scenario = comparison_table(
        runs, baseline=baseline, reference=reference, oracle=oracle
    )
    levels = forecast_levels(runs)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    table.assign(forecast_level=[levels[p] for p in table.index]).to_csv(out / "comparison.csv")
    per_scenario.to_csv(out / "savings_by_scenario.csv")
    markdown = _markdown(table, per_scenario, baseline, levels)
    (out / "comparison.md").write_text(markdown, "utf-8")

    fig = Figure(figsize=(12.0, 4.6), layout="constrained")
    bars, scatter = fig.subplots(1, 2, width_ratios=[2.2, 1.0])
    others = [p for p in per_scenario.columns if p != baseline]
    width = 0.8 / max(len(others), 1)
    x = np.arange(len(per_scenario))
    for i, policy in enumerate(others):
        bars.bar(x + (i - (len(others) - 1) / 2) * width, per_scenario[policy], width, label=policy)
    bars.axhline(0.0, color="black", lw=0.8)
    bars.set_xticks(x, [s.removeprefix("holdout-") for s in per_scenario.index], rotation=20)
    bars.set_ylabel(f"cooling-energy savings vs {baseline} (%)")
    bars.legend(fontsize=8)
    for policy, inlet_c, kwh in zip(
        table.index, table["max_inlet_c"], table["cooling_kwh"], strict=True
    ):
        scatter.scatter(inlet_c, kwh / 1000.0, s=40)
        scatter.annotate(str(policy), (inlet_c, kwh / 1000.0), fontsize=8)
    scatter.axvline(27.0, color="tab:red", ls="--", lw=0.8)
    scatter.set_xlabel("hottest rack inlet over the suite (°C)")
    scatter.set_ylabel("cooling energy over the suite (MWh)")
    paths = [out / "comparison.csv", out / "savings_by_scenario.csv", out / "comparison.md"]
    return [*paths, save_png(fig, out / "comparison.png")]

"""Does gate 1 tell plant-good policies from plant-bad ones? A panel of candidates, each
judged by gate 1 in a held-out site's own twin and measured on that site's plant.

For every held-out site (the reference design with hidden parameters drawn by ``--site``
seeds no shipped scenario uses) the benchmark does what a real site would:

1. records three commissioning days under exploration and fits the site's twin from them
   (3 members, 200 iterations; its competence model comes with it);
2. calibrates the ensemble's spread on three other recorded days and reports the 90 %
   intervals' coverage, split by the competence flag;
3. runs every candidate and the incumbent (trim-and-respond) behind the site's shield over
   the site's suite — a summer pair of days, a heat wave, a CRAH fan trip, a lead-chiller
   trip — once in the site's twin, judged by gate 1 with the frozen default rules
   (:class:`control.gate.GateConfig`), and once on the site's plant.

The plant labels each candidate: good = ≤ 0.05 K·h above 27 °C and ≥ 2 % cooling savings
vs trim-and-respond over the suite; bad = > 0.5 K·h or < 0 % savings; otherwise grey (shown,
not scored). The report (``OUT/gate_trust.md``, ``results.json``, ``predicted_vs_measured.png``)
gives the confusion table, the true-accept rate, and the twin-predicted beside the
plant-measured savings and K·h of every candidate. Runs are cached under ``OUT`` (``--rerun``
repeats them).

    python benchmarks/gate_trust.py --agents out/panel --site 41 --site 53
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from control.catalog import agent_policy, builtin_factory
from control.evaluation import EvaluationResult, evaluate
from control.gate import GateConfig, gate1
from control.policy import Obs, Policy
from control.shielded import ShieldedPolicy
from physics.plant.scenario import Scenario, load_scenario
from twin.calibration import calibrate, coverage, member_predictions, split_halves
from twin.dataset import design_of, periods_from_recordings
from twin.ensemble import TwinEnsemble
from twin.recording import load_recordings, record_run
from twin.spaces import ActionScale
from twin.training import FitConfig, fit_twin

INCUMBENT = "trim-and-respond"
GOOD_KH, GOOD_SAVINGS, BAD_KH, BAD_SAVINGS = 0.05, 2.0, 0.5, 0.0

SITE = "site: {{variant: reference, seed: {seed}}}\n"
COMMON = (
    "workload: {{kind: diurnal, mean_frac: 0.65, amplitude_frac: 0.15}}\n"
    "duration: {duration}\nstep: 60 s\ncontrol_period: 5 min\nsensor_noise: 1.0\nseed: {run}\n"
)
SUITE: dict[str, str] = {
    "summer-2d": 'weather: {{file: "pvlib:miami", start: "07-08"}}\n',
    "heat-wave-2d": (
        'weather: {{file: "pvlib:miami", start: "08-12", '
        "heat_wave: {{start: 6 h, duration: 36 h, peak_offset: 5 K}}}}\n"
    ),
    "crah-trip-2d": (
        'weather: {{file: "pvlib:miami", start: "09-03"}}\n'
        "faults:\n  - {{kind: crah_fan_trip, at: 20 h, duration: 8 h, target: 3}}\n"
    ),
    "chiller-trip-2d": (
        'weather: {{file: "pvlib:miami", start: "07-22"}}\n'
        "faults:\n  - {{kind: chiller_trip, at: 14 h, duration: 3 h, target: 0}}\n"
    ),
}


class RandomPolicy:
    """Uniform random actions (seeded): no site should ever accept it."""

    kind = "rule"

    def __init__(self, seed: int = 0) -> None:
        self.name = f"random-s{seed}"
        self.seed = seed
        self.rng = np.random.default_rng(seed)

    def reset(self, n_envs: int = 1) -> None:
        self.rng = np.random.default_rng(self.seed)

    def act(self, observation: Obs) -> Obs:
        out: Obs = self.rng.uniform(-1.0, 1.0, size=(len(observation), 5)).astype(np.float32)
        return out


class ChatterPolicy:
    """The exploit a PPO agent found in the drawings' twin: condenser water at 33 °C, chilled
    water at 12 °C, fans at 0.6, the economiser toggled every period."""

    kind = "rule"
    name = "chatter"

    def reset(self, n_envs: int = 1) -> None:
        self.t = 0

    def act(self, observation: Obs) -> Obs:
        self.t += 1
        sp = np.array([22.0, 0.6, 12.0, 33.0, float(self.t % 2)])
        action = ActionScale().to_action(sp)
        out: Obs = np.tile(action, (len(observation), 1)).astype(np.float32)
        return out


def _write_scenario(folder: Path, name: str, body: str, seed: int, run: int, duration: str) -> Path:
    text = (
        f"name: {name}\n"
        + SITE.format(seed=seed)
        + body.format()
        + COMMON.format(duration=duration, run=run)
    )
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def site_twin(seed: int, out: Path, iterations: int = 200) -> tuple[Path, dict[str, Any]]:
    """The site's twin from its own commissioning days (3 members of ``iterations``), and
    its calibrated coverage."""
    twin_dir = out / "twin"
    card = out / "calibration.json"
    if (twin_dir / "twin.pt").exists() and card.exists():
        return twin_dir, json.loads(card.read_text(encoding="utf-8"))
    data = {}
    for label, start, run in (("commissioning", "06-20", 5), ("calibration", "08-20", 9)):
        body = 'weather: {{file: "pvlib:miami", start: "' + start + '"}}\n'
        path = _write_scenario(out / "scenarios", f"site{seed}-{label}", body, seed, run, "3 d")
        record_run(load_scenario(path), policy="explore", seed=run, out_dir=out / label,
                   overwrite=True)  # fmt: skip
        recordings = load_recordings(out / label)
        data[label] = periods_from_recordings(recordings, design_of(recordings))
    started = time.perf_counter()
    recs = load_recordings(out / "commissioning")
    ensemble = fit_twin(
        design_of(recs), data["commissioning"], FitConfig(ensemble_size=3, iterations=iterations),
        progress=True,
    )  # fmt: skip
    fit_s = time.perf_counter() - started
    first, second = split_halves(data["calibration"])
    cal = calibrate(member_predictions(ensemble, first))
    checked = coverage(member_predictions(ensemble, second), cal)
    ensemble.summary["calibration"] = cal.to_dict() | {"coverage": checked}
    ensemble.save(twin_dir)
    info = {"fit_s": fit_s, "calibration": cal.to_dict(), "coverage": checked}
    card.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return twin_dir, info


def _kpis_of(result: EvaluationResult) -> dict[str, Any]:
    keep = (
        "cooling_kwh", "violation_kh_above_27", "max_inlet_c", "cooling_kwh_members",
        "violation_kh_above_27_worst", "cooling_kwh_worst", "cooling_spread_percent",
        "max_inlet_spread_c", "extrapolating_share", "blind_spells", "members",
    )  # fmt: skip
    return {k: result.kpis[k] for k in keep if k in result.kpis}


def run_cached(
    path: Path, policy: Callable[[], Policy], sc: Scenario, on: str, twin: TwinEnsemble, rerun: bool
) -> tuple[EvaluationResult, float]:
    """The policy behind the site's shield on ``sc`` in the twin or on the plant, or its
    cached KPIs (``path``), and the seconds it took."""
    if path.exists() and not rerun:
        saved = json.loads(path.read_text(encoding="utf-8"))
        result = EvaluationResult(
            saved["policy"], saved["scenario"], saved["on"], saved["kpis"], pd.DataFrame(), 0.0
        )
        return result, float(saved["wall_s"])
    started = time.perf_counter()
    target: Literal["plant", "twin"] = "twin" if on == "twin" else "plant"
    result = evaluate(ShieldedPolicy(policy(), sc), sc, on=target, twin=twin)
    wall = time.perf_counter() - started
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "policy": result.policy,
        "scenario": result.scenario,
        "on": result.on,
        "wall_s": wall,
        "kpis": _kpis_of(result),
    }
    path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    return result, wall


def label_of(savings: float, kh: float) -> str:
    if kh > BAD_KH or savings < BAD_SAVINGS:
        return "bad"
    if kh <= GOOD_KH and savings >= GOOD_SAVINGS:
        return "good"
    return "grey"


def candidates(
    agent_dirs: list[Path], with_mpc: bool
) -> dict[str, Callable[[Scenario, TwinEnsemble], Policy]]:
    """Name → factory(scenario, twin) of every panel candidate."""
    panel: dict[str, Callable[[Scenario, TwinEnsemble], Policy]] = {}
    if with_mpc:
        panel["mpc"] = _builtin("mpc")
    panel["fixed-setpoints"] = _builtin("fixed-setpoints")
    panel["random-s0"] = lambda sc, twin: RandomPolicy(0)
    panel["chatter"] = lambda sc, twin: ChatterPolicy()
    for root in agent_dirs:
        folders = sorted(root.glob("*/checkpoints/step-*")) + [
            p.parent
            for p in sorted(root.glob("*/model.zip")) + sorted(root.glob("*/selected/model.zip"))
        ]
        for folder in folders:
            if folder.name.startswith("step-"):
                steps = int(folder.name.split("-")[1])
                name = f"{folder.parent.parent.name}@{steps / 1e3:.0f}k"
            elif folder.name == "selected":
                name = f"{folder.parent.name}@selected"
            else:
                name = f"{folder.name}@final"
            panel[name] = _agent(folder, name)
    # A selected snapshot is a copy of one already in the panel: keep it under its own name,
    # not twice.
    for name in [n for n in panel if n.endswith("@selected")]:
        root_name = name.removesuffix("@selected")
        chosen = json.loads((_root_of(agent_dirs, root_name) / "selection.json").read_text())
        for other in list(panel):
            same_run = other.startswith(root_name + "@") and other != name
            if same_run and _same_model(other, chosen["chosen"]):
                del panel[other]
    return panel


def _root_of(agent_dirs: list[Path], run: str) -> Path:
    return next(root / run for root in agent_dirs if (root / run).is_dir())


def _same_model(name: str, chosen: str) -> bool:
    """Whether panel entry ``name`` (``run@steps`` or ``run@final``) is the snapshot that
    selection chose. ``chosen`` is the path the training wrote, which may name the run's folder
    where it was then (a copied or moved run keeps it): match on the run's own name and the
    snapshot within it, not on the whole path."""
    run, which = name.split("@")
    path = Path(chosen)
    if which == "final":
        return path.name == run
    return (
        path.parent.name == "checkpoints"
        and path.parent.parent.name == run
        and path.name.startswith("step-")
        and f"{int(path.name.split('-')[1]) / 1e3:.0f}k" == which
    )


def _agent(folder: Path, name: str) -> Callable[[Scenario, TwinEnsemble], Policy]:
    def make(sc: Scenario, twin: TwinEnsemble) -> Policy:
        return agent_policy(folder, name=name)

    return make


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--site", type=int, action="append", help="held-out site seeds")
    parser.add_argument(
        "--agents",
        type=Path,
        action="append",
        default=[],
        help="folder of trained agents (each */model.zip, */checkpoints/step-*)",
    )
    parser.add_argument("--no-mpc", action="store_true", help="leave the MPC out (slow)")
    parser.add_argument("--out", type=Path, default=Path("out/bench/gate-trust"))
    parser.add_argument("--rerun", action="store_true")
    parser.add_argument(
        "--fit-iterations",
        type=int,
        default=200,
        help="iterations of each site twin's 3 members (200; `twinloop twin fit` ships 500)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    config = GateConfig()  # frozen before the panel runs: the shipped defaults
    panel = candidates(args.agents, not args.no_mpc)
    rows: list[dict[str, Any]] = []
    site_info: dict[str, Any] = {}
    for seed in args.site or [41, 53]:
        site_dir = args.out / f"site-{seed}"
        twin_dir, site_info[str(seed)] = site_twin(seed, site_dir, args.fit_iterations)
        twin = TwinEnsemble.load(twin_dir)
        scenarios = [
            load_scenario(
                _write_scenario(
                    site_dir / "scenarios", f"site{seed}-{name}", body, seed, 21 + i, "2 d"
                )
            )
            for i, (name, body) in enumerate(SUITE.items())
        ]
        runs: dict[str, dict[str, list[EvaluationResult]]] = {}
        walls: dict[str, float] = {}
        for name, factory in {INCUMBENT: _builtin(INCUMBENT), **panel}.items():
            runs[name] = {"twin": [], "plant": []}
            walls[name] = 0.0
            for sc in scenarios:
                for on in ("twin", "plant"):
                    result, wall = run_cached(
                        site_dir / name / on / f"{sc.name}.json",
                        partial(factory, sc, twin),
                        sc,
                        on,
                        twin,
                        args.rerun,
                    )
                    runs[name][on].append(result)
                    walls[name] += wall if on == "twin" else 0.0
            if name != INCUMBENT:
                rows.append(_row(seed, name, runs[name], runs[INCUMBENT], walls[name], config))
    write_report(args.out, rows, site_info, config)


def _builtin(name: str) -> Callable[[Scenario, TwinEnsemble], Policy]:
    def make(sc: Scenario, twin: TwinEnsemble) -> Policy:
        return builtin_factory(name, twin=twin)(sc)

    return make


def _row(
    seed: int,
    name: str,
    mine: dict[str, list[EvaluationResult]],
    incumbent: dict[str, list[EvaluationResult]],
    gate_s: float,
    config: GateConfig,
) -> dict[str, Any]:
    report = gate1(mine["twin"], incumbent["twin"], config)
    plant_c = sum(r.kpis["cooling_kwh"] for r in mine["plant"])
    plant_i = sum(r.kpis["cooling_kwh"] for r in incumbent["plant"])
    plant_savings = (plant_i - plant_c) / plant_i * 100.0
    plant_kh = sum(r.kpis["violation_kh_above_27"] for r in mine["plant"])
    twin_kh = sum(
        r.kpis.get("violation_kh_above_27_worst", r.kpis["violation_kh_above_27"])
        for r in mine["twin"]
    )
    extrap = [r.kpis.get("extrapolating_share", math.nan) for r in mine["twin"]]
    row = {
        "site": seed,
        "candidate": name,
        "passed": report.passed,
        "reason": report.reasons[0] if report.reasons else "",
        "twin_savings_percent": report.savings_percent,
        "twin_pessimistic_savings_percent": report.pessimistic_savings_percent,
        "plant_savings_percent": plant_savings,
        "twin_kh_worst": twin_kh,
        "plant_kh": plant_kh,
        "plant_max_inlet_c": max(r.kpis["max_inlet_c"] for r in mine["plant"]),
        "extrapolating_share_max": float(np.nanmax(extrap)),
        "label": label_of(plant_savings, plant_kh),
        "gate_wall_s": gate_s,
    }
    print(
        f"site {seed} {name:28s} gate {'PASS' if row['passed'] else 'fail'} "
        f"twin {row['twin_savings_percent']:6.1f} % (pess. "
        f"{row['twin_pessimistic_savings_percent']:6.1f}) plant "
        f"{plant_savings:6.1f} % {plant_kh:8.2f} K·h → {row['label']} "
        f"(extrap. {row['extrapolating_share_max'] * 100:.0f} %, {gate_s:.0f} s)",
        flush=True,
    )
    return row


def write_report(
    out: Path, rows: list[dict[str, Any]], site_info: dict[str, Any], config: GateConfig
) -> None:
    from matplotlib.figure import Figure

    scored = [r for r in rows if r["label"] != "grey"]
    table = {
        (lab, verdict): sum(1 for r in scored if r["label"] == lab and r["passed"] == verdict)
        for lab in ("good", "bad")
        for verdict in (True, False)
    }
    good = table[("good", True)] + table[("good", False)]
    tar = table[("good", True)] / good if good else math.nan
    accepted = [r for r in rows if r["passed"]]
    errors = [r["twin_savings_percent"] - r["plant_savings_percent"] for r in accepted]
    summary = {
        "date": time.strftime("%Y-%m-%d"),
        "config": asdict(config),
        "false_accepts": table[("bad", True)],
        "true_accepts": table[("good", True)],
        "false_rejects": table[("good", False)],
        "true_rejects": table[("bad", False)],
        "true_accept_rate": tar,
        "grey": len(rows) - len(scored),
        "accepted_prediction_error_points": errors,
        "sites": site_info,
        "rows": rows,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    lines = [
        "# Gate 1 against the plant",
        "",
        f"Candidates: {len(rows)} over {len(site_info)} held-out site(s); good {good}, "
        f"bad {sum(1 for r in scored if r['label'] == 'bad')}, grey {summary['grey']}.",
        "",
        "| plant \\ gate 1 | accepted | rejected |",
        "|---|---|---|",
        f"| good | {table[('good', True)]} | {table[('good', False)]} |",
        f"| bad | {table[('bad', True)]} | {table[('bad', False)]} |",
        "",
        f"False accepts: {table[('bad', True)]}; true-accept rate: {tar * 100:.0f} %.",
        "",
        "| site | candidate | gate 1 | twin savings % (pess.) | plant savings % | twin K·h "
        "(worst) | plant K·h | extrap. % | label | gate s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['site']} | {r['candidate']} | {'pass' if r['passed'] else 'reject'} "
            f"| {r['twin_savings_percent']:.1f} ({r['twin_pessimistic_savings_percent']:.1f}) "
            f"| {r['plant_savings_percent']:.1f} | {r['twin_kh_worst']:.2f} | {r['plant_kh']:.2f} "
            f"| {r['extrapolating_share_max'] * 100:.0f} | {r['label']} | {r['gate_wall_s']:.0f} |"
        )
    lines += [
        "",
        "Coverage of the calibrated 90 % intervals (second half of the calibration days):",
    ]
    for seed, info in site_info.items():
        for flag in ("interpolating", "extrapolating"):
            c = info["coverage"][flag]
            lines.append(
                f"- site {seed}, {flag} ({c['windows']} windows): hottest inlet "
                f"{c['hottest_inlet_c'] * 100:.1f} %, cooling {c['cooling_kw'] * 100:.1f} %, "
                f"facility {c['facility_kw'] * 100:.1f} %"
            )
    lines += ["", "First reason of each rejection:", ""]
    lines += [
        f"- site {r['site']} {r['candidate']}: {r['reason']}" for r in rows if not r["passed"]
    ]
    (out / "gate_trust.md").write_text("\n".join(lines) + "\n", encoding="utf-8")

    fig = Figure(figsize=(7.5, 6.0), layout="constrained")
    ax = fig.subplots()
    colours = {"good": "tab:green", "bad": "tab:red", "grey": "tab:gray"}
    for r in rows:
        ax.scatter(
            r["plant_savings_percent"], r["twin_savings_percent"],
            c=colours[r["label"]], marker="o" if r["passed"] else "x", s=50,
        )  # fmt: skip
        ax.annotate(r["candidate"], (r["plant_savings_percent"], r["twin_savings_percent"]),
                    fontsize=6, alpha=0.7)  # fmt: skip
    lim = [min(-20.0, *(r["plant_savings_percent"] for r in rows)), 60.0]
    ax.plot(lim, lim, color="black", lw=0.6, ls="--")
    ax.set_xlabel("plant-measured savings vs trim-and-respond (%)")
    ax.set_ylabel("twin-predicted savings (%)")
    ax.set_title("gate 1: o accepted, x rejected; green good, red bad, grey in between")
    fig.savefig(out / "predicted_vs_measured.png", dpi=120)
    print(out / "gate_trust.md")


if __name__ == "__main__":
    main()

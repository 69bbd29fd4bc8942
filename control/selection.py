"""Choosing which snapshot of a training run goes to the reservoir: by its pessimistic score
in the twin on a *selection* suite, never by the plant and never on gate 1's own suite.

A training run leaves snapshots (``checkpoints/step-*``) and a final model. Past some point a
learner may find the twin's errors (a PPO agent after ~1.2M steps in the drawings' twin), so
the last snapshot is not necessarily the best. Each snapshot runs, behind the site's shield,
in every member of the twin over the selection suite against the incumbent, and is judged
by gate 1's rules; its score is the savings in the member least favourable to it. Snapshots
that break a rule (degree-hours in the worst member, extrapolation, disagreement) score
nothing. Choosing on gate 1's suite would pick the best gate-fooler: the selection suite
holds other days.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tqdm import tqdm

from control.catalog import agent_policy, builtin_factory
from control.evaluation import EvaluationResult, evaluate
from control.gate import GateConfig, gate1
from control.shielded import ShieldedPolicy
from control.suites import load_suite
from twin.ensemble import TwinEnsemble

logger = logging.getLogger(__name__)

SELECTED_DIR = "selected"
SELECTION_FILE = "selection.json"
DEFAULT_SELECTION_SUITE = "selection"


@dataclass(frozen=True)
class Selection:
    """The chosen snapshot and every snapshot's figures."""

    chosen: Path | None
    rows: tuple[dict[str, Any], ...]


def snapshots(run_dir: Path) -> list[Path]:
    """The loadable snapshots of a training run, oldest first, the final model last."""
    found = sorted(
        p for p in (run_dir / "checkpoints").glob("step-*") if (p / "model.zip").is_file()
    )
    if (run_dir / "model.zip").is_file():
        found.append(run_dir)
    return found


def _run(
    policy_dir: Path | None, name: str, suite: str, twin: TwinEnsemble
) -> list[EvaluationResult]:
    results = []
    for scenario in load_suite(suite).scenarios:
        if policy_dir is None:
            policy = builtin_factory(name)(scenario)
        else:
            policy = agent_policy(policy_dir, name=name)
        shielded = ShieldedPolicy(policy, scenario)
        results.append(evaluate(shielded, scenario, on="twin", twin=twin))
    return results


def select_snapshot(
    run_dir: Path,
    twin: TwinEnsemble,
    *,
    suite: str = DEFAULT_SELECTION_SUITE,
    incumbent: str = "trim-and-respond",
    gate: GateConfig | None = None,
    progress: bool = False,
) -> Selection:
    """Judge every snapshot of ``run_dir`` (see the module docstring), copy the best into
    ``run_dir/selected`` and write ``run_dir/selection.json``; ``chosen`` is None when no
    snapshot keeps every rule."""
    found = snapshots(run_dir)
    if not found:
        raise ValueError(f"{run_dir}: no trained model or snapshot to select from")
    # The savings are the score, not a rule that drops a snapshot: judged without a margin.
    cfg = replace(gate or GateConfig(), min_savings_percent=-99.0)
    theirs = _run(None, incumbent, suite, twin)
    rows: list[dict[str, Any]] = []
    best: tuple[float, Path] | None = None
    for folder in tqdm(found, desc="selecting", unit="snapshot", disable=not progress):
        name = "final" if folder == run_dir else folder.name
        report = gate1(_run(folder, name, suite, twin), theirs, cfg)
        broken = list(report.reasons)
        score = report.pessimistic_savings_percent if not broken else -math.inf
        rows.append(
            {
                "snapshot": str(folder),
                "savings_percent": report.savings_percent,
                "pessimistic_savings_percent": report.pessimistic_savings_percent,
                "score": score,
                "broken": broken,
            }
        )
        if math.isfinite(score) and (best is None or score > best[0]):
            best = (score, folder)
    chosen = None
    if best is not None:
        chosen = run_dir / SELECTED_DIR
        if chosen.exists():
            shutil.rmtree(chosen)
        chosen.mkdir()
        for item in ("model.zip", "training.json"):
            if (best[1] / item).exists():
                shutil.copy2(best[1] / item, chosen / item)
    payload = {
        "suite": suite,
        "incumbent": incumbent,
        "chosen": None if best is None else str(best[1]),
        "rows": [r | {"score": r["score"] if math.isfinite(r["score"]) else None} for r in rows],
    }
    (run_dir / SELECTION_FILE).write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    logger.info("selected %s for %s", payload["chosen"], run_dir)
    return Selection(chosen, tuple(rows))

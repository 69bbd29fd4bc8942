"""Loop 1 of the dual loop: pre-evaluate a reservoir candidate in the twin and apply gate 1.

The candidate and the incumbent run the pre-evaluation suite in the twin, behind the site's
safety shield as they would run live, in every member of the twin's ensemble; every run's KPIs
(and its report folder) are stored with the policy in the reservoir; gate 1 judges; the
candidate moves to ``pre_evaluated`` — and, when gate 1 fails, on to ``rejected`` with the
gate's reasons — in the reservoir's history, by the actor ``gate1``. What passes waits for an
operator's verification (loop 2).
"""

from __future__ import annotations

import json
import logging
import math
import re
import tempfile
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from control.catalog import (
    BUILTIN_POLICIES,
    RULE_POLICIES,
    PolicyFactory,
    PolicyNotFoundError,
    agent_policy,
    builtin_factory,
)
from control.evaluation import EvaluationResult, evaluate
from control.gate import GateConfig, GateReport, gate1
from control.reservoir import PolicyRecord, Reservoir
from control.shielded import ShieldedPolicy
from control.suites import load_suite
from twin.ensemble import TwinEnsemble
from twinloop.errors import TwinLoopError

logger = logging.getLogger(__name__)


class PreEvaluationError(TwinLoopError, ValueError):
    """A pre-evaluation the reservoir's state refuses: the candidate is not a candidate,
    or it is its own incumbent."""


GATE_ACTOR = "gate1"


def register_builtin(reservoir: Reservoir, name: str, *, actor: str) -> PolicyRecord:
    """Register a built-in policy (no artifact: its hash is that of its parameters); the
    latest version when one of that name is already there. A controller (``mpc``,
    ``oracle-mpc``) stores its configuration as its artifact; ``oracle-mpc`` registers as an
    oracle (an upper bound that can never be approved)."""
    if name not in BUILTIN_POLICIES:
        raise PolicyNotFoundError(
            f"unknown built-in policy {name!r} (known: {', '.join(BUILTIN_POLICIES)})"
        )
    existing = [r for r in reservoir.list() if r.name == name]
    if existing:
        return max(existing, key=lambda r: r.version)
    params: dict[str, Any] = {"builtin": name}
    if name in RULE_POLICIES:
        policy = RULE_POLICIES[name]()
        config = getattr(policy, "config", None)
        if config is not None:
            params["config"] = asdict(config)
        kind, doc = "rule", type(policy).__doc__ or ""
    else:
        from control.mpc import MpcConfig, MpcPolicy, OracleMpcPolicy

        params["config"] = asdict(MpcConfig())
        kind = "oracle" if name == "oracle-mpc" else "mpc"
        doc = (OracleMpcPolicy if kind == "oracle" else MpcPolicy).__doc__ or ""
    description = plain_summary(doc)
    if kind == "rule":
        return reservoir.register(
            name,
            kind,
            None,
            hyperparameters=params,
            training_scenarios=(),
            description=description,
            actor=actor,
        )
    # A controller's artifact is its configuration: the file whose hash the gate checks.
    with tempfile.TemporaryDirectory() as tmp:
        artifact = Path(tmp) / f"{name}.json"
        artifact.write_text(json.dumps(params, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        return reservoir.register(
            name,
            kind,
            artifact,
            hyperparameters=params,
            training_scenarios=(),
            description=description,
            actor=actor,
        )


def plain_summary(doc: str) -> str:
    """A docstring's first line as an operator reads it: reST roles reduced to the name,
    no literal markup, no pointers to the code's own documentation, no ``kind`` note."""
    line = doc.strip().splitlines()[0] if doc.strip() else ""
    line = re.sub(r":\w+:`~?([^`]+)`", lambda m: m.group(1).split(".")[-1], line)
    line = line.replace("``", "")
    line = re.sub(r"\s*\(see the module docstring\)", "", line)
    line = re.sub(r';\s*kind\s+"[^"]*"', "", line)
    return line.strip()


def policy_factory_of(
    reservoir: Reservoir, record: PolicyRecord, *, twin: TwinEnsemble | None = None
) -> PolicyFactory:
    """How to make the runnable policy a reservoir record stands for, per scenario."""
    builtin = record.hyperparameters.get("builtin")
    if isinstance(builtin, str):
        return builtin_factory(builtin, twin=twin)
    folder = reservoir.artifact_path(record.ref)
    if record.kind == "drl" and folder is not None and (folder / "model.zip").is_file():
        policy = agent_policy(folder, name=record.ref)
        return lambda scenario: policy
    raise PolicyNotFoundError(f"{record.ref}: no way to run a {record.kind} policy stored so")


def _finite_kpis(kpis: Mapping[str, Any]) -> dict[str, float]:
    """The scalar, finite KPIs (the reservoir stores numbers; nested ones are flattened)."""
    flat: dict[str, float] = {}
    for key, value in kpis.items():
        if isinstance(value, Mapping):
            flat.update(_finite_kpis({f"{key}.{k}": v for k, v in value.items()}))
        elif isinstance(value, int | float) and math.isfinite(float(value)):
            flat[key] = float(value)
    return flat


def _run_suite(
    reservoir: Reservoir,
    record: PolicyRecord,
    suite: str,
    twin: TwinEnsemble | None,
    out_dir: Path,
    progress: bool,
) -> list[EvaluationResult]:
    make_policy = policy_factory_of(reservoir, record, twin=twin)
    results = []
    for scenario in load_suite(suite).scenarios:
        # Judged as the plant would see it: behind the site's shield.
        policy = ShieldedPolicy(make_policy(scenario), scenario)
        result = evaluate(policy, scenario, on="twin", twin=twin, progress=progress)
        folder = out_dir / record.ref.replace("@", "-v") / scenario.name
        result.write(folder)
        reservoir.add_evaluation(
            record.ref,
            on="twin",
            scenario=scenario.name,
            kpis=_finite_kpis(result.kpis),
            report_dir=folder,
        )
        results.append(
            EvaluationResult(record.ref, result.scenario, "twin", result.kpis, result.series, 0.0)
        )
    return results


def pre_evaluate(
    reservoir: Reservoir,
    candidate: str,
    incumbent: str,
    *,
    twin: TwinEnsemble | None,
    out_dir: Path,
    suite: str = "pre-evaluation",
    gate: GateConfig | None = None,
    progress: bool = False,
) -> GateReport:
    """Run loop 1 for ``candidate`` against ``incumbent`` (reservoir refs); see the module
    docstring. The gate report is written to ``out_dir`` and returned."""
    cand, inc = reservoir.get(candidate), reservoir.get(incumbent)
    if cand.state != "candidate":
        raise PreEvaluationError(
            f"{cand.ref} is {cand.state}, not a candidate awaiting pre-evaluation"
        )
    if cand.ref == inc.ref:
        raise PreEvaluationError("a policy cannot be its own incumbent")
    mine = _run_suite(reservoir, cand, suite, twin, out_dir, progress)
    theirs = _run_suite(reservoir, inc, suite, twin, out_dir, progress)
    report = gate1(mine, theirs, gate)
    report.write(out_dir)
    summary = (
        f"gate 1 passed on suite {suite}: saves {report.savings_percent:.2f} % vs {inc.ref}"
        if report.passed
        else f"gate 1 failed on suite {suite}: " + "; ".join(report.reasons)
    )
    reservoir.transition(cand.ref, "pre_evaluated", actor=GATE_ACTOR, reason=summary)
    if not report.passed:
        reservoir.transition(cand.ref, "rejected", actor=GATE_ACTOR, reason=summary)
    logger.info("%s: %s", cand.ref, summary)
    return report

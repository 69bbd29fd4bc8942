"""Gate 1 of the dual loop: the automatic verdict on a candidate's pre-evaluation.

On every scenario of the pre-evaluation suite the candidate must keep the rack inlets at or
below the recommended limit (zero violation degree-hours above 27 °C by default), never
exceed the allowable limit (32 °C for class A1), faults included, and stay inside the twin's
competence (the ensemble's disagreement on the hottest rack within a bound); over the suite
it must beat the incumbent's cooling energy by a margin. The verdict lists every reason it
failed, with the numbers, so an operator reading it at gate 2 sees exactly why.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from control.evaluation import EvaluationResult

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GateConfig:
    """Gate 1's rules for one site (defaults from DESIGN.md)."""

    max_violation_kh_above_27: float = 0.0
    allowable_max_inlet_c: float = 32.0
    max_inlet_spread_c: float = 0.5
    """Largest ensemble disagreement on the hottest rack the twin is trusted with."""
    min_savings_percent: float = 1.0
    """Cooling energy the candidate must save over the incumbent, % of the incumbent's."""

    def __post_init__(self) -> None:
        for name in ("max_violation_kh_above_27", "max_inlet_spread_c"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"GateConfig.{name} must be a non-negative number")
        if not 15.0 <= self.allowable_max_inlet_c <= 45.0:
            raise ValueError("GateConfig.allowable_max_inlet_c must lie in 15–45 °C")
        if not -100.0 < self.min_savings_percent < 100.0:
            raise ValueError("GateConfig.min_savings_percent must lie in (-100, 100)")

    @classmethod
    def from_yaml(cls, path: Path) -> GateConfig:
        """A site's gate rules from a YAML mapping of these fields (unknown keys refused)."""
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ValueError(f"gate config {path}: cannot read ({exc})") from None
        if not isinstance(raw, dict):
            raise ValueError(f"gate config {path}: expected a mapping of rule: value")
        unknown = sorted(set(raw) - set(cls.__dataclass_fields__))
        if unknown:
            known = ", ".join(cls.__dataclass_fields__)
            raise ValueError(f"gate config {path}: unknown rule(s) {unknown} (known: {known})")
        try:
            return cls(**{k: float(v) for k, v in raw.items()})
        except (TypeError, ValueError) as exc:
            raise ValueError(f"gate config {path}: {exc}") from None


@dataclass(frozen=True)
class GateReport:
    """The verdict: passed or not, every reason, and the figures per scenario."""

    candidate: str
    incumbent: str
    passed: bool
    reasons: tuple[str, ...]
    savings_percent: float
    scenarios: tuple[dict[str, Any], ...]
    config: GateConfig = field(default_factory=GateConfig)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["reasons"] = list(self.reasons)
        out["scenarios"] = list(self.scenarios)
        return out

    def markdown(self) -> str:
        verdict = "PASSED" if self.passed else "FAILED"
        lines = [
            f"# Gate 1: {self.candidate} vs {self.incumbent} — {verdict}",
            "",
            f"Cooling-energy savings over the incumbent: {self.savings_percent:.2f} % "
            f"(needed ≥ {self.config.min_savings_percent:g} %)",
            "",
        ]
        lines += [f"- {r}" for r in self.reasons] or ["- every rule holds"]
        lines += [
            "",
            "| scenario | cooling kWh (cand. / inc.) | K·h > 27 °C | max inlet °C "
            "| twin spread °C |",
            "|---|---|---|---|---|",
        ]
        for s in self.scenarios:
            lines.append(
                f"| {s['scenario']} | {s['cooling_kwh']:,.0f} / {s['incumbent_cooling_kwh']:,.0f} "
                f"| {s['violation_kh_above_27']:.2f} | {s['max_inlet_c']:.1f} "
                f"| {s.get('max_inlet_spread_c', float('nan')):.2f} |"
            )
        return "\n".join(lines) + "\n"

    def write(self, out_dir: Path) -> list[Path]:
        out_dir.mkdir(parents=True, exist_ok=True)
        js, md = out_dir / "gate1.json", out_dir / "gate1.md"
        js.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        md.write_text(self.markdown(), encoding="utf-8")
        return [js, md]


def gate1(
    candidate: Sequence[EvaluationResult],
    incumbent: Sequence[EvaluationResult],
    config: GateConfig | None = None,
) -> GateReport:
    """Judge ``candidate``'s pre-evaluation against ``incumbent``'s on the same suite."""
    cfg = config or GateConfig()
    if not candidate:
        raise ValueError("gate 1 needs the candidate's evaluations")
    mine = {(r.scenario, r.on): r for r in candidate}
    theirs = {(r.scenario, r.on): r for r in incumbent}
    if set(mine) != set(theirs):
        missing = sorted(set(mine) ^ set(theirs))
        raise ValueError(f"candidate and incumbent were evaluated on different suites: {missing}")
    names = {r.policy for r in candidate}, {r.policy for r in incumbent}
    if len(names[0]) != 1 or len(names[1]) != 1:
        raise ValueError("each side of gate 1 must be one policy")
    reasons: list[str] = []
    rows: list[dict[str, Any]] = []
    for key in sorted(mine):
        c, i = mine[key].kpis, theirs[key].kpis
        where = f"{key[0]} ({key[1]})"
        rows.append(
            {
                "scenario": key[0],
                "on": key[1],
                "cooling_kwh": c["cooling_kwh"],
                "incumbent_cooling_kwh": i["cooling_kwh"],
                "violation_kh_above_27": c["violation_kh_above_27"],
                "max_inlet_c": c["max_inlet_c"],
                "max_inlet_spread_c": c.get("max_inlet_spread_c", float("nan")),
            }
        )
        if c["violation_kh_above_27"] > cfg.max_violation_kh_above_27:
            reasons.append(
                f"{where}: {c['violation_kh_above_27']:.2f} K·h above 27 °C "
                f"(allowed {cfg.max_violation_kh_above_27:g})"
            )
        if c["max_inlet_c"] > cfg.allowable_max_inlet_c:
            reasons.append(
                f"{where}: rack inlet reached {c['max_inlet_c']:.1f} °C "
                f"(allowable {cfg.allowable_max_inlet_c:g} °C)"
            )
        spread = c.get("max_inlet_spread_c")
        if spread is not None and spread > cfg.max_inlet_spread_c:
            reasons.append(
                f"{where}: the twin's members disagree by {spread:.2f} °C on the hottest rack "
                f"(trusted up to {cfg.max_inlet_spread_c:g} °C)"
            )
    total_c = sum(r["cooling_kwh"] for r in rows)
    total_i = sum(r["incumbent_cooling_kwh"] for r in rows)
    savings = (total_i - total_c) / total_i * 100.0 if total_i > 0 else float("nan")
    if not savings >= cfg.min_savings_percent:
        reasons.append(
            f"saves {savings:.2f} % cooling energy over {next(iter(names[1]))} on the suite "
            f"(needs ≥ {cfg.min_savings_percent:g} %)"
        )
    report = GateReport(
        candidate=next(iter(names[0])),
        incumbent=next(iter(names[1])),
        passed=not reasons,
        reasons=tuple(reasons),
        savings_percent=savings,
        scenarios=tuple(rows),
        config=cfg,
    )
    logger.info("gate 1 %s: %s", "passed" if report.passed else "failed", report.candidate)
    return report

"""Gate 1 of the dual loop: the automatic verdict on a candidate's pre-evaluation.

On every scenario of the pre-evaluation suite the candidate must keep the rack inlets at or
below the recommended limit (zero violation degree-hours above 27 °C by default) in every
member of the twin's ensemble, never exceed the allowable limit (32 °C for class A1), faults
included, and stay inside the twin's competence: few periods outside the data the twin was
fitted on (:mod:`twin.competence`), and members that agree on the hottest rack and on the
energy. Over the suite it must beat the incumbent's cooling energy by a margin in the member
least favourable to it. A policy that walks the twin into operation it has never seen is
refused however good its predicted savings: there the twin's figures mean nothing. The
verdict lists every reason it failed, with the numbers and the periods and setpoints where
the twin was blind, so an operator reading it at gate 2 sees exactly why.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from control.evaluation import EvaluationResult
from twinloop.errors import TwinLoopError

logger = logging.getLogger(__name__)


class GateConfigError(TwinLoopError, ValueError):
    """Gate-1 rules that cannot be used: a rule out of range, or a site's rules file
    that cannot be read; the message names the rule or file."""


@dataclass(frozen=True)
class GateConfig:
    """Gate 1's rules for one site.

    Beyond the thermal and savings rules, the twin must be *competent* where the candidate
    took it: few periods outside the data it was fitted on (:mod:`twin.competence`), members
    that agree on energy and on the hottest rack, and the savings and the thermal figures
    must hold for the worst member, not only on average."""

    max_violation_kh_above_27: float = 0.0
    """Rack-inlet degree-hours above 27 °C allowed per scenario, in the worst member."""
    allowable_max_inlet_c: float = 32.0
    max_inlet_spread_c: float = 0.5
    """Largest disagreement of the members' closed loops on the hottest rack (std, °C)."""
    min_savings_percent: float = 1.0
    """Cooling energy the candidate must save over the incumbent, % of the incumbent's, in
    the member least favourable to the candidate."""
    max_extrapolating_share: float = 0.05
    """Largest share of periods (over members) in which the twin extrapolated."""
    max_cooling_spread_percent: float = 5.0
    """Largest disagreement of the members on a scenario's cooling energy, % of the mean."""
    require_competence: bool = True
    """Refuse to judge in a twin that has no competence model (it cannot say where it is
    blind); off only for the drawings' physics in tests and tours."""

    def __post_init__(self) -> None:
        for name in (
            "max_violation_kh_above_27",
            "max_inlet_spread_c",
            "max_extrapolating_share",
            "max_cooling_spread_percent",
        ):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise GateConfigError(f"GateConfig.{name} must be a non-negative number")
        if self.max_extrapolating_share > 1.0:
            raise GateConfigError("GateConfig.max_extrapolating_share is a share: at most 1")
        if not 15.0 <= self.allowable_max_inlet_c <= 45.0:
            raise GateConfigError("GateConfig.allowable_max_inlet_c must lie in 15–45 °C")
        if not -100.0 < self.min_savings_percent < 100.0:
            raise GateConfigError("GateConfig.min_savings_percent must lie in (-100, 100)")

    @classmethod
    def from_yaml(cls, path: Path) -> GateConfig:
        """A site's gate rules from a YAML mapping of these fields (unknown keys refused)."""
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise GateConfigError(f"gate config {path}: cannot read ({exc})") from None
        if not isinstance(raw, dict):
            raise GateConfigError(f"gate config {path}: expected a mapping of rule: value")
        unknown = sorted(set(raw) - set(cls.__dataclass_fields__))
        if unknown:
            known = ", ".join(cls.__dataclass_fields__)
            raise GateConfigError(f"gate config {path}: unknown rule(s) {unknown} (known: {known})")
        values: dict[str, Any] = {}
        for key, value in raw.items():
            if key == "require_competence":
                if not isinstance(value, bool):
                    raise GateConfigError(f"gate config {path}: {key} must be true or false")
                values[key] = value
                continue
            try:
                values[key] = float(value)
            except (TypeError, ValueError):
                raise GateConfigError(f"gate config {path}: {key} must be a number") from None
        try:
            return cls(**values)
        except (TypeError, ValueError) as exc:
            raise GateConfigError(f"gate config {path}: {exc}") from None


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
    pessimistic_savings_percent: float = math.nan
    """Savings in the member least favourable to the candidate (= ``savings_percent`` for a
    single-member twin)."""

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["reasons"] = list(self.reasons)
        out["scenarios"] = list(self.scenarios)
        return out

    def markdown(self) -> str:
        verdict = "PASSED" if self.passed else "FAILED"
        cfg = self.config
        lines = [
            f"# Gate 1: {self.candidate} vs {self.incumbent} — {verdict}",
            "",
            f"Cooling-energy savings over the incumbent: {self.savings_percent:.2f} % "
            f"(members' mean), {self.pessimistic_savings_percent:.2f} % in the least "
            f"favourable member (needed ≥ {cfg.min_savings_percent:g} %)",
            "",
        ]
        lines += [f"- {r}" for r in self.reasons] or ["- every rule holds"]
        lines += [
            "",
            "| scenario | cooling kWh (cand. / inc.) | worst member kWh | K·h > 27 °C (worst) "
            "| max inlet °C | inlet spread °C | energy spread % | extrapolating % |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for s in self.scenarios:
            share = s.get("extrapolating_share")
            lines.append(
                f"| {s['scenario']} | {s['cooling_kwh']:,.0f} / {s['incumbent_cooling_kwh']:,.0f} "
                f"| {s.get('cooling_kwh_worst', s['cooling_kwh']):,.0f} "
                f"| {s['violation_kh_above_27']:.2f} ({s['violation_kh_above_27_worst']:.2f}) "
                f"| {s['max_inlet_c']:.1f} | {s.get('max_inlet_spread_c', math.nan):.2f} "
                f"| {s.get('cooling_spread_percent', math.nan):.2f} "
                f"| {'—' if share is None else f'{share * 100:.1f}'} |"
            )
        spells = [(s["scenario"], b) for s in self.scenarios for b in s.get("blind_spells", [])]
        if spells:
            lines += ["", "## Where the twin was blind", ""]
            lines += [f"- {name}: {describe_spell(b)}" for name, b in spells]
        lines += [
            "",
            f"Rules: ≤ {cfg.max_violation_kh_above_27:g} K·h above 27 °C in every member, "
            f"inlets ≤ {cfg.allowable_max_inlet_c:g} °C, members within "
            f"{cfg.max_inlet_spread_c:g} °C on the hottest rack and "
            f"{cfg.max_cooling_spread_percent:g} % on energy, ≤ "
            f"{cfg.max_extrapolating_share * 100:g} % of periods outside the twin's data.",
        ]
        return "\n".join(lines) + "\n"

    def write(self, out_dir: Path) -> list[Path]:
        out_dir.mkdir(parents=True, exist_ok=True)
        js, md = out_dir / "gate1.json", out_dir / "gate1.md"
        js.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        md.write_text(self.markdown(), encoding="utf-8")
        return [js, md]


def clock_of(hour_of_year: float) -> str:
    """An hour of the (non-leap) year as a date and time of day, e.g. ``Jul 01 00:25``."""
    when = datetime(2001, 1, 1) + timedelta(hours=float(hour_of_year))
    return when.strftime("%b %d %H:%M")


def describe_spell(spell: Mapping[str, Any]) -> str:
    """One blind spell of an evaluation (``control.evaluation.blind_spells``) in words."""
    sp = spell["setpoints"]
    unseen = ", ".join(f"{name} ({gap:.2f})" for name, gap in spell["unseen"].items())
    return (
        f"{clock_of(spell['from_h'])}–{clock_of(spell['to_h'])} ({spell['periods']} periods, "
        f"up to {spell['max_ratio']:.2f}× the data's reach) at supply air "
        f"{sp['supply_air_c']:.1f} °C, fans {sp['fan_speed_frac']:.2f}, CHW "
        f"{sp['chw_supply_c']:.1f} °C, CW {sp['cw_supply_c']:.1f} °C, economiser on "
        f"{sp['economiser_enable'] * 100:.0f} % of periods; furthest from the twin's data: "
        f"{unseen}"
    )


def _savings(incumbent_kwh: float, candidate_kwh: float) -> float:
    return (
        (incumbent_kwh - candidate_kwh) / incumbent_kwh * 100.0 if incumbent_kwh > 0 else math.nan
    )


def _pessimistic_savings(rows: Sequence[dict[str, Any]], nominal: float) -> float:
    """Savings over the suite in each member (the candidate's and the incumbent's loops in
    the same member), the least favourable one; ``nominal`` where members are not known."""
    if not all("cooling_kwh_members" in r for r in rows):
        return nominal
    sides = ("cooling_kwh_members", "incumbent_cooling_kwh_members")
    counts = {len(r[side]) for r in rows for side in sides}
    if len(counts) != 1:
        return nominal
    return min(
        _savings(
            sum(float(r["incumbent_cooling_kwh_members"][k]) for r in rows),
            sum(float(r["cooling_kwh_members"][k]) for r in rows),
        )
        for k in range(counts.pop())
    )


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
    blind_twin = False
    for key in sorted(mine):
        c, i = mine[key].kpis, theirs[key].kpis
        row = _row(key, c, i)
        rows.append(row)
        reasons += _scenario_reasons(f"{key[0]} ({key[1]})", row, cfg)
        if key[1] == "twin" and row.get("extrapolating_share") is None:
            blind_twin = True
    if blind_twin and cfg.require_competence:
        reasons.append(
            "the twin has no competence model, so it cannot say where it is blind: fit it "
            "with `twinloop twin fit` or add one with `twinloop twin competence`"
        )
    total_c = sum(r["cooling_kwh"] for r in rows)
    total_i = sum(r["incumbent_cooling_kwh"] for r in rows)
    savings = _savings(total_i, total_c)
    pessimistic = _pessimistic_savings(rows, savings)
    if not pessimistic >= cfg.min_savings_percent:
        reasons.append(
            f"saves {pessimistic:.2f} % cooling energy over {next(iter(names[1]))} on the suite "
            f"in the least favourable member ({savings:.2f} % on average; needs ≥ "
            f"{cfg.min_savings_percent:g} %)"
        )
    report = GateReport(
        candidate=next(iter(names[0])),
        incumbent=next(iter(names[1])),
        passed=not reasons,
        reasons=tuple(reasons),
        savings_percent=savings,
        scenarios=tuple(rows),
        config=cfg,
        pessimistic_savings_percent=pessimistic,
    )
    logger.info("gate 1 %s: %s", "passed" if report.passed else "failed", report.candidate)
    return report


def _row(key: tuple[str, str], c: Mapping[str, Any], i: Mapping[str, Any]) -> dict[str, Any]:
    """The figures of one scenario the gate judges and reports."""
    row: dict[str, Any] = {
        "scenario": key[0],
        "on": key[1],
        "cooling_kwh": c["cooling_kwh"],
        "incumbent_cooling_kwh": i["cooling_kwh"],
        "violation_kh_above_27": c["violation_kh_above_27"],
        "violation_kh_above_27_worst": c.get(
            "violation_kh_above_27_worst", c["violation_kh_above_27"]
        ),
        "max_inlet_c": c["max_inlet_c"],
        "max_inlet_spread_c": c.get("max_inlet_spread_c", math.nan),
    }
    for name in ("cooling_kwh_worst", "cooling_spread_percent", "extrapolating_share"):
        if name in c:
            row[name] = c[name]
    if "cooling_kwh_members" in c and "cooling_kwh_members" in i:
        row["cooling_kwh_members"] = list(c["cooling_kwh_members"])
        row["incumbent_cooling_kwh_members"] = list(i["cooling_kwh_members"])
    if c.get("blind_spells"):
        row["blind_spells"] = list(c["blind_spells"])
    return row


def _scenario_reasons(where: str, row: Mapping[str, Any], cfg: GateConfig) -> list[str]:
    reasons = []
    worst_kh = row["violation_kh_above_27_worst"]
    if worst_kh > cfg.max_violation_kh_above_27:
        reasons.append(
            f"{where}: {worst_kh:.2f} K·h above 27 °C in the worst member "
            f"({row['violation_kh_above_27']:.2f} on average; allowed "
            f"{cfg.max_violation_kh_above_27:g})"
        )
    if row["max_inlet_c"] > cfg.allowable_max_inlet_c:
        reasons.append(
            f"{where}: rack inlet reached {row['max_inlet_c']:.1f} °C "
            f"(allowable {cfg.allowable_max_inlet_c:g} °C)"
        )
    spread = row.get("max_inlet_spread_c", math.nan)
    if math.isfinite(spread) and spread > cfg.max_inlet_spread_c:
        reasons.append(
            f"{where}: the twin's members disagree by {spread:.2f} °C on the hottest rack "
            f"(trusted up to {cfg.max_inlet_spread_c:g} °C)"
        )
    energy = row.get("cooling_spread_percent")
    if energy is not None and energy > cfg.max_cooling_spread_percent:
        reasons.append(
            f"{where}: the twin's members disagree by {energy:.1f} % on cooling energy "
            f"(trusted up to {cfg.max_cooling_spread_percent:g} %)"
        )
    share = row.get("extrapolating_share")
    if share is not None and share > cfg.max_extrapolating_share:
        spells = row.get("blind_spells") or []
        longest = f"; longest: {describe_spell(spells[0])}" if spells else ""
        reasons.append(
            f"{where}: the twin extrapolated in {share * 100:.1f} % of the candidate's periods "
            f"(allowed {cfg.max_extrapolating_share * 100:g} %){longest}"
        )
    return reasons

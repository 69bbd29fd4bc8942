"""The reservoir as the operator reads it: every policy with its pre-evaluation KPIs in the
twin and its cooling-energy savings on the scenarios both were evaluated on.

Every saving the dashboard shows has one definition (:data:`dashboards.savings.DEFINITION`):
cooling energy saved against the site's own control. In the twin the site's own control is
the ``fixed-setpoints`` rule (the site's conventional setpoints as a policy), so a policy's
saving does not change meaning when another policy goes live (it used to be measured against
whichever policy was live: "—" while none was, and the baseline at −40 % once the MPC was).
The other rule baselines (trim-and-respond) keep a column of their own."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from control.catalog import RULE_POLICIES
from control.reservoir import EvaluationRecord, PolicyRecord, Reservoir

COOLING = "cooling_kwh"
SITE_CONTROL_POLICY = "fixed-setpoints"
"""The rule that is the site's own control in the twin."""


@dataclass(frozen=True)
class PolicyRow:
    """One line of the reservoir table."""

    ref: str
    kind: str
    state: str
    created_at: str
    scenarios: int
    """Scenarios evaluated in the twin."""
    cooling_kwh: float | None
    pue: float | None
    violation_kh_above_27: float | None
    max_inlet_c: float | None
    savings_vs_site_control_pct: float | None
    """Against the site's own control (:func:`site_control`); None for that policy itself."""
    savings_vs_baselines_pct: Mapping[str, float | None]
    """Other rule baseline ref → savings (%)."""


def twin_kpis(evaluations: Sequence[EvaluationRecord]) -> dict[str, Mapping[str, float]]:
    """Scenario → KPIs of the latest evaluation in the twin on it."""
    return {e.scenario: e.kpis for e in evaluations if e.on == "twin"}


def savings_pct(
    mine: Mapping[str, Mapping[str, float]], theirs: Mapping[str, Mapping[str, float]]
) -> float | None:
    """Cooling energy saved (%) against ``theirs`` over the scenarios both ran; None if none."""
    common = [s for s in mine if s in theirs and COOLING in mine[s] and COOLING in theirs[s]]
    base = sum(theirs[s][COOLING] for s in common)
    if not common or base <= 0:
        return None
    return (base - sum(mine[s][COOLING] for s in common)) / base * 100.0


def incumbent(records: Sequence[PolicyRecord]) -> PolicyRecord | None:
    """The live policy, if one is."""
    return next((r for r in records if r.state == "live"), None)


def site_control(records: Sequence[PolicyRecord]) -> PolicyRecord | None:
    """The site's own control in the twin: the newest ``fixed-setpoints`` rule."""
    return next((b for b in baselines(records) if b.name == SITE_CONTROL_POLICY), None)


def baselines(records: Sequence[PolicyRecord]) -> list[PolicyRecord]:
    """The newest version of each built-in rule baseline (``twinloop reservoir
    add-baselines``: fixed setpoints, trim-and-respond)."""
    newest: dict[str, PolicyRecord] = {}
    for r in records:
        if r.kind != "rule" or r.name not in RULE_POLICIES:
            continue
        if r.name not in newest or r.version > newest[r.name].version:
            newest[r.name] = r
    return sorted(newest.values(), key=lambda r: r.name)


def _total(kpis: Mapping[str, Mapping[str, float]], name: str, how: str) -> float | None:
    values = [k[name] for k in kpis.values() if name in k and math.isfinite(k[name])]
    if not values:
        return None
    if how == "sum":
        return float(sum(values))
    if how == "max":
        return float(max(values))
    return float(sum(values) / len(values))


def policy_rows(reservoir: Reservoir) -> list[PolicyRow]:
    """Every policy version, by name and version, with its KPIs and savings."""
    records = reservoir.list()
    kpis = {r.ref: twin_kpis(reservoir.evaluations(r.ref)) for r in records}
    site = site_control(records)
    rules = [b for b in baselines(records) if site is None or b.ref != site.ref]
    rows = []
    for r in records:
        mine = kpis[r.ref]
        rows.append(
            PolicyRow(
                ref=r.ref,
                kind=r.kind,
                state=r.state,
                created_at=r.created_at,
                scenarios=len(mine),
                cooling_kwh=_total(mine, COOLING, "sum"),
                pue=_total(mine, "pue", "mean"),
                violation_kh_above_27=_total(mine, "violation_kh_above_27", "sum"),
                max_inlet_c=_total(mine, "max_inlet_c", "max"),
                savings_vs_site_control_pct=None
                if site is None or site.ref == r.ref
                else savings_pct(mine, kpis[site.ref]),
                savings_vs_baselines_pct={
                    b.ref: None if b.ref == r.ref else savings_pct(mine, kpis[b.ref]) for b in rules
                },
            )
        )
    return rows


@dataclass(frozen=True)
class ScenarioComparison:
    """A policy against the site's own control, the baselines and the live policy on one
    scenario (cooling kWh)."""

    scenario: str
    cooling_kwh: float | None
    others_kwh: Mapping[str, float | None]
    """Other policy ref → its cooling energy on this scenario."""


def per_scenario(reservoir: Reservoir, ref: str) -> tuple[list[str], list[ScenarioComparison]]:
    """The policies ``ref`` is compared with (the site's own control first, then the other
    baselines, then the live policy) and, per scenario it ran in the twin, the cooling energy
    of each."""
    records = reservoir.list()
    record = reservoir.get(ref)
    site = site_control(records)
    candidates = [site, *baselines(records), incumbent(records)]
    others = {r.ref: r for r in candidates if r is not None and r.ref != record.ref}.values()
    mine = twin_kpis(reservoir.evaluations(record.ref))
    theirs = {r.ref: twin_kpis(reservoir.evaluations(r.ref)) for r in others}
    rows = [
        ScenarioComparison(
            scenario=scenario,
            cooling_kwh=kpis.get(COOLING),
            others_kwh={o: theirs[o].get(scenario, {}).get(COOLING) for o in theirs},
        )
        for scenario, kpis in sorted(mine.items())
    ]
    return list(theirs), rows

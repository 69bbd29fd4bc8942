"""Real data for the dashboard's tests, built once per session and copied per test:

- a historian with three hours of the reference plant's sensor readings (a real plant run),
  the live loop's series (``twin.*`` predictions with uncertainty and parameters, ``ctl.*``,
  ``kpi.pue``), events, setpoint-audit records, one point that went stale, one bad reading
  and one rack inlet above 27 °C, and the alarms the live service's evaluation
  (:class:`control.alarm_loop.AlarmLoop`) raised on them: the dashboard evaluates none;
- a reservoir with the built-in baselines and two candidates, each evaluated in the twin on a
  short scenario (real twin runs, with their report folders and plot), pre-evaluated;
- a users file with an operator and a viewer.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from dash import Dash

from connectors.historian import AuditRecord, Event, Historian, Reading
from control.alarm_loop import AlarmLoop
from control.alarms import AlarmConfig
from control.catalog import builtin_factory
from control.evaluation import evaluate, write_comparison
from control.preevaluation import register_builtin
from control.reservoir import Reservoir
from dashboards import points as pts
from dashboards.app import create_app
from dashboards.auth import UserStore
from dashboards.context import AppContext
from dashboards.ids import ApprovalIds
from physics.plant.scenario import Scenario, load_scenario
from physics.plant.sensors import point_catalog
from physics.plant.simulation import run_scenario

OPERATOR, OPERATOR_PASSWORD = "olga", "olga-password-1"
VIEWER, VIEWER_PASSWORD = "victor", "victor-password-1"
STALE_POINT = "outdoor_rel_hum_frac"
BAD_POINT = "rack_inlet_c.1.03"
HOT_POINT, HOT_VALUE_C = "rack_inlet_c.2.07", 28.4
CANDIDATES = ("tr-candidate", "fixed-candidate")
TWIN_PARAMS = ("ua_scale", "recirculation_frac")


@dataclass(frozen=True)
class Built:
    historian: Path
    reservoir: Path
    users: Path
    newest_s: float


def _write_historian(path: Path, week: Scenario) -> float:
    scenario = dataclasses.replace(week, duration_h=3.0)
    result = run_scenario(scenario)
    units = {p.name: p.unit for p in point_catalog(scenario.site)}
    times_s = result.readings["time_h"].to_numpy() * 3600.0
    newest_s = float(times_s[-1])
    rng = np.random.default_rng(3)
    with Historian(path) as hist:
        for name in result.readings.columns[1:]:
            values = result.readings[name].to_numpy()
            keep = times_s <= newest_s - 3600.0 if name == STALE_POINT else times_s <= newest_s
            hist.write(
                [
                    Reading(name, float(t), float(v), units[name], "good", i)
                    for i, (t, v) in enumerate(zip(times_s[keep], values[keep], strict=True))
                ]
            )
        hist.write([Reading(BAD_POINT, newest_s + 1.0, float("nan"), "degC", "bad", 10_000)])
        hist.write([Reading(HOT_POINT, newest_s + 1.0, HOT_VALUE_C, "degC", "good", 10_000)])
        # The live loop's series, every control period (5 min).
        inlets = result.readings.filter(like="rack_inlet_c.").max(axis=1).to_numpy()
        cooling = pts.cooling_power(result.readings).to_numpy()
        it = result.readings.filter(like=pts.IT_POWER_PREFIX).sum(axis=1).to_numpy()
        facility = result.readings[pts.FACILITY_POWER].to_numpy()
        periods = np.arange(0, len(times_s), 5)
        twin: list[Reading] = []
        for k, i in enumerate(periods):
            t = float(times_s[i])
            std = 0.15 + 0.05 * np.sin(k / 5.0)
            twin += [
                Reading("twin.rack_inlet_max_c", t, float(inlets[i] + rng.normal(0, std)), "degC"),
                Reading("twin.std.rack_inlet_max_c", t, float(std), "degC"),
                Reading("twin.param.ua_scale", t, 1.0 - 0.002 * k, ""),
                Reading("twin.param.recirculation_frac", t, 0.08 + 0.0005 * k, ""),
                Reading("ctl.supply_air_c", t, 20.0 + 0.5 * (k % 4), "degC"),
                Reading("kpi.pue", t, 1.40 + 0.01 * np.cos(k / 7.0), ""),
                Reading("kpi.cooling_power_kw", t, float(cooling[i]), "kW"),
                Reading("kpi.it_power_kw", t, float(it[i]), "kW"),
                Reading("kpi.facility_power_kw", t, float(facility[i]), "kW"),
                # The counterfactual plant under the site's own control: a quarter more.
                Reading("kpi.reference_cooling_power_kw", t, 1.25 * float(cooling[i]), "kW"),
            ]
        hist.write(twin)
        hist.add_event(Event(newest_s - 1800.0, "watchdog", "trip", "stale data from the BMS"))
        hist.add_event(Event(newest_s - 600.0, "controller", "fallback", "site control resumed"))
        for k in range(3):
            t = newest_s - 900.0 + 300.0 * k
            hist.add_audit(
                AuditRecord(t, f"cmd-{k}", "supply_air_c", 20.0 + k, t + 600.0, "live", "published")
            )
        hist.add_audit(
            AuditRecord(
                newest_s,
                "cmd-9",
                "supply_air_c",
                35.0,
                newest_s + 600.0,
                "live",
                "refused",
                "outside the envelope",
            )
        )
        AlarmLoop(hist, AlarmConfig()).evaluate()  # the live service's, once
    return newest_s


def _write_reservoir(root: Path, report_root: Path, week: Scenario) -> None:
    scenario = dataclasses.replace(week, duration_h=2.0)
    with Reservoir(root) as res:
        for name in ("fixed-setpoints", "trim-and-respond"):
            register_builtin(res, name, actor="installer")
        specs = [
            ("fixed-setpoints", "fixed-setpoints"),
            ("trim-and-respond", "trim-and-respond"),
            ("tr-candidate", "trim-and-respond"),
            ("fixed-candidate", "fixed-setpoints"),
        ]
        for ref, builtin in specs:
            if ref in CANDIDATES:
                res.register(
                    ref,
                    "rule",
                    None,
                    hyperparameters={"builtin": builtin, "tag": ref},
                    training_scenarios=["tropical-typical-week"],
                    description=f"test candidate running {builtin}",
                    actor="trainer",
                )
            result = evaluate(builtin_factory(builtin)(scenario), scenario, on="twin")
            folder = report_root / ref
            result.write(folder)
            if ref == CANDIDATES[0]:
                write_comparison([result], folder)  # summary.csv + evaluation.png
            kpis = {k: float(v) for k, v in result.kpis.items() if isinstance(v, float | int)}
            res.add_evaluation(ref, on="twin", scenario=scenario.name, kpis=kpis, report_dir=folder)
        for ref in CANDIDATES:
            res.transition(ref, "pre_evaluated", actor="gate1", reason="gate 1 passed on test")


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    base = tmp_path_factory.mktemp("dashboard-data")
    week = load_scenario("tropical-typical-week")  # slow (weather): once
    newest_s = _write_historian(base / "historian.sqlite", week)
    _write_reservoir(base / "reservoir", base / "reports", week)
    users = UserStore(base / "users.json")
    users.add(OPERATOR, OPERATOR_PASSWORD, "operator")
    users.add(VIEWER, VIEWER_PASSWORD, "viewer")
    return Built(base / "historian.sqlite", base / "reservoir", base / "users.json", newest_s)


@pytest.fixture
def data(built: Built, tmp_path: Path) -> Built:
    """A private copy of the built data (actions change the reservoir)."""
    shutil.copy2(built.historian, tmp_path / "historian.sqlite")
    shutil.copytree(built.reservoir, tmp_path / "reservoir")
    shutil.copy2(built.users, tmp_path / "users.json")
    return Built(
        tmp_path / "historian.sqlite",
        tmp_path / "reservoir",
        tmp_path / "users.json",
        built.newest_s,
    )


@pytest.fixture
def ctx(data: Built) -> Iterator[AppContext]:
    app = create_app(data.historian, data.reservoir, data.users)
    context = app.server.extensions["twinloop_dashboard"]
    assert isinstance(context, AppContext)
    yield context
    context.close()


def session_of(name: str, role: str, *, expires_at_s: float = 4.0e9) -> dict[str, object]:
    """A session as the login writes it (for the plain callback functions)."""
    return {"user": name, "role": role, "expires_at_s": expires_at_s, "csrf": "t"}


def text_of(component: object) -> str:
    """All the text in a Dash component tree."""
    if component is None:
        return ""
    if isinstance(component, str | int | float):
        return str(component)
    if isinstance(component, list | tuple):
        return " ".join(text_of(c) for c in component)
    return text_of(getattr(component, "children", None))


def callback_request(
    app: Dash, ref: str, reason: str, button: ApprovalIds = ApprovalIds.APPROVE
) -> dict[str, Any]:
    """The JSON the renderer posts when an approvals button is clicked."""
    values = {button: 1, ApprovalIds.POLICY: ref, ApprovalIds.REASON: reason}
    return dash_request(app, ApprovalIds.MESSAGE, values, button)


def dash_request(app: Dash, output: str, values: dict[Any, Any], button: str) -> dict[str, Any]:
    """The JSON the renderer posts for the callback that writes ``output`` when ``button``
    is clicked, with the given inputs' and states' ``values``."""
    key = next(k for k in app.callback_map if str(output) in k)
    cb = app.callback_map[key]

    def entries(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [
            {"id": str(i["id"]), "property": i["property"], "value": values.get(i["id"])}
            for i in items
        ]

    outputs = [{"id": str(o.component_id), "property": o.component_property} for o in cb["output"]]
    clicked = next(i["property"] for i in cb["inputs"] if i["id"] == str(button))
    return {
        "output": key,
        "outputs": outputs,
        "inputs": entries(cb["inputs"]),
        "state": entries(cb["state"]),
        "changedPropIds": [f"{button}.{clicked}"],
    }

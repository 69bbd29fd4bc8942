"""Scenario suites: named lists of scenarios a policy is evaluated on together.

A suite is a small YAML file — ``name``, ``description``, the default ``target``
(``twin`` or ``plant``; not ``on``, which YAML reads as a boolean) and ``scenarios``
(shipped names or paths, relative paths resolved beside the suite file). Shipped suites
live in ``physics/scenarios/suites/``: ``pre-evaluation`` (gate 1's suite, in the twin)
and ``held-out`` (ground truth on the plant).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal

import yaml

from physics.plant.scenario import Scenario, ScenarioError, load_scenario
from twinloop.errors import TwinLoopError


class SuiteError(TwinLoopError, ValueError):
    """A suite file that cannot be used; the message names the file and the problem."""


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    on: Literal["twin", "plant"]
    scenarios: tuple[Scenario, ...]


def shipped_suites() -> dict[str, Path]:
    """Suite files that ship with TwinLoop, by name."""
    folder = resources.files("physics") / "scenarios" / "suites"
    return {Path(str(e)).stem: Path(str(e)) for e in folder.iterdir() if str(e).endswith(".yaml")}


def load_suite(spec: str | Path) -> Suite:
    """A shipped suite by name or a suite file by path."""
    path = shipped_suites().get(str(spec), Path(spec))
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise SuiteError(f"suite {spec}: cannot read ({exc})") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("scenarios"), list):
        raise SuiteError(f"suite {path}: needs a 'scenarios' list")
    unknown = sorted(map(str, set(raw) - {"name", "description", "target", "scenarios"}))
    if unknown:
        raise SuiteError(f"suite {path}: unknown field(s) {unknown}")
    on = raw.get("target", "plant")
    if on not in ("twin", "plant"):
        raise SuiteError(f"suite {path}: target must be 'twin' or 'plant' (got {on!r})")
    if not raw["scenarios"]:
        raise SuiteError(f"suite {path}: the scenarios list is empty")
    scenarios = []
    for i, entry in enumerate(raw["scenarios"]):
        beside = path.parent / str(entry)
        target = beside if beside.suffix == ".yaml" and beside.is_file() else str(entry)
        try:
            scenarios.append(load_scenario(target))
        except ScenarioError as exc:
            raise SuiteError(f"suite {path}: scenarios[{i}]: {exc}") from None
    return Suite(
        str(raw.get("name", path.stem)), str(raw.get("description", "")), on, tuple(scenarios)
    )


def expand(specs: list[str]) -> list[Scenario]:
    """Scenarios named by ``specs``: each a suite (shipped name or ``.yaml`` suite file with a
    ``scenarios`` list) or a scenario (shipped name or file)."""
    out: list[Scenario] = []
    for spec in specs:
        if spec in shipped_suites() or _is_suite_file(spec):
            out.extend(load_suite(spec).scenarios)
        else:
            out.append(load_scenario(spec))
    return out


def _is_suite_file(spec: str) -> bool:
    path = Path(spec)
    if not path.is_file():
        return False
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return False
    return isinstance(raw, dict) and "scenarios" in raw

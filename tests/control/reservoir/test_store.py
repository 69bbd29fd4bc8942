"""The reservoir as a whole: versions and lineage, two handles and two processes on one
root, the comparison table, and the errors bad input gets."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest

from control.reservoir import (
    DB_FILE,
    Reservoir,
    ReservoirError,
)
from tests.control.reservoir.helpers import KPIS, register_policy


def test_versions_increment_per_name_and_record_lineage(reservoir: Reservoir, model: Path) -> None:
    first = reservoir.register(
        "ppo-a",
        "drl",
        model,
        hyperparameters={"lr": 3e-4, "net": [64, 64]},
        training_scenarios=["twin-train-mild", "twin-fault-fouling"],
        description="first try",
    )
    second = reservoir.register(
        "ppo-a", "drl", model, hyperparameters={}, training_scenarios=[], parent="ppo-a@1"
    )
    other = reservoir.register(
        "mpc.v2", "mpc", model, hyperparameters={}, training_scenarios=[], parent="ppo-a"
    )
    third = reservoir.register("ppo-a", "drl", model, hyperparameters={}, training_scenarios=[])

    assert [first.version, second.version, third.version, other.version] == [1, 2, 3, 1]
    assert (first.parent, second.parent, other.parent) == (None, "ppo-a@1", "ppo-a@2")
    assert first.state == "candidate"
    assert first.hyperparameters == {"lr": 3e-4, "net": [64, 64]}
    assert first.training_scenarios == ("twin-train-mild", "twin-fault-fouling")
    assert first.description == "first try"
    assert datetime.fromisoformat(first.created_at).utcoffset() == UTC.utcoffset(None)
    assert reservoir.get("ppo-a") == third
    assert reservoir.get("ppo-a@1") == first
    assert [r.ref for r in reservoir.list()] == ["mpc.v2@1", "ppo-a@1", "ppo-a@2", "ppo-a@3"]
    assert [r.ref for r in reservoir.list(kind="mpc")] == ["mpc.v2@1"]
    registered = reservoir.history("ppo-a@1")
    assert [(h.event, h.from_state, h.to_state) for h in registered] == [
        ("registered", None, "candidate")
    ]
    assert registered[0].artifact_hash == first.artifact_hash


def test_two_handles_on_one_root_see_each_others_writes(tmp_path: Path, model: Path) -> None:
    with Reservoir(tmp_path / "r") as one, Reservoir(tmp_path / "r") as two:
        register_policy(one, "ppo", model)
        assert two.get("ppo").version == 1
        two.add_evaluation("ppo", on="twin", scenario="week", kpis=KPIS)
        one.transition("ppo", "pre_evaluated", actor="gate", reason="suite passed")
        assert two.get("ppo").state == "pre_evaluated"
        assert register_policy(two, "ppo", model) == "ppo@2"
        assert [r.ref for r in one.list()] == ["ppo@1", "ppo@2"]
        assert [h.to_state for h in two.history("ppo@1")] == ["candidate", "pre_evaluated"]


def test_two_processes_registering_at_once_get_distinct_versions(
    tmp_path: Path, model: Path
) -> None:
    root = tmp_path / "r"
    Reservoir(root).close()
    script = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        from control.reservoir import Reservoir
        with Reservoir(Path({str(root)!r})) as res:
            for i in range(5):
                res.register("ppo", "drl", Path({str(model)!r}),
                             hyperparameters={{"by": sys.argv[1]}}, training_scenarios=[])
        """
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", script, tag], stderr=subprocess.PIPE, text=True)
        for tag in ("a", "b")
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
    with Reservoir(root) as res:
        records = res.list()
        assert [r.version for r in records] == list(range(1, 11))
        assert sorted(r.hyperparameters["by"] for r in records) == ["a"] * 5 + ["b"] * 5
        assert all(res.verify(r.ref) for r in records)
        assert len(res.history()) == 10


def test_compare_gives_one_row_per_policy_target_and_scenario(
    reservoir: Reservoir, model: Path
) -> None:
    a = register_policy(reservoir, "ppo", model)
    b = reservoir.register("fixed", "rule", None, hyperparameters={}, training_scenarios=[]).ref
    reservoir.add_evaluation(a, on="twin", scenario="hot", kpis={**KPIS, "pue": 1.40})
    reservoir.add_evaluation(a, on="twin", scenario="hot", kpis={**KPIS, "pue": 1.20})  # rerun
    reservoir.add_evaluation(a, on="plant", scenario="hot", kpis={"pue": 1.22, "zeta": 1.0})
    reservoir.add_evaluation(b, on="twin", scenario="hot", kpis={"max_inlet_c": 27.5, "pue": 1.3})

    table = reservoir.compare(["ppo", b])
    assert list(table.columns) == [
        "policy",
        "kind",
        "on",
        "scenario",
        "cooling_kwh",
        "pue",
        "violation_kh_above_27",
        "max_inlet_c",
        "zeta",
    ]
    rows = [tuple(r) for r in table[["policy", "kind", "on", "scenario"]].itertuples(index=False)]
    assert rows == [
        ("ppo@1", "drl", "twin", "hot"),
        ("ppo@1", "drl", "plant", "hot"),
        ("fixed@1", "rule", "twin", "hot"),
    ]
    assert table["pue"].tolist() == [1.20, 1.22, 1.3]  # the latest run of a repeat counts
    assert table["cooling_kwh"].isna().tolist() == [False, True, True]
    assert table["zeta"].isna().tolist() == [True, False, True]
    plant = reservoir.compare([a, b], on="plant")
    assert plant["policy"].tolist() == ["ppo@1"] and list(plant.columns)[4:] == ["pue", "zeta"]


@pytest.mark.parametrize("name", ["", "a b", "../up", ".hidden", "-v", "a@1", "a/b", "x" * 101])
def test_bad_names_are_refused(reservoir: Reservoir, name: str) -> None:
    with pytest.raises(ReservoirError, match="bad policy name"):
        reservoir.register(name, "rule", None, hyperparameters={}, training_scenarios=[])
    assert reservoir.list() == []


def test_bad_input_gets_a_message_naming_the_problem(
    reservoir: Reservoir, model: Path, tmp_path: Path
) -> None:
    def register(**overrides: object) -> None:
        args: dict[str, object] = {
            "name": "p",
            "kind": "drl",
            "artifact": model,
            "hyperparameters": {},
            "training_scenarios": [],
        }
        args.update(overrides)
        reservoir.register(**args)  # type: ignore[arg-type]

    with pytest.raises(ReservoirError, match="unknown policy kind 'genetic'"):
        register(kind="genetic")
    with pytest.raises(ReservoirError, match="unknown policy 'ghost'"):
        register(parent="ghost@1")
    with pytest.raises(ReservoirError, match="needs an artifact"):
        register(artifact=None)
    with pytest.raises(ReservoirError, match="no such file or folder"):
        register(artifact=tmp_path / "missing.zip")
    with pytest.raises(ReservoirError, match="not JSON"):
        register(hyperparameters={"lr": math.nan})
    with pytest.raises(ReservoirError, match="list of names"):
        register(training_scenarios="mild")
    assert reservoir.list() == [] and not (reservoir.root / "artifacts" / "p").exists()

    ref = register_policy(reservoir, "p", model)
    with pytest.raises(ReservoirError, match="unknown policy 'nobody'"):
        reservoir.get("nobody")
    with pytest.raises(ReservoirError, match="has no version 7 \\(latest: 1\\)"):
        reservoir.verify("p@7")
    with pytest.raises(ReservoirError, match="bad policy reference"):
        reservoir.get("p@latest")
    with pytest.raises(ReservoirError, match="unknown policy state 'deployed'"):
        reservoir.transition(ref, "deployed", actor="a", reason="r")
    with pytest.raises(ReservoirError, match="reason must be a non-empty text"):
        reservoir.transition(ref, "retired", actor="a", reason="  ")
    with pytest.raises(ReservoirError, match="actor must be a non-empty text"):
        reservoir.transition(ref, "retired", actor="", reason="r")
    with pytest.raises(ReservoirError, match="unknown evaluation target 'sky'"):
        reservoir.add_evaluation(ref, on="sky", scenario="s", kpis=KPIS)
    with pytest.raises(ReservoirError, match="not finite"):
        reservoir.add_evaluation(ref, on="twin", scenario="s", kpis={"pue": math.inf})
    with pytest.raises(ReservoirError, match="unknown policy state 'on'"):
        reservoir.list(state="on")
    assert reservoir.get(ref).state == "candidate" and reservoir.evaluations(ref) == []
    assert len(reservoir.history(ref)) == 1


def test_read_only_open_refuses_a_root_without_a_reservoir(tmp_path: Path) -> None:
    with pytest.raises(ReservoirError, match="no reservoir at"):
        Reservoir(tmp_path / "nowhere", create=False)
    assert not (tmp_path / "nowhere").exists()
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / DB_FILE).write_bytes(b"not a database at all" * 100)
    with pytest.raises(ReservoirError, match="junk"):
        Reservoir(tmp_path / "junk")
